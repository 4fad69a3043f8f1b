"""Domain exceptions. Each carries its exit code; only the CLI turns them into exits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_CANNOT = 3  # explain: the principal cannot launch (an image asked about)

# AWS error codes that mean "the caller's IAM policy does not allow this call".
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                                 "AuthFailure", "UnauthorizedAccess"})


@dataclass(frozen=True, order=True)
class Problem:
    """One input error, located in a file."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        # One line whatever the input held: escape every character str.splitlines() splits on.
        return f"{self.file}:{self.line}:{self.column}: {self.message.translate(_ONE_LINE)}"


_ONE_LINE = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class ReconcilerError(Exception):
    """Base class: a failure the user can act on. ``str()`` is the whole message."""

    exit_code = EXIT_ERROR


class InputError(ReconcilerError):
    """An input file (manifest, sandbox state, plan file) is invalid. Nothing was sent to AWS."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(ReconcilerError):
    """The command line is wrong (mapped to exit 1: exit 2 means "changes present")."""


class AwsError(ReconcilerError):
    """An AWS call failed in a way that stops the whole run (credentials, identity, listing)."""


class StalePlanError(ReconcilerError):
    """A saved plan that may not be applied: stale (the manifest, the account or the state
    changed since it was made) or edited."""


class GuardError(ReconcilerError):
    """A safety guard refused the run (mass removal, no confirmation)."""


class OutputError(ReconcilerError):
    """Standard output cannot be written: closed, full, or a pipe nobody reads any more
    (``| head -1``). ``done`` says what the run did to AWS."""

    def __init__(self, what: str, why: str, done: str = "nothing was written to AWS") -> None:
        self.what, self.why = what, why
        super().__init__(f"cannot write {what} to standard output ({why}); {done}")

    def after(self, done: str) -> OutputError:
        """The same failure, saying instead what the run did to AWS."""
        return OutputError(self.what, self.why, done)
