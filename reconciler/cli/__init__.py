"""The ``reconcile`` command line: the imperative shell around the pure pipeline.

Exit codes (contract): 0 success / no changes, 1 any error, 2 plan has changes (only with
``--detailed-exitcode``), 3 ``explain``/``verify``: a principal or consumer cannot launch. click's own usage errors would exit 2, which means "changes
present" here, so :func:`main` maps every usage error to 1. A run that SIGINT or SIGTERM
stops exits 128 + the signal's number (130, 143), as shells report it.

- :mod:`.group`: the ``reconcile`` group; a module per command (:mod:`.validate`,
  :mod:`.plan`, :mod:`.apply`, :mod:`.export`, :mod:`.explain`, :mod:`.verify`);
- :mod:`.options`: the options every command takes (:class:`~.options.Ctx`);
- :mod:`.output`: standard output, files and error lines;
- here: :func:`main`, the console script's entry point.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import traceback
from typing import NoReturn

import click

from ..core import neutral
from ..core.errors import EXIT_ERROR, EXIT_OK, ReconcilerError
from ..shell.aws import describe_error, mask_secrets
from ..shell.concurrency import Interrupted, Stop, signal_name, stop_on_signals
from .group import cli
from .output import _print_error, _release_stdout
from .output import _stdout_reader_gone as _stdout_reader_gone  # re-exported for the tests


def _verbose(argv: list[str]) -> bool:
    return any(a == "--verbose" or (a.startswith("-v") and set(a[1:]) == {"v"}) for a in argv)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: the one place exceptions become exit codes. It owns the
    process: SIGINT and SIGTERM stop the command (exit 130, 143), and are ignored from its
    end to the exit."""
    if not (sys.argv[1:] if argv is None else argv) and "_RECONCILE_COMPLETE" not in os.environ:
        # bare `reconcile`: the help, not a usage error (shell completion also has no args)
        with click.Context(cli, info_name="reconcile", **cli.context_settings) as ctx:
            click.echo(cli.get_help(ctx))
        sys.exit(EXIT_OK)
    with stop_on_signals(Stop()) as stop:
        code = _run(argv, stop)
    _release_stdout()
    _exit_without_collecting()
    sys.exit(code)


def _exit_without_collecting() -> None:
    """Leave out the collector's passes over every object the run made when the process
    ends (~0.1 s over botocore's service models): the process exits and its memory goes
    with it. Done at the exit (atexit), so that a process that goes on, like the test
    suite's in-process runs, keeps collecting until its own end."""
    atexit.unregister(gc.freeze)  # once, however many runs
    atexit.register(gc.freeze)


def _run(argv: list[str] | None, stop: Stop) -> int:
    try:
        rv = cli.main(args=argv, prog_name="reconcile", standalone_mode=False, obj=stop)
        return rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted; nothing was changed.", err=True)
    except click.ClickException as exc:  # usage errors: 1, never 2
        exc.show()
    except ReconcilerError as exc:
        _print_error(exc)
        return exc.exit_code
    except Interrupted as exc:  # before apply wrote anything (apply reports its own)
        click.echo(f"Interrupted by {signal_name(exc.signum)}; nothing was written to AWS.",
                   err=True)
        return exc.exit_code
    except Exception as exc:
        import botocore.exceptions

        if isinstance(exc, botocore.exceptions.BotoCoreError | botocore.exceptions.ClientError):
            _print_error(describe_error(exc))  # outside the reader/applier (credentials...)
        else:
            # Last resort: one line, never a traceback unless asked for (-v).
            if _verbose(sys.argv[1:] if argv is None else argv):
                click.echo(mask_secrets(traceback.format_exc()), err=True, nl=False)
            text = " ".join(str(exc).split())
            click.echo(neutral.text(mask_secrets(f"internal error: {type(exc).__name__}: {text}; "
                                                 "rerun with -v for details")), err=True)
    return EXIT_ERROR


__all__ = ["cli", "main"]
