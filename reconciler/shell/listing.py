"""Listing: each owner account's images per Region, and the launch permission reads that
start as the listing's pages arrive.

Reading launch permissions is the long part of a plan: one ``DescribeImageAttribute`` per
managed image, against a bucket of 100 requests refilled at 20 per second per Region.
Whether a plan manages an image follows from the image alone
(:func:`~reconciler.core.desired.is_managed`), so the read of its launch permissions starts
with the page that lists it, while the other pages, Regions and owners are still being
listed; the selection, the snapshots and the released-image scan follow while the reads go
on. The reads are still exactly those the plan needs, each made once.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..core.errors import UsageError
from ..core.model import Image, Principal, RegionKey
from ..core.pacing import with_eta
from .concurrency import Pool, Task
from .reader import Reader

LAUNCH_LABEL = "Reading launch permissions"


class LaunchReads:
    """One owner account's launch permission reads, each started once, as soon as the
    listing finds an image to read (or when :meth:`results` asks for one not started)."""

    def __init__(self, reader: Reader, pool: Pool) -> None:
        self.reader = reader
        self._pool = pool
        self._tasks: dict[RegionKey, Task[frozenset[Principal]]] = {}
        self._started: set[RegionKey] = set()  # their request took (or waits for) a token
        self._done: set[RegionKey] = set()
        self._shown = False  # the progress bar counts the reads that end
        self._lock = threading.Lock()

    def start(self, image: Image) -> None:
        """Queue the read of ``image``'s launch permissions, unless it is queued already."""
        with self._lock:
            if image.key not in self._tasks:
                self._tasks[image.key] = self._pool.submit(
                    functools.partial(self._read, image), image.region)

    def _read(self, image: Image) -> frozenset[Principal]:
        with self._lock:
            self._started.add(image.key)
        perms = self.reader.launch_permissions(image)
        with self._lock:
            self._done.add(image.key)
            if self._shown:
                self.reader.progress.advance()
        return perms

    def results(self, images: Sequence[Image]) -> dict[RegionKey, frozenset[Principal]]:
        """The launch permissions of ``images``, once read. Progress (a bar on a terminal for
        long runs) counts all of them, those read already included; its label says how long
        the request rate makes the rest take."""
        progress = self.reader.progress
        with self._lock:
            # The reads started already hold their tokens: the estimate counts the others.
            left = collections.Counter((img.region, "ec2", "DescribeImageAttribute")
                                       for img in images if img.key not in self._started)
            progress.start(with_eta(LAUNCH_LABEL, self.reader.clients.pacer.estimate(left)),
                           len(images))
            progress.advance(sum(img.key in self._done for img in images))
            self._shown = True
        try:
            for img in images:
                self.start(img)
            return {img.key: self._tasks[img.key].result() for img in images}
        finally:
            with self._lock:
                self._shown = False
            progress.finish()


@dataclass(frozen=True)
class Owner:
    """One owner account to list: its reader and the Regions to list for it."""

    reader: Reader
    regions: tuple[str, ...]

    @property
    def account(self) -> str:
        """The owner's account ID (its reader's ``GetCallerIdentity``, read once)."""
        return self.reader.identity().account


@dataclass(frozen=True)
class Listing:
    """What the listing found: the images per Region (every owner's, in the order the owners
    were given, each owner's sorted by ID), and each owner's launch permission reads."""

    images: dict[str, list[Image]]
    launch: dict[str, LaunchReads]  # by owner account


# How one owner's Region is listed: (owner, Region, its reads, which images to read) ->
# the images, each one ``read`` names started on ``reads`` as soon as it is found.
Lister = Callable[["Owner", str, LaunchReads, Callable[[Image], bool]], list[Image]]


@contextlib.contextmanager
def listing(owners: Sequence[Owner], read: Callable[[Image], bool],
            lister: Lister | None = None) -> Iterator[Listing]:
    """List every owner's images in its Regions, all at the same time; the launch
    permissions of each image ``read`` names (and its owner owns) start being read as its
    page arrives. Yields once every listing is complete, while those reads go on; when the
    block ends, the reads not started yet never start. ``lister`` lists one owner's Region
    (default: every image, page by page; a run restricted to some images lists those)."""
    list_region = lister or _list_region
    with contextlib.ExitStack() as stack:
        started: list[tuple[Owner, LaunchReads]] = []
        jobs: list[tuple[str, Task[list[Image]]]] = []
        for owner in owners:
            # Each owner account has request buckets (and a cap on requests in flight) of
            # its own: a pool each, its Regions taking turns.
            pool = stack.enter_context(Pool(owner.reader.concurrency))
            reads = LaunchReads(owner.reader, pool)
            started.append((owner, reads))
            jobs += [(region, pool.submit(functools.partial(list_region, owner, region, reads,
                                                            read), region))
                     for region in owner.regions]
        # Who the owners are (GetCallerIdentity) is asked while their listings are on their
        # way (a page's reads start once it is known), after each listing's EC2 client is
        # made: making a client is CPU work that threads only share, and the reads wait on
        # the listing, not on the identity.
        for owner in owners:
            owner.reader.prepare(owner.regions[0] if owner.regions else None)
        launch: dict[str, LaunchReads] = {}
        for owner, reads in started:
            if owner.account in launch:
                raise UsageError(f"owner account {owner.account} is listed twice")
            launch[owner.account] = reads
        images: dict[str, list[Image]] = collections.defaultdict(list)
        for region, job in jobs:
            images[region].extend(job.result())
        yield Listing(dict(images), launch)


def _list_region(owner: Owner, region: str, reads: LaunchReads,
                 read: Callable[[Image], bool]) -> list[Image]:
    """One owner's images in ``region``, sorted by ID, starting reads page by page."""
    found: list[Image] = []
    for page in owner.reader.image_pages(region):
        found += page
        for img in sorted(page, key=lambda i: i.image_id):
            if img.owner_id == owner.account and read(img):
                reads.start(img)
    return sorted(found, key=lambda i: i.image_id)
