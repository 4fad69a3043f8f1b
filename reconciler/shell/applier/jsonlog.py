"""``--log-file``: the JSON Lines log of an apply."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ...core.errors import ReconcilerError


class JsonLog:
    """``--log-file``: one JSON line per executed operation, appended and flushed as it ends.

    A line that cannot be written (a full disk, a lost mount) is an error, not a crash:
    ``error`` says why, ``on_failure`` is called once (apply stops starting writes, so
    nothing goes unlogged beyond the writes already in flight), and nothing more is written.
    """

    def __init__(self, path: str, on_failure: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self.on_failure = on_failure
        self.error = ""
        self.lost = 0  # records that could not be written
        try:
            self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ReconcilerError(f"cannot open log file {path}: {exc.strerror}") from None

    def __call__(self, record: dict[str, Any]) -> None:
        if self.error:
            self.lost += 1
            return
        try:
            self.fh.write(json.dumps(record, sort_keys=True) + "\n")
            self.fh.flush()
        except OSError as exc:
            self.error = f"cannot write log file {self.path}: {exc.strerror or exc}"
            self.lost += 1
            self.on_failure()

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError as exc:  # the buffered tail could not be written either
            self.error = self.error or f"cannot write log file {self.path}: {exc.strerror or exc}"
