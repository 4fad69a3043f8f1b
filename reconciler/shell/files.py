"""Reading the user's input files (manifest, sandbox state, names, saved plan): bounded.

One reader for every input: it opens without blocking, checks what it opened with
``fstat`` (so a FIFO, a device such as a symlink to ``/dev/zero``, a socket or a
directory is refused before a byte is read, and the file cannot be swapped between the
check and the read), refuses a file over the limit by its size, and never reads more than
``limit + 1`` bytes (a file that grows while it is read is still refused).
"""

from __future__ import annotations

import os
import stat

from ..core.errors import InputError, Problem


def _refuse(path: str, message: str) -> InputError:
    return InputError([Problem(path, 1, 1, message)])


def read_input(path: str, what: str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in errors), at most ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _refuse(path, f"{what} not found") from None
    except IsADirectoryError:
        raise _refuse(path, f"{what} is a directory, not a regular file") from None
    except OSError as exc:
        raise _refuse(path, f"cannot read {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _refuse(path, f"{what} is a directory, not a regular file")
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, f"{what} is not a regular file (a FIFO, device or socket); "
                                "refusing to read it")
        if st.st_size > limit:
            raise _refuse(path, f"{what} is {st.st_size:,} bytes, larger than the limit of "
                                f"{limit:,} bytes")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise _refuse(path, f"cannot read {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise _refuse(path, f"{what} is larger than the limit of {limit:,} bytes")
    return data


def read_head(path: str, size: int = 4096) -> bytes:
    """The first ``size`` bytes of the regular file ``path``; b"" for anything else or on
    any error. Enough to say what a file is when it is too large to read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return b""
    try:
        return os.read(fd, size) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return b""
    finally:
        os.close(fd)


def read_stdin(what: str, limit: int) -> bytes:
    """Standard input (``-`` for a file argument), at most ``limit`` bytes."""
    import sys

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise _refuse("<stdin>", f"cannot read {what}: standard input is closed")
    try:
        data = bytes(stream.read(limit + 1))
    except (OSError, ValueError) as exc:
        raise _refuse("<stdin>", f"cannot read {what}: {exc}") from None
    if len(data) > limit:
        raise _refuse("<stdin>", f"{what} is larger than the limit of {limit:,} bytes")
    return data
