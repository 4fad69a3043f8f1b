"""What a command writes: standard output (a closed, full or broken one is one line, never
a traceback), files, and error lines."""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO

import click

from ..core import neutral
from ..core.errors import InputError, OutputError, ReconcilerError
from ..shell.aws import mask_secrets


def _write_file(path: str, text: str | Iterable[str]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines([text] if isinstance(text, str) else text)
    except OSError as exc:
        raise ReconcilerError(f"cannot write {path}: {exc.strerror}") from None


def _write_sarif(fmt: str, path: str | None, log: Callable[[], str]) -> None:
    """The SARIF log, made once, on standard output (``--format sarif``) and in ``--sarif``'s
    file, those asked for."""
    if fmt != "sarif" and path is None:
        return
    text = log()
    if path is not None:
        _write_file(path, text)
    if fmt == "sarif":
        with _stdout("the SARIF log") as out:
            out.write(text)


@contextlib.contextmanager
def _stdout(what: str) -> Iterator[TextIO]:
    """Standard output, for writing ``what`` (flushed at the end). A closed, full or broken
    one is an :class:`OutputError`: one line, exit 1, never a traceback or a silent exit."""
    out = sys.stdout
    if out is None:  # started with stdout closed (`>&-`)
        raise OutputError(what, "it is closed")
    try:
        yield out
        out.flush()
    except OSError as exc:
        raise OutputError(what, exc.strerror or type(exc).__name__) from None


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe whose reader has exited (``| head -1`` after its line):
    what was written into the pipe was not all read. Linux and the BSDs report a pipe
    without a reader as an error condition on its writing end."""
    if sys.stdout is None:
        return True
    if not hasattr(select, "poll"):
        return False
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (io.UnsupportedOperation is both)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _print_error(exc: ReconcilerError | str) -> None:
    """One line per error (an input error: per problem), made inert (SPEC §7d)."""
    lines = ([str(p) for p in exc.problems] if isinstance(exc, InputError)
             else [str(exc)])
    for line in lines:
        line = neutral.text(mask_secrets(line))
        click.echo(f"error: {line}" if not line.startswith("error:") else line, err=True)


def _release_stdout() -> None:
    """Flush stdout before the exit; when that fails (a broken pipe, a full disk), point it
    at os.devnull, so that Python's own flush at exit has nothing left to fail on (it would
    print "Exception ignored ... BrokenPipeError")."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
