"""One bounded thread pool for the shell's AWS calls (reads and writes alike), and the
signal handling that stops it cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, zip_longest
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def spread(items: Sequence[T], key: Callable[[T], Hashable]) -> list[int]:
    """Indices of ``items`` taken round-robin across their keys (Regions, accounts): each
    key has its own AWS request buckets, so workers should not all wait on one of them while
    the others sit idle."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[key(item)].append(i)
    return [i for i in chain.from_iterable(zip_longest(*groups.values())) if i is not None]


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int,
                 key: Callable[[T], Hashable] | None = None) -> list[R]:
    """``[fn(i) for i in items]`` on at most ``workers`` threads, in the order of
    :func:`spread` when ``key`` is given; results keep the order of ``items``."""
    order = spread(items, key) if key is not None else list(range(len(items)))
    if len(items) <= 1 or workers <= 1:
        done = {i: fn(items[i]) for i in order}
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            done = dict(zip(order, pool.map(lambda i: fn(items[i]), order), strict=True))
    return [done[i] for i in range(len(items))]


def run_all(*jobs: Callable[[], R]) -> list[R]:
    """Run independent jobs at the same time (reads that draw on different request
    buckets: different actions, Regions or accounts); their results, in order."""
    return parallel_map(lambda job: job(), list(jobs), len(jobs))


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, say: Callable[[str], None]) -> Iterator[None]:
    """SIGINT/SIGTERM during apply: let in-flight calls finish, start no new write (``stop``
    is set; ``say`` tells the user once)."""

    def handler(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            say(f"\n{signal.Signals(signum).name}: stopping after the calls in flight...")
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
