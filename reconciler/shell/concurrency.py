"""One bounded pool of worker threads for the shell's AWS calls (reads and writes alike), and
the run's stop: SIGINT/SIGTERM end a command at once, in any phase.

How a signal stops a run: the first SIGINT or SIGTERM sets the command's one :class:`Stop`
and raises :class:`Interrupted` in the main thread, which only ever waits (on the pool, on the
prompt, on an answer), so the wait ends at once. The pool then starts none of its queued
items; every new AWS request checks the stop first (see ``shell/aws``) and a wait for a
request token ends when it is set. Worker threads block the two signals, so that the kernel
hands them to the main thread, and they are daemons: one still waiting on AWS never holds up
the exit. Later signals only set what is already set, so cleanup is never interrupted
half-way (no traceback, no "Exception ignored").
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from itertools import chain, zip_longest
from types import FrameType
from typing import Any, Generic, TypeVar, cast

from ..core.errors import EXIT_ERROR

T = TypeVar("T")
R = TypeVar("R")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The waiting thread looks at least this often whether a signal arrived: Python runs a
# handler only between bytecodes, and a signal landing just before a blocking wait begins
# would otherwise wait as long as the wait.
WAKE_EVERY = 0.05  # seconds


class Interrupted(BaseException):
    """The run was stopped: by a signal (``signum``), or by apply itself (its log cannot be
    written: ``signum`` 0). A ``BaseException``, like ``KeyboardInterrupt``, so that no
    ``except Exception`` on the way takes it for a failed call.

    ``action`` and ``retrying``: the AWS request that was not sent because of it, and whether
    it was the retry of an attempt AWS did not confirm (which may have been applied)."""

    def __init__(self, signum: int = 0, action: str = "", retrying: bool = False) -> None:
        super().__init__(signal_name(signum) if signum else "stopped")
        self.signum = signum
        self.action = action
        self.retrying = retrying

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as shells report a process a signal ended."""
        return 128 + self.signum if self.signum else EXIT_ERROR


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Stop(threading.Event):
    """The command's stop flag. Once set, no new AWS request is sent and no new write starts.
    Set by a signal, or, without one, by apply itself (:meth:`set`: its log failed).

    A signal handler runs in the main thread only, between two bytecodes of whatever that
    thread was doing, and only once it holds the interpreter lock. So the handler takes no
    lock (it could be one the main thread holds: :meth:`note` only writes two attributes),
    and the workers do not wait for it (a worker that already has its answer could send one
    more request meanwhile): :meth:`is_set` also sees a signal the kernel still holds for
    the main thread, and one Python has written to its wakeup pipe (``signal.set_wakeup_fd``)
    but not handled yet."""

    def __init__(self) -> None:
        super().__init__()
        self.signum = 0  # the first signal
        self.since = math.inf  # its time.monotonic()
        self._watching = False  # see watch()
        self._wakeup: int | None = None

    def note(self, signum: int) -> None:
        """A signal arrived (safe in a handler: no lock)."""
        if not self.signum:
            self.signum, self.since = signum, time.monotonic()

    def interrupt(self, signum: int) -> None:
        """A signal arrived, from anywhere but a handler: also wakes :meth:`wait` at once."""
        self.note(signum)
        self.set()

    def watch(self, watching: bool, wakeup: int | None = None) -> None:
        """Whether SIGINT/SIGTERM stop the run (:func:`stop_on_signals`), and the wakeup
        pipe's reading end (non-blocking; None where there is none)."""
        self._watching, self._wakeup = watching, wakeup

    def is_set(self) -> bool:
        return super().is_set() or bool(self.signum) or self._signal_not_handled()

    def _signal_not_handled(self) -> bool:
        if not self._watching:
            return False
        # Pending: sent, but the main thread (the only one not blocking it) has not run yet.
        pending = signal.sigpending() if hasattr(signal, "sigpending") else set()
        received = [int(s) for s in pending if s in STOP_SIGNALS]
        wakeup = self._wakeup
        if wakeup is not None:
            with contextlib.suppress(OSError):  # empty (BlockingIOError), or closed meanwhile
                received += os.read(wakeup, 64)
        for signum in received:
            if signum in STOP_SIGNALS:
                self.note(signum)
        return bool(self.signum)

    def wait(self, timeout: float | None = None) -> bool:
        """Until the stop is set (True) or ``timeout`` seconds passed (False). A signal is
        seen within :data:`WAKE_EVERY`: its handler does not wake waiting threads."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            super().wait(min(left, WAKE_EVERY))
        return True

    def check(self, action: str = "", retrying: bool = False) -> None:
        """Raise :class:`Interrupted` once the stop is set."""
        if self.is_set():
            raise Interrupted(self.signum, action, retrying)

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` that the stop ends (raising :class:`Interrupted`)."""
        if self.wait(seconds):
            raise Interrupted(self.signum)


@contextlib.contextmanager
def stop_on_signals(stop: Stop) -> Iterator[Stop]:
    """SIGINT and SIGTERM for the whole command (main thread only, as Python allows). While
    the block runs, the first signal sets ``stop`` and raises :class:`Interrupted` where the
    main thread is; later ones only keep it set. After the block both are ignored: the
    process is about to exit, and a late signal must neither become a traceback nor kill it
    with another exit status (Python restores the default handlers while it shuts down, but
    leaves ignored signals ignored)."""
    raised = False

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal raised
        stop.note(signum)
        if not raised:
            raised = True
            raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    with _wakeup_pipe() as wakeup:
        stop.watch(True, wakeup)
        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
        try:
            yield stop
        finally:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            stop.watch(False)


@contextlib.contextmanager
def _wakeup_pipe() -> Iterator[int | None]:
    """A non-blocking pipe that Python writes each signal's number to as it arrives
    (``signal.set_wakeup_fd``); its reading end, or None where that is not possible
    (Windows takes a socket only: the handler alone then)."""
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        yield None
        return
    try:
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (OSError, ValueError):
        previous = None
    try:
        yield read_fd if previous is not None else None
    finally:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)


def leave_signals_to_the_main_thread() -> None:
    """Block SIGINT and SIGTERM in the calling (worker) thread, so that the kernel hands them
    to the main thread, whose handler stops the run."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def in_background(fn: Callable[[], object], name: str) -> None:
    """Run ``fn`` on a daemon thread of its own (nothing waits for it; signals are the main
    thread's)."""
    def run() -> None:
        leave_signals_to_the_main_thread()
        fn()

    threading.Thread(target=run, name=name, daemon=True).start()


def spread(items: Sequence[T], key: Callable[[T], Hashable]) -> list[int]:
    """Indices of ``items`` taken round-robin across their keys (Regions, accounts): each
    key has its own AWS request buckets, so workers should not all wait on one of them while
    the others sit idle."""
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[key(item)].append(i)
    return [i for i in chain.from_iterable(zip_longest(*groups.values())) if i is not None]


class _Run(Generic[T, R]):
    """One :func:`parallel_map`: the queue its workers take items from, and the results."""

    def __init__(self, fn: Callable[[T], R], items: Sequence[T], order: Sequence[int]) -> None:
        self._fn, self._items = fn, items
        self._queue = collections.deque(order)
        self._lock = threading.Lock()
        self.results: dict[int, R] = {}
        self.error: BaseException | None = None
        self.workers = 0  # still running
        self.done = threading.Event()  # set when the last worker ends

    def cancel(self) -> None:
        """Start none of the items still queued."""
        with self._lock:
            self._queue.clear()

    def _next(self) -> int | None:
        with self._lock:
            return self._queue.popleft() if self._queue and self.error is None else None

    def start(self, workers: int) -> None:
        self.workers = workers
        for _ in range(workers):
            threading.Thread(target=self._work, name="reconcile-worker", daemon=True).start()

    def _work(self) -> None:
        leave_signals_to_the_main_thread()
        try:
            while (i := self._next()) is not None:
                try:
                    result = self._fn(self._items[i])
                except BaseException as exc:  # handed to the waiting thread, which raises it
                    with self._lock:
                        self.error = self.error or exc
                    return
                with self._lock:
                    self.results[i] = result
        finally:
            with self._lock:
                self.workers -= 1
                if not self.workers:
                    self.done.set()


def parallel_map(fn: Callable[[T], R], items: Sequence[T], workers: int,
                 key: Callable[[T], Hashable] | None = None) -> list[R]:
    """``[fn(i) for i in items]`` on at most ``workers`` threads, in the order of
    :func:`spread` when ``key`` is given; results keep the order of ``items``.

    The calling thread only waits. When an item raises, the queued items are not started,
    the running ones finish, and the error is raised here. When the wait itself is
    interrupted (a signal in the main thread), the queued items are not started either and
    the running ones are not waited for: the threads are daemons."""
    if not items:
        return []
    order = spread(items, key) if key is not None else list(range(len(items)))
    run = _Run(fn, items, order)
    run.start(max(1, min(workers, len(items))))
    try:
        while not run.done.wait(WAKE_EVERY):
            pass
    except BaseException:
        run.cancel()
        raise
    if run.error is not None:
        raise run.error
    return [run.results[i] for i in range(len(items))]


def run_all(*jobs: Callable[[], R]) -> list[R]:
    """Run independent jobs at the same time (reads that draw on different request
    buckets: different actions, Regions or accounts); their results, in order."""
    return parallel_map(lambda job: job(), list(jobs), len(jobs))


class PoolClosed(Exception):
    """Work handed to a :class:`Pool` that has stopped taking any (an item failed, or its
    block ended): it never runs."""


class Task(Generic[R]):
    """One item of a :class:`Pool`: its result once it ran."""

    def __init__(self, pool: Pool, fn: Callable[[], R]) -> None:
        self._pool, self._fn = pool, fn
        self._done = threading.Event()
        self._value: R | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # kept for whoever waits on it
            self._error = exc
            self._pool._failed(exc)
        self._done.set()

    def _cancel(self) -> None:
        self._error = PoolClosed("not started: the pool stopped")
        self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> R:
        """Wait for the item (in any thread; a signal in the main thread ends the wait at
        once) and return its result, or raise what it raised. When another item failed
        first, this one may never run: that item's error is raised instead, once the items
        still running have ended (as :func:`parallel_map` does)."""
        while not self._done.wait(WAKE_EVERY):
            if self._pool.error is not None:
                self._pool._wait_idle()  # then this item has ended, or will never start
                break
        if not self.done() or isinstance(self._error, PoolClosed):
            raise self._pool.error or self._error or PoolClosed("not started: the pool stopped")
        if self._error is not None:
            raise self._error
        return cast(R, self._value)


class Pool:
    """A bounded pool of worker threads that takes items while it runs, unlike
    :func:`parallel_map`'s fixed list: work found on the way (the images of a listing's
    page) starts at once, beside the work that found it, which may go on adding more.

    Queued items are taken round-robin across their keys (Regions: each has its own request
    buckets), as :func:`spread` orders a list. Use it as a context manager: when the block
    ends, the items still queued never start (after a failure or a signal nobody waits for
    the running ones: their threads are daemons). When an item raises, the queued ones are
    not started either, and the pool takes no more work (:class:`PoolClosed`)."""

    def __init__(self, workers: int) -> None:
        self._max = max(1, workers)
        self._queues: dict[Hashable, collections.deque[Task[Any]]] = {}
        self._turn: collections.deque[Hashable] = collections.deque()  # keys with work queued
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)  # work was queued, or the pool closed
        self._ended = threading.Condition(self._lock)  # an item ended
        self._threads = self._idle = self._running = self._pending = 0
        self._closed = False
        self.error: BaseException | None = None  # the first item's failure

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, fn: Callable[[], R], key: Hashable = None) -> Task[R]:
        """Queue ``fn``; its :class:`Task`. Safe from any thread, the pool's own included."""
        task: Task[R] = Task(self, fn)
        with self._lock:
            if self._closed:
                raise PoolClosed("the pool takes no more work")
            if key not in self._queues:
                self._queues[key] = collections.deque()
                self._turn.append(key)
            self._queues[key].append(task)
            self._pending += 1
            if self._idle:
                self._queued.notify()
            if self._pending > self._idle and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name="reconcile-worker", daemon=True).start()
        return task

    def close(self) -> None:
        """Start none of the queued items, and take no more."""
        with self._lock:
            self._closed = True
            queued = [t for q in self._queues.values() for t in q]
            self._queues.clear()
            self._turn.clear()
            self._pending = 0
            self._queued.notify_all()
        for task in queued:
            task._cancel()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.close()

    def _wait_idle(self) -> None:
        """Until no item runs any more."""
        with self._lock:
            while self._running:
                self._ended.wait(WAKE_EVERY)

    def _next(self) -> Task[Any] | None:
        """The next queued item, the keys taking turns; None once the pool is closed."""
        with self._lock:
            while not self._turn:
                if self._closed:
                    return None
                self._idle += 1
                self._queued.wait()
                self._idle -= 1
            key = self._turn.popleft()
            queue = self._queues[key]
            task = queue.popleft()
            if queue:
                self._turn.append(key)
            else:
                del self._queues[key]
            self._pending -= 1
            self._running += 1
            return task

    def _work(self) -> None:
        leave_signals_to_the_main_thread()
        while (task := self._next()) is not None:
            try:
                task._run()
            finally:
                with self._lock:
                    self._running -= 1
                    self._ended.notify_all()
