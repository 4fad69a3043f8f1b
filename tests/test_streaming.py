"""Reads that stream: the pool that takes work while it runs (reconciler/shell/concurrency.py),
the launch permission reads that start as the listing's pages arrive (reconciler/shell/listing.py),
and the pure rule that lets them start early (``desired.is_managed``). Fake readers, no AWS."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import ACCOUNT, EU, US, interrupted_after, manifest_yaml

from reconciler.core.desired import is_managed, select
from reconciler.core.errors import UsageError
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Identity, Image, Principal
from reconciler.core.pacing import Pacer, Rate
from reconciler.shell.concurrency import Interrupted, Pool, PoolClosed
from reconciler.shell.listing import Owner, listing

WAIT = 5.0  # seconds a test waits for something that should happen at once


def image(n: int, region: str = US, name: str = "golden", **kw: Any) -> Image:
    return Image(f"ami-{n:08x}", region, kw.pop("owner_id", ACCOUNT), f"{name}-{n}",
                 kw.pop("state", "available"), False, **kw)


# --------------------------------------------------------------------------- the pool


def test_items_added_by_running_items_run_and_keep_their_results() -> None:
    with Pool(3) as pool:
        def parent(n: int) -> list[int]:
            children = [pool.submit(lambda k=k: n * 10 + k) for k in range(3)]
            return [c.result() for c in children]

        tasks = [pool.submit(lambda n=n: parent(n)) for n in range(1, 3)]
        # the parents hold two workers while they wait: the third runs their children
        assert [t.result() for t in tasks] == [[10, 11, 12], [20, 21, 22]]


def test_queued_items_take_turns_across_their_keys() -> None:
    order: list[str] = []
    gate = threading.Event()
    with Pool(1) as pool:
        pool.submit(gate.wait)  # holds the one worker while the rest is queued
        tasks = [pool.submit(lambda k=k: order.append(k), key=k[0])
                 for k in ("a1", "a2", "a3", "b1", "b2", "c1")]
        gate.set()
        for t in tasks:
            t.result()
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_a_failure_cancels_the_queued_items_and_is_what_every_wait_raises() -> None:
    started: list[int] = []
    gate = threading.Event()

    def fn(i: int) -> int:
        started.append(i)
        if i == 0:
            gate.wait(WAIT)
            raise ValueError("boom")
        return i

    with Pool(1) as pool:
        tasks = [pool.submit(lambda i=i: fn(i)) for i in range(5)]
        gate.set()
        for t in tasks:
            with pytest.raises(ValueError, match="boom"):
                t.result()
        with pytest.raises(PoolClosed):
            pool.submit(lambda: 1)
    assert started == [0]


def test_an_item_running_when_another_fails_still_gives_its_own_result() -> None:
    gate, go = threading.Event(), threading.Event()

    def boom() -> int:
        go.wait(WAIT)
        raise ValueError("boom")

    with Pool(2) as pool:
        running = pool.submit(lambda: gate.wait(WAIT) and 1)
        failing = pool.submit(boom)
        queued = pool.submit(lambda: 3)  # both workers are busy: it waits, then never starts
        go.set()
        threading.Timer(0.1, gate.set).start()
        assert running.result() == 1
        for task in (failing, queued):
            with pytest.raises(ValueError, match="boom"):
                task.result()


def test_the_end_of_the_block_drops_the_queued_items() -> None:
    started: list[int] = []
    gate = threading.Event()
    with Pool(1) as pool:
        pool.submit(lambda: gate.wait(WAIT))
        queued = [pool.submit(lambda i=i: started.append(i)) for i in range(3)]
    gate.set()
    time.sleep(0.1)
    assert started == []
    with pytest.raises(PoolClosed):
        queued[0].result()


def test_a_signal_ends_the_wait_at_once_and_nothing_queued_starts() -> None:
    started: list[int] = []
    release = threading.Event()

    def slow(i: int) -> None:
        started.append(i)
        release.wait(WAIT)

    try:
        with interrupted_after(0.2):
            t0 = time.monotonic()
            with pytest.raises(Interrupted), Pool(2) as pool:
                tasks = [pool.submit(lambda i=i: slow(i)) for i in range(20)]
                tasks[-1].result()
            assert time.monotonic() - t0 < 1
    finally:
        release.set()
    time.sleep(0.1)
    assert len(started) == 2, f"queued items started after the interruption: {started}"


# --------------------------------------------------------------------------- the listing


class _Clients:
    def __init__(self) -> None:
        self.pacer = Pacer(enabled=False)


class FakeReader:
    """Pages of images per Region; a page after the first is only answered once the test
    lets it (``more``), so a test can see what runs while the listing is still going."""

    concurrency = 4

    def __init__(self, pages: dict[str, list[list[Image]]], more: threading.Event | None = None,
                 fail: str = "") -> None:
        self.pages, self.more, self.fail = pages, more, fail
        self.reads: list[str] = []
        self.read_started = threading.Event()
        self.failed = threading.Event()
        self.listed = threading.Event()  # every Region's listing ended
        self._regions_left = len(pages)
        self._lock = threading.Lock()
        self.clients = _Clients()
        self.progress = Recorder()
        self.identity_after: threading.Event | None = None
        self.asked: list[str] = []  # Regions whose listing started

    def prepare(self, region: str | None = None) -> None:
        pass

    def identity(self) -> Identity:
        if self.identity_after is not None:  # answered only once the listing has asked
            assert self.identity_after.wait(WAIT), "the listing waited for the identity"
        return Identity(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/test")

    def image_pages(self, region: str) -> Iterator[list[Image]]:
        self.asked.append(region)
        if len(self.asked) == len(self.pages) and self.identity_after is not None:
            self.identity_after.set()
        for n, page in enumerate(self.pages[region]):
            if n and self.more is not None:
                assert self.more.wait(WAIT), "the page was never asked for"
            yield page
        with self._lock:
            self._regions_left -= 1
            if not self._regions_left:
                self.listed.set()

    def launch_permissions(self, img: Image) -> frozenset[Principal]:
        with self._lock:
            self.reads.append(img.image_id)
        self.read_started.set()
        if img.image_id == self.fail:
            self.failed.set()
            raise RuntimeError(f"{img.image_id}: denied")
        if self.fail:  # the other reads end after the failing one
            self.failed.wait(WAIT)
        return frozenset({Principal.account("111122223333")})


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def start(self, label: str, total: int) -> None:
        self.label = label
        self.events.append(("start", total))

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.events.append(("advance", n))

    def finish(self) -> None:
        self.events.append(("finish", None))


def _wait_until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _owner(reader: FakeReader, *regions: str) -> Owner:
    return Owner(reader, regions)  # type: ignore[arg-type]


def test_reads_start_with_the_first_page_while_the_listing_goes_on() -> None:
    first = [image(n) for n in range(3)]
    second = [image(n) for n in range(3, 6)]
    more = threading.Event()
    reader = FakeReader({US: [first, second]}, more)
    # the second page is only answered once a read of the first page's images has started:
    # if reads waited for the whole listing, the listing would never end
    threading.Thread(target=lambda: reader.read_started.wait(WAIT) and more.set(),
                     daemon=True).start()
    with listing([_owner(reader, US)], lambda img: True) as found:
        assert found.images == {US: first + second}
        launch = found.launch[ACCOUNT].results(first + second)
    assert set(launch) == {img.key for img in first + second}
    assert sorted(reader.reads) == sorted(img.image_id for img in first + second)


def test_every_listing_starts_before_the_owner_is_known() -> None:
    """GetCallerIdentity is a round trip of its own: the listings do not wait for it (the
    owner's account only decides which of a page's images to read)."""
    pages = {US: [[image(0)], [image(1)]], EU: [[image(2, EU)]]}
    reader = FakeReader(pages)
    reader.identity_after = threading.Event()
    with listing([_owner(reader, US, EU)], lambda img: True) as found:
        assert sorted(reader.asked) == sorted(pages)
        assert found.launch[ACCOUNT].results(found.images[US] + found.images[EU])
    assert sorted(reader.reads) == [image(n).image_id for n in range(3)]


def test_a_failed_identity_is_asked_once_and_said_to_every_thread() -> None:
    """GetCallerIdentity fails (an expired token): the listing's threads that need the
    owner's account get the same error; none asks again."""
    from reconciler.shell.aws import CallError
    from reconciler.shell.reader import Reader

    asked = []

    class Sts:
        def get_caller_identity(self) -> dict[str, str]:
            asked.append(threading.current_thread().name)
            time.sleep(0.05)
            raise CallError("sts", "GetCallerIdentity", "ExpiredToken", "the token expired")

    class Clients:
        def get(self, service: str, region: str | None = None) -> Any:
            return Sts()

        def preload(self, service: str) -> None:
            pass

    reader = Reader(Clients())  # type: ignore[arg-type]
    errors: list[str] = []

    def ask() -> None:
        try:
            reader.identity()
        except CallError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(asked) == 1 and len(errors) == 4 and len(set(errors)) == 1, (asked, errors)


def test_an_owner_account_given_twice_is_refused() -> None:
    """Two owner roles that land in the same account would list and plan its images twice."""
    first, second = FakeReader({US: [[image(0)]]}), FakeReader({EU: [[image(1, EU)]]})
    with pytest.raises(UsageError, match=f"owner account {ACCOUNT} is listed twice"), \
            listing([_owner(first, US), _owner(second, EU)], lambda img: True):
        pass


def test_the_listing_is_complete_when_the_block_starts_while_reads_go_on() -> None:
    imgs = [image(n) for n in range(8)]
    gate = threading.Event()
    reader = FakeReader({US: [imgs[:4], imgs[4:]]})
    original = reader.launch_permissions

    def slow(img: Image) -> frozenset[Principal]:
        gate.wait(WAIT)
        return original(img)

    reader.launch_permissions = slow  # type: ignore[method-assign]
    with listing([_owner(reader, US)], lambda img: True) as found:
        assert reader.listed.is_set() and found.images[US] == imgs
        gate.set()
        found.launch[ACCOUNT].results(imgs)


def test_only_the_images_named_and_owned_are_read_each_once() -> None:
    mine = [image(n) for n in range(4)]
    other = image(9, owner_id="210987654321")  # in the listing, owned by someone else
    reader = FakeReader({US: [[mine[2], other, mine[0]], [mine[1], mine[0]]], EU: [[mine[3]]]})
    wanted = {mine[0].key, mine[1].key, other.key}
    with listing([_owner(reader, US, EU)], lambda img: img.key in wanted) as found:
        assert found.images == {US: sorted([mine[2], other, mine[0], mine[1], mine[0]],
                                           key=lambda i: i.image_id), EU: [mine[3]]}
        _wait_until(lambda: len(reader.reads) >= 2)
        time.sleep(0.05)  # no third read comes
        early = sorted(reader.reads)
        # asked for one more than the listing started: read now, the others not again
        found.launch[ACCOUNT].results([mine[0], mine[1], mine[3]])
    assert early == [mine[0].image_id, mine[1].image_id]
    assert sorted(reader.reads) == sorted([mine[0].image_id, mine[1].image_id, mine[3].image_id])


def test_progress_counts_the_reads_done_before_it_was_shown() -> None:
    imgs = [image(n) for n in range(6)]
    reader = FakeReader({US: [imgs]})
    with listing([_owner(reader, US)], lambda img: True) as found:
        reads = found.launch[ACCOUNT]
        _wait_until(lambda: len(reads._done) == 6)  # every read has returned
        reads.results(imgs)
    events = reader.progress.events
    assert events[0] == ("start", 6) and events[-1] == ("finish", None)
    assert sum(n for what, n in events if what == "advance") == 6
    assert events[1] == ("advance", 6), "the reads done before the bar were not counted"


@pytest.mark.parametrize(("early", "label"), [
    (0, "Reading launch permissions (~20 s at the request rate)"),  # (3 - 1) / 0.1
    (2, "Reading launch permissions"),  # one read left, and a token for it
], ids=["none-read-yet", "two-read-early"])
def test_the_time_said_counts_the_reads_not_started(early: int, label: str) -> None:
    imgs = [image(n) for n in range(3)]
    reader = FakeReader({US: [imgs]})
    reader.clients.pacer = Pacer(overrides={"DescribeImageAttribute": Rate(1, 0.1)})
    with listing([_owner(reader, US)], lambda img: img in imgs[:early]) as found:
        _wait_until(lambda: len(reader.reads) == early)
        time.sleep(0.05)
        found.launch[ACCOUNT].results(imgs)
    assert reader.progress.label == label


def test_a_failed_read_is_raised_and_the_queued_ones_never_start() -> None:
    imgs = [image(n) for n in range(40)]
    reader = FakeReader({US: [imgs]}, fail=imgs[0].image_id)
    with pytest.raises(RuntimeError, match="denied"), \
            listing([_owner(reader, US)], lambda img: True) as found:
        found.launch[ACCOUNT].results(imgs)
    assert len(reader.reads) < 40


# --------------------------------------------------------------------------- early reads


LIFECYCLE = """\
- name: newest
  select: {name: "golden-*", latest: 2}
  launch: [prod]
- name: tagged
  regions: [eu-west-1]
  select: {tags: {team: web}, exclude: {name: "*-3"}}
  launch: [staging]
- name: pinned
  select: {ids: [ami-00000005, ami-00000007]}
  launch: [dev]
"""


def test_is_managed_is_exactly_what_select_manages() -> None:
    """Whether an image is managed follows from the image alone, lifecycle rules
    included: the listing may start its reads before it has seen every page."""
    manifest = parse_manifest(manifest_yaml(LIFECYCLE, regions=(US, EU)).encode(), "m.yaml")
    rng = random.Random(7)
    for _ in range(50):
        listed = {region: [image(n, region, rng.choice(["golden", "other"]),
                                 state=rng.choice(["available", "available", "disabled"]),
                                 tags=(("team", "web"),) if rng.random() < 0.5 else (),
                                 creation_date=f"2024-01-{rng.randint(1, 28):02d}T00:00:00Z")
                           for n in rng.sample(range(12), rng.randint(0, 12))]
                  for region in (US, EU)}
        managed = {m.image.key for m in select(manifest, listed, None, "2024-02-01").managed}
        assert managed == {img.key for img in itertools.chain(*listed.values())
                           if is_managed(manifest, img)}
