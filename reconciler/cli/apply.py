"""``reconcile apply``: the plan shown, guarded and confirmed, then executed; its report,
and the one line about a run a signal stopped."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import os
import sys
import time
from collections.abc import Iterator

import click

from ..core import neutral
from ..core.errors import EXIT_ERROR, EXIT_OK, GuardError, OutputError, UsageError
from ..core.manifest import Manifest
from ..core.model import Action, parse_time, plural
from ..core.pacing import with_eta
from ..core.plan import Plan, Planned
from ..core.planfile import check_saved_plan
from ..shell.applier import (
    Applier,
    ApplyReport,
    DeprecationReport,
    JsonLog,
    Result,
    TagReport,
    deprecate,
    write_tags,
)
from ..shell.concurrency import Interrupted, signal_name
from ..shell.inputs import load_manifest, load_plan_file
from ..shell.progress import NoProgress, TerminalProgress
from ..shell.session import Connection
from .options import (
    IMAGE_OPTION,
    OWNER_OPTION,
    Ctx,
    _refuse_unnamed_regions,
    checked_images,
    common_options,
)
from .output import _stdout, _stdout_reader_gone
from .plan import _apply_seconds, _emit_plan, _plan


@click.command()
@click.argument("manifest", metavar="MANIFEST")
@click.option("--plan", "plan_file", metavar="PLAN.json",
              help="Apply exactly this saved plan (refused if stale).")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-mass-removal", is_flag=True,
              help="Allow more removals than settings.max_removals.")
@click.option("--log-file", metavar="FILE", help="Append one JSON line per executed operation.")
@click.option("--sandbox-save", metavar="STATE.yaml", type=click.Path(dir_okay=False),
              help="With --sandbox: write the emulator's state here afterwards.")
@IMAGE_OPTION
@OWNER_OPTION
@common_options
def apply(ctx: Ctx, manifest: str, plan_file: str | None, auto_approve: bool,
          allow_mass_removal: bool, log_file: str | None, sandbox_save: str | None,
          owner: str | None, image_ids: tuple[str, ...]) -> int:
    """Make AWS match the manifest: plan, confirm, then execute.

    \b
    Examples:
      reconcile apply amis.yaml                      # asks before changing anything
      reconcile apply amis.yaml --auto-approve       # for scheduled jobs
      reconcile apply amis.yaml --plan plan.json     # exactly a reviewed plan
    """
    ctx.images = checked_images(image_ids)
    if sandbox_save and not ctx.sandbox:
        raise UsageError("--sandbox-save needs --sandbox STATE.yaml")
    ctx.sandbox_save = sandbox_save
    m = load_manifest(manifest)
    saved = load_plan_file(plan_file) if plan_file else None
    if not auto_approve and not sys.stdin.isatty() and saved is None:
        raise GuardError("apply needs confirmation: no terminal to ask on, so pass --auto-approve "
                         "(or apply a reviewed plan with --plan PLAN.json)")
    _refuse_unnamed_regions(ctx, m, owner)
    with applying() as run, ctx.connect(m, owner, write=True) as conn:
        run.code = apply_plan(ctx, conn, m, run, saved=saved, auto_approve=auto_approve,
                              allow_mass_removal=allow_mass_removal, log_file=log_file,
                              owner=owner)
    return run.code


@dataclasses.dataclass
class Run:
    """An apply on its way: whether it began writing (a signal is then reported with what
    was applied), what it did, and its exit code."""

    writing: bool = False
    done: _Done | None = None
    code: int = EXIT_OK


@contextlib.contextmanager
def applying() -> Iterator[Run]:
    """Around an apply and its connection (whose end may save the sandbox's state): a
    signal once the writes began ends it with the one line that says what was applied."""
    run = Run()
    try:
        yield run
    except Interrupted as exc:
        if not run.writing:
            raise  # main says that nothing was written
        # after the writes (the sandbox's state being saved, the summary being printed)
        click.echo(_interrupted_line(exc.signum, run.done.report if run.done else None),
                   err=True)
        run.code = exc.exit_code


def apply_plan(ctx: Ctx, conn: Connection, m: Manifest, run: Run, *, saved: Plan | None,
               auto_approve: bool, allow_mass_removal: bool, log_file: str | None,
               owner: str | None, regions_given: bool = True) -> int:
    """Plan, show, guard, confirm and execute, over ``conn`` (``apply``, and ``event``, which
    restricts the run to its event's Region itself: ``regions_given`` false)."""
    todo = _plan(ctx, m, conn, allow_mass_removal)
    if regions_given:
        _refuse_unnamed_regions(ctx, m, owner, todo)
    if saved is not None:
        # the fresh plan is then exactly the saved one
        check_saved_plan(saved, todo.plan, m.sha256, m.path)
    _show_plan(ctx, todo, m)
    pending = todo.ownership is not None and todo.ownership.pending
    if not todo.has_changes and not pending:
        return EXIT_ERROR if todo.errors else EXIT_OK
    if todo.has_changes:
        _guard(todo, m, allow_mass_removal)
        if not auto_approve and saved is None and not _confirm():
            raise GuardError("apply cancelled; nothing was changed")
    if _stdout_reader_gone():
        raise OutputError("the plan", os.strerror(errno.EPIPE), NOTHING_APPLIED)
    run.writing = True
    run.done = _execute(ctx, conn, todo, m, log_file)
    return _report(run.done, todo)


NOTHING_APPLIED = "apply stopped before changing anything: nothing was written to AWS"


def _show_plan(ctx: Ctx, todo: Planned, m: Manifest) -> None:
    """The plan apply is about to carry out: if it cannot be shown in full, nothing is done."""
    try:
        _emit_plan(ctx, todo, m, "text", step_summary=False)
    except OutputError as exc:
        raise exc.after(NOTHING_APPLIED) from None


def _confirm() -> bool:
    try:
        return click.confirm("Apply these changes?", default=False, err=True)
    except Interrupted:
        click.echo(err=True)  # end the prompt's line: the message gets its own
        raise


def _guard(todo: Planned, m: Manifest, allow_mass_removal: bool) -> None:
    limit = m.settings.max_removals
    deprecations = len(todo.plan.deprecate)  # a deprecation counts as a removal
    if todo.summary.remove + deprecations > limit and not allow_mass_removal:
        also = f" and deprecates {plural(deprecations, 'build')}" if deprecations else ""
        raise GuardError(f"plan removes {plural(todo.summary.remove, 'permission')}{also}, more than "
                         f"settings.max_removals ({limit}); review it and pass "
                         "--allow-mass-removal to proceed")


# After a signal during apply, the writes in flight get this long to answer (so that the
# report and the log say what became of them) before the run ends without them.
IN_FLIGHT_GRACE = 1.0  # seconds


@dataclasses.dataclass(frozen=True)
class _Done:
    report: ApplyReport
    tags: TagReport
    stopped: bool  # by a signal, or because the log could not be written
    log_error: str = ""
    signum: int = 0  # the signal that stopped it
    retired: DeprecationReport = DeprecationReport()


def _execute(ctx: Ctx, conn: Connection, todo: Planned, m: Manifest, log_file: str | None) -> _Done:
    """Run the operations, then the ownership-tag writes; the log is closed whatever happens.
    A signal in any of that ends it at once: the writes in flight get a moment to answer,
    the others are reported (and logged) as not applied."""
    stop = ctx.stop  # a log that cannot be written stops the run too (no signal)
    identity = conn.identity()
    log = JsonLog(log_file, on_failure=stop.set) if log_file else None
    bar = TerminalProgress() if ctx.show_progress() else NoProgress()
    applier = Applier.for_plan(conn.clients, identity, todo, m.settings.kms_grants,
                               concurrency=ctx.concurrency, log=log, stop=stop,
                               progress=lambda _: bar.advance())
    signum = 0
    retired = DeprecationReport()
    try:
        bar.start(with_eta("Applying", _apply_seconds(ctx, todo, m)[0]), len(todo.operations))
        # deprecate, drain, then unshare (at the time the run plans by: a sandbox's pinned
        # clock, else now)
        pinned = parse_time(ctx.options().now) if ctx.sandbox else None
        retired = deprecate(applier, todo.plan.deprecate, m.settings.name, todo.plan.undeprecate,
                            **({"clock": lambda: pinned} if pinned else {}))
        report = applier.apply(todo.operations)
        tags = write_tags(applier, todo.ownership, report) if todo.ownership else TagReport()
    except Interrupted as exc:
        signum = exc.signum
        report = applier.settle(todo.operations,
                                min(stop.since, time.monotonic()) + IN_FLIGHT_GRACE)
        tags = TagReport()
    finally:
        bar.finish()
        if log is not None:
            log.close()
    log_error = ""
    if log is not None and log.error:
        log_error = (f"{log.error}; no write was started after that, and "
                     f"{plural(log.lost, 'record')} of the run could not be logged"
                     if log.lost else f"{log.error} (its last records may be missing)")
    return _Done(report, tags, stop.is_set(), log_error, signum, retired)


def _report(done: _Done, todo: Planned) -> int:
    report = done.report
    for o in report.failed:
        if o.result in (Result.NOT_APPLIED, Result.UNKNOWN):
            continue  # counted in the one line about the interruption
        op = o.operation
        click.echo(neutral.text(f"error: {op.action.value} {op.kind.value} {op.principal.label} "
                                f"on {op.region} {op.resource}: {o.error}"), err=True)
    for message in (*done.retired.failed, *done.tags.failed):
        click.echo(neutral.text(f"error: {message}"), err=True)
    if done.log_error:
        click.echo(neutral.text(f"error: {done.log_error}"), err=True)
    if done.signum:
        click.echo(_interrupted_line(done.signum, report), err=True)
        return 128 + done.signum
    if done.stopped:
        click.echo(_interrupted_line(0, report), err=True)
    adds = sum(1 for o in report.applied if o.operation.action is Action.ADD)
    try:
        with _stdout("the summary") as out:
            click.echo(f"Apply complete: {adds} added, {len(report.applied) - adds} removed, "
                       f"{len(report.failed)} failed.", file=out)
            r = done.retired
            if r.deprecated or r.undeprecated or r.failed:
                said = [plural(r.deprecated, "retired build") + " deprecated"] if (
                    r.deprecated or not r.undeprecated) else []
                said += [f"the deprecation of {plural(r.undeprecated, 'build')} shared again "
                         "taken back"] if r.undeprecated else []
                said += [f"{len(r.failed)} failed"] if r.failed else []
                click.echo(f"Deprecation: {', '.join(said)}.", file=out)
            if done.tags.tagged or done.tags.untagged or done.tags.failed:
                click.echo(f"Ownership tags: {done.tags.tagged} written, {done.tags.untagged} "
                           f"removed{f', {len(done.tags.failed)} failed' if done.tags.failed else ''}.",
                           file=out)
    except OutputError as exc:
        raise exc.after(f"the apply went ahead: {plural(len(report.applied), 'operation')} applied, "
                        f"{len(report.failed)} failed ({adds} added, "
                        f"{len(report.applied) - adds} removed)") from None
    if report.failed or done.tags.failed or done.retired.failed or todo.errors or done.stopped \
            or done.log_error:
        return EXIT_ERROR
    return EXIT_OK


def _interrupted_line(signum: int, report: ApplyReport | None) -> str:
    """The one line about an apply that stopped before its end."""
    by = f" by {signal_name(signum)}" if signum else ""
    if report is None:
        return f"Interrupted{by} while applying; run plan to see what is left."
    counts = collections.Counter(o.result for o in report.outcomes)
    unknown = counts[Result.UNKNOWN]
    in_flight = (f", {unknown} in flight (AWS may or may not have applied "
                 f"{'it' if unknown == 1 else 'them'})" if unknown else "")
    return (f"Interrupted{by}: {plural(len(report.applied), 'operation')} applied, "
            f"{counts[Result.NOT_APPLIED]} not applied{in_flight}; run plan to see what is "
            "left.")
