"""Progress reporting for long reads and writes: a bar on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Any, Protocol

import click

THRESHOLD = 50  # fewer items than this finish too fast to deserve a bar


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


class TerminalProgress:
    """A click progress bar on stderr, safe to advance from worker threads."""

    def __init__(self, threshold: int = THRESHOLD) -> None:
        self.threshold = threshold
        self._bar: Any = None
        self._lock = threading.Lock()

    def start(self, label: str, total: int) -> None:
        self.finish()
        if total >= self.threshold:
            self._bar = click.progressbar(length=total, label=label, file=sys.stderr,
                                          show_pos=True, show_eta=True)
            self._bar.__enter__()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(n)

    def finish(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.__exit__(None, None, None)
                self._bar = None
