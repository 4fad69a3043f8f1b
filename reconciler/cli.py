"""The ``reconcile`` command line: the imperative shell around the pure pipeline.

Exit codes (contract): 0 success / no changes, 1 any error, 2 plan has changes (only with
``--detailed-exitcode``). click's own usage errors would exit 2, which means "changes
present" here, so :func:`main` maps every usage error to 1. A run that SIGINT or SIGTERM
stops exits 128 + the signal's number (130, 143), as shells report it.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import errno
import functools
import gc
import json
import os
import select
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, NoReturn, TextIO

import click

from . import __version__
from .core import neutral
from .core.errors import (
    EXIT_CANNOT,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    GuardError,
    InputError,
    OutputError,
    Problem,
    ReconcilerError,
    UsageError,
)
from .core.explain import Verdict, resolve_principal, unknown_principal
from .core.explain import explain as explain_verdict
from .core.exporter import ImageFilter, compute_export, parse_tag_filters, schema_ref_for
from .core.manifest import Manifest, default_name, load_manifest
from .core.model import (
    OWNERSHIP_TAG,
    REGION_RE,
    Action,
    Severity,
    plural,
    sorted_findings,
)
from .core.names import load_names
from .core.pacing import Pacer, Rate, describe_duration, with_eta
from .core.plan import Plan, check_saved_plan, load_plan_file
from .core.planning import PlanOptions
from .core.regions import region_problem
from .core.render import key_policy_details, render_markdown, text_lines
from .shell.applier import (
    Applier,
    ApplyReport,
    JsonLog,
    Result,
    TagReport,
    write_calls,
    write_tags,
)
from .shell.aws import (
    Clients,
    describe_error,
    mask_secrets,
)
from .shell.concurrency import Interrupted, Stop, signal_name, stop_on_signals
from .shell.gather import build_plan, read_explain, read_export
from .shell.progress import NoProgress, TerminalProgress
from .shell.reader import Reader
from .shell.session import (
    DEFAULT_CONCURRENCY,
    Connection,
    RunOptions,
    connect,
    open_aws,
    single,
)

MIN_RATE_SHARE = 0.05  # ModifyImageAttribute then still gets a token every 4 s
# After a signal during apply, the writes in flight get this long to answer (so that the
# report and the log say what became of them) before the run ends without them.
IN_FLIGHT_GRACE = 1.0  # seconds


class Ctx:
    """Options common to every command."""

    def __init__(self, regions: tuple[str, ...], profile: str | None, strict: bool,
                 concurrency: int, sandbox: str | None, no_color: bool, verbose: int,
                 quiet: bool, api_rate_share: float = 1.0, stop: Stop | None = None) -> None:
        for r in regions:
            if not REGION_RE.fullmatch(r):
                raise UsageError(f"--region {r!r} is not a valid AWS Region name (like us-east-1)")
            if why := region_problem(r):
                raise UsageError(f"--region {why}")
        if concurrency < 1 or concurrency > 256:
            raise UsageError(f"--concurrency must be between 1 and 256, got {concurrency}")
        self.api_rate_share = api_rate_share
        self.regions = regions or None
        self.profile = profile
        self.strict = strict
        self.concurrency = concurrency
        self.sandbox = sandbox
        self.verbose = verbose
        self.quiet = quiet
        self.no_color = no_color
        self.force_color = False
        self.sandbox_save: str | None = None
        self.stop = stop or Stop()  # the command's one stop (see main)

    def color(self, stream: TextIO) -> bool:
        """--no-color / NO_COLOR win; --color / FORCE_COLOR force it (CI logs render ANSI)."""
        if self.no_color or os.environ.get("NO_COLOR"):
            return False
        if self.force_color or os.environ.get("FORCE_COLOR"):
            return True
        return bool(getattr(stream, "isatty", lambda: False)())

    def info(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    def run_options(self) -> RunOptions:
        return RunOptions(regions=self.regions, profile=self.profile,
                          concurrency=self.concurrency, api_rate_share=self.api_rate_share,
                          sandbox=self.sandbox, sandbox_save=self.sandbox_save,
                          progress=self.show_progress(), stop=self.stop)

    def aws(self) -> contextlib.AbstractContextManager[tuple[Clients, Reader]]:
        """Clients and a reader for the caller, inside the sandbox when one is given."""
        return open_aws(self.run_options())

    def connect(self, manifest: Manifest | None,
                owner: str | None) -> contextlib.AbstractContextManager[Connection]:
        """Every owner account of ``manifest`` (or, without one, the caller's own)."""
        if manifest is None:
            return single(self.run_options())
        return connect(self.run_options(), manifest, owner)

    def pacer(self, overrides: Mapping[str, Rate] | None = None) -> Pacer:
        return self.run_options().pacer(overrides)

    def show_progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def options(self) -> PlanOptions:
        return PlanOptions(regions=self.regions, strict=self.strict)


def _rate_share(text: str) -> float:
    """--api-rate-share, or RECONCILE_API_RATE_SHARE: the error names the one that was given."""
    source = click.get_current_context().get_parameter_source("api_rate_share")
    given = ("RECONCILE_API_RATE_SHARE" if source is click.core.ParameterSource.ENVIRONMENT
             else "--api-rate-share")
    try:
        share = float(text)
    except ValueError:
        share = float("nan")
    if not MIN_RATE_SHARE <= share <= 1:  # nan included
        raise UsageError(f"{given} must be a number between {MIN_RATE_SHARE:g} and 1, got "
                         f"{text!r}")
    return share


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    decorators = [
        click.option("--region", "regions", multiple=True, metavar="R",
                     help="Restrict the run to this Region (repeatable)."),
        click.option("--profile", metavar="P", help="AWS profile to use."),
        click.option("--strict", is_flag=True, help="Treat warnings as errors."),
        click.option("--concurrency", type=int, default=DEFAULT_CONCURRENCY, show_default=True,
                     metavar="N", help="Maximum AWS calls in flight per owner account."),
        click.option("--api-rate-share", default="1", show_default=True,
                     metavar="F", envvar="RECONCILE_API_RATE_SHARE",
                     help="Use this share of AWS's default request rates (0.5 leaves half to "
                          "other tools; also RECONCILE_API_RATE_SHARE)."),
        click.option("--sandbox", metavar="STATE.yaml",
                     help="Run against an embedded AWS emulator seeded from this state file."),
        click.option("--no-color", is_flag=True, help="Never color output (NO_COLOR is honoured too)."),
        click.option("--color", "force_color", is_flag=True,
                     help="Color output even when it is not a terminal (or FORCE_COLOR=1)."),
        click.option("-v", "--verbose", count=True, help="More detail."),
        click.option("--quiet", is_flag=True, help="Only errors and requested output."),
    ]

    @functools.wraps(fn)
    def wrapper(regions: tuple[str, ...], profile: str | None, strict: bool, concurrency: int,
                api_rate_share: str, sandbox: str | None, no_color: bool, force_color: bool,
                verbose: int, quiet: bool, **kwargs: Any) -> Any:
        ctx = Ctx(regions, profile, strict, concurrency, sandbox, no_color, verbose, quiet,
                  _rate_share(api_rate_share), click.get_current_context().find_object(Stop))
        ctx.force_color = force_color
        return fn(ctx, **kwargs)

    for d in reversed(decorators):
        wrapper = d(wrapper)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reconcile")
def cli() -> None:
    """Declarative AMI sharing: plan and apply launch permissions from a YAML manifest.

    \b
    Typical flow:
      reconcile validate amis.yaml
      reconcile plan amis.yaml --out plan.json
      reconcile apply amis.yaml --plan plan.json
    """


@cli.command()
@click.argument("manifests", metavar="MANIFEST...", nargs=-1, required=True)
@common_options
def validate(ctx: Ctx, manifests: tuple[str, ...]) -> int:
    """Check manifests offline (schema and semantics). No AWS call is made.

    Every error in every file is reported; exit 1 if any file is invalid.

    \b
    Example:
      reconcile validate amis.yaml
    """
    _refuse_unused_options(ctx, "validate makes no AWS call",
                           ("regions", "profile", "concurrency", "sandbox"))
    problems: list[Problem] = []
    warned = False
    for manifest in manifests:
        try:
            m = load_manifest(manifest)
        except InputError as exc:
            problems += exc.problems
            continue
        for f in m.hygiene():
            warned = True
            click.echo(neutral.text(f"{'error' if ctx.strict else 'warning'}: {manifest}: "
                                    f"[{f.code}] {f.message}"), err=True)
        with _stdout("the result") as out:
            click.echo(neutral.text(f"{manifest}: valid ({plural(len(m.rules), 'rule')}, "
                                    f"{plural(len(m.principals), 'named principal')}, "
                                    f"Regions {', '.join(m.regions) or 'none'})"), file=out)
    if problems:
        raise InputError(problems)
    return EXIT_ERROR if warned and ctx.strict else EXIT_OK


def _refuse_unused_options(ctx: Ctx, why: str, names: Iterable[str]) -> None:
    """An option a command would silently ignore is refused instead (so that a typo such
    as ``validate --sandbox missing.yaml`` does not pass as success)."""
    source = click.get_current_context().get_parameter_source
    given = [n for n in names if source(n) is click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + ("region" if n == "regions" else n) for n in given)
        raise UsageError(f"{why}: {flags} would be ignored; leave "
                         f"{'it' if len(given) == 1 else 'them'} out")


def _write_file(path: str, text: str | Iterable[str]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines([text] if isinstance(text, str) else text)
    except OSError as exc:
        raise ReconcilerError(f"cannot write {path}: {exc.strerror}") from None


def _text(ctx: Ctx, plan: Plan, manifest: Manifest, out: TextIO) -> Iterator[str]:
    details = key_policy_details(plan) if ctx.verbose else None
    return text_lines(plan, manifest, color=ctx.color(out), details=details)


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


def _emit_plan(ctx: Ctx, plan: Plan, manifest: Manifest, fmt: str,
               step_summary: bool = True) -> None:
    with _stdout("the plan") as out:
        if fmt == "json":
            out.writelines(plan.json_lines())
        elif fmt == "markdown":
            out.write(render_markdown(plan, manifest))
        else:
            out.writelines(_text(ctx, plan, manifest, out))
    # In every format: the plan may go to a file, a comment or /dev/null, and a long one is
    # cut; the errors that failed it still reach the log.
    for f in plan.errors:
        where = " ".join(x for x in (f.region, f.resource) if x)
        click.echo(neutral.text(mask_secrets(f"error: [{f.code}] {where}: {f.message}")),
                   err=True)
    summary_md = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_md and step_summary:
        with contextlib.suppress(OSError), open(summary_md, "a", encoding="utf-8") as fh:
            fh.write(render_markdown(plan, manifest))


def _plan(ctx: Ctx, manifest: Manifest, conn: Connection, allow_mass_removal: bool) -> Plan:
    ctx.info(f"Reading current state for {len(manifest.rules)} rules...")
    options = replace(ctx.options(), allow_mass_removal=allow_mass_removal)
    plan = build_plan(manifest, conn.scopes, options, conn.caller)
    hygiene = [replace(f, severity=Severity.ERROR) if ctx.strict else f for f in manifest.hygiene()]
    return replace(plan, findings=sorted_findings([*plan.findings, *hygiene])) if hygiene else plan


def _refuse_unnamed_regions(ctx: Ctx, m: Manifest, owner: str | None,
                            plan: Plan | None = None, *, releases: bool = True) -> None:
    """A ``--region`` the manifest does not name plans nothing: a usage error naming the
    Regions it has. With ownership tags such a Region may still hold images the manifest
    released (it was dropped from the manifest; a job sharded by Region releases them),
    so it is refused only once the ``plan`` found none there (before it: when ``releases``
    is false, as for explain, or ownership is not ``tag``)."""
    covered = m.covered_regions(owner)
    if ctx.regions is None or covered is None:
        return
    scans = releases and m.settings.ownership == "tag"
    if plan is None and scans:
        return
    released = {region for region, _ in plan.ownership.untag} if (
        plan is not None and plan.ownership is not None) else set()
    outside = [r for r in ctx.regions if r not in covered and r not in released]
    if not outside:
        return
    which = f" for owner {owner}" if owner and m.owners else ""
    tag = (f", and no image there carries its ownership tag {OWNERSHIP_TAG}={m.settings.name} "
           "to release" if scans else "")
    raise UsageError(f"--region {outside[0]}: {m.path} names no such Region{which} (its "
                     f"Regions: {', '.join(covered) or 'none'}){tag}; leave it out or add it "
                     "to the manifest")


OWNER_OPTION = click.option(
    "--owner", metavar="ACCOUNT", help="Only this owner account (ID or role ARN from `owners:`); "
                                       "to shard big estates into parallel jobs.")


@cli.command()
@click.argument("manifest", metavar="MANIFEST")
@click.option("--out", metavar="PLAN.json", help="Also write the plan as JSON to this file.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Output format on stdout.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when the plan has changes (0: none, 1: error).")
@click.option("--allow-mass-removal", is_flag=True,
              help="Acknowledge more removals than settings.max_removals (else an error).")
@OWNER_OPTION
@common_options
def plan(ctx: Ctx, manifest: str, out: str | None, fmt: str, detailed_exitcode: bool,
         allow_mass_removal: bool, owner: str | None) -> int:
    """Show what apply would change. Reads AWS, writes nothing to it.

    \b
    Example:
      reconcile plan amis.yaml --out plan.json --detailed-exitcode
    """
    m = load_manifest(manifest)
    _refuse_unnamed_regions(ctx, m, owner)
    with ctx.connect(m, owner) as conn:
        p = _plan(ctx, m, conn, allow_mass_removal)
        _refuse_unnamed_regions(ctx, m, owner, p)
    if out:
        _write_file(out, p.json_lines())
    _emit_plan(ctx, p, m, fmt)
    if line := _apply_time(ctx, p, m):
        ctx.info(line)
    if p.errors:
        return EXIT_ERROR
    if detailed_exitcode and p.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


@cli.command()
@click.argument("manifest", metavar="MANIFEST")
@click.option("--plan", "plan_file", metavar="PLAN.json",
              help="Apply exactly this saved plan (refused if stale).")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-mass-removal", is_flag=True,
              help="Allow more removals than settings.max_removals.")
@click.option("--log-file", metavar="FILE", help="Append one JSON line per executed operation.")
@click.option("--sandbox-save", metavar="STATE.yaml", type=click.Path(dir_okay=False),
              help="With --sandbox: write the emulator's state here afterwards.")
@OWNER_OPTION
@common_options
def apply(ctx: Ctx, manifest: str, plan_file: str | None, auto_approve: bool,
          allow_mass_removal: bool, log_file: str | None, sandbox_save: str | None,
          owner: str | None) -> int:
    """Make AWS match the manifest: plan, confirm, then execute.

    \b
    Examples:
      reconcile apply amis.yaml                      # asks before changing anything
      reconcile apply amis.yaml --auto-approve       # for scheduled jobs
      reconcile apply amis.yaml --plan plan.json     # exactly a reviewed plan
    """
    if sandbox_save and not ctx.sandbox:
        raise UsageError("--sandbox-save needs --sandbox STATE.yaml")
    ctx.sandbox_save = sandbox_save
    m = load_manifest(manifest)
    saved = load_plan_file(plan_file) if plan_file else None
    if not auto_approve and not sys.stdin.isatty() and saved is None:
        raise GuardError("apply needs confirmation: no terminal to ask on, so pass --auto-approve "
                         "(or apply a reviewed plan with --plan PLAN.json)")
    writing = False  # once true, a signal is reported with what was applied
    done: _Done | None = None
    _refuse_unnamed_regions(ctx, m, owner)
    try:
        with ctx.connect(m, owner) as conn:
            todo = _plan(ctx, m, conn, allow_mass_removal)
            _refuse_unnamed_regions(ctx, m, owner, todo)
            if saved is not None:
                # the fresh plan is then exactly the saved one
                check_saved_plan(saved, todo, m.sha256, m.path)
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
            writing = True
            done = _execute(ctx, conn, todo, m, log_file)
        return _report(done, todo)
    except Interrupted as exc:
        if not writing:
            raise  # main says that nothing was written
        # after the writes (the sandbox's state being saved, the summary being printed)
        click.echo(_interrupted_line(exc.signum, done.report if done else None), err=True)
        return exc.exit_code


NOTHING_APPLIED = "apply stopped before changing anything: nothing was written to AWS"


def _show_plan(ctx: Ctx, todo: Plan, m: Manifest) -> None:
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


APPLY_TIME_AT_LEAST = 30.0  # seconds: a plan that applies faster needs no estimate


def _apply_seconds(ctx: Ctx, plan: Plan, m: Manifest) -> tuple[float, tuple[str, str, str] | None]:
    """How long the plan's writes take at least at the request rates (fresh buckets: reads
    and writes use different actions), and the bucket that decides it."""
    longest: tuple[float, tuple[str, str, str] | None] = (0.0, None)
    for calls in write_calls(plan.operations, plan.resource_owner).values():
        longest = max(longest, ctx.pacer(dict(m.settings.api_rates)).bottleneck(calls),
                      key=lambda x: x[0])
    return longest


def _apply_time(ctx: Ctx, plan: Plan, m: Manifest) -> str:
    """'Applying this plan takes ~3 min at ...' for plans long to apply, else ''."""
    seconds, slowest = _apply_seconds(ctx, plan, m)
    if seconds < APPLY_TIME_AT_LEAST or slowest is None:
        return ""
    region, service, action = slowest
    rate = ctx.pacer(dict(m.settings.api_rates)).rate(service, action)
    which = ("AWS's default request rate" if ctx.api_rate_share == 1 and action not in
             dict(m.settings.api_rates) else "the configured request rate")
    per_second = f" ({rate.per_second:g} per second)" if rate is not None else ""
    return (f"Applying this plan takes {describe_duration(seconds)} at {which} for "
            f"{action}{per_second} in {region}.")


def _guard(todo: Plan, m: Manifest, allow_mass_removal: bool) -> None:
    limit = m.settings.max_removals
    if todo.summary.remove > limit and not allow_mass_removal:
        raise GuardError(f"plan removes {todo.summary.remove} permissions, more than "
                         f"settings.max_removals ({limit}); review it and pass "
                         "--allow-mass-removal to proceed")


@dataclasses.dataclass(frozen=True)
class _Done:
    report: ApplyReport
    tags: TagReport
    stopped: bool  # by a signal, or because the log could not be written
    log_error: str = ""
    signum: int = 0  # the signal that stopped it


def _execute(ctx: Ctx, conn: Connection, todo: Plan, m: Manifest, log_file: str | None) -> _Done:
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
    try:
        bar.start(with_eta("Applying", _apply_seconds(ctx, todo, m)[0]), len(todo.operations))
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
    return _Done(report, tags, stop.is_set(), log_error, signum)


def _report(done: _Done, todo: Plan) -> int:
    report = done.report
    for o in report.failed:
        if o.result in (Result.NOT_APPLIED, Result.UNKNOWN):
            continue  # counted in the one line about the interruption
        op = o.operation
        click.echo(neutral.text(f"error: {op.action.value} {op.kind.value} {op.principal.label} "
                                f"on {op.region} {op.resource}: {o.error}"), err=True)
    for message in done.tags.failed:
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
            if done.tags.tagged or done.tags.untagged or done.tags.failed:
                click.echo(f"Ownership tags: {done.tags.tagged} written, {done.tags.untagged} "
                           f"removed{f', {len(done.tags.failed)} failed' if done.tags.failed else ''}.",
                           file=out)
    except OutputError as exc:
        raise exc.after(f"the apply went ahead: {len(report.applied)} operations applied, "
                        f"{len(report.failed)} failed ({adds} added, "
                        f"{len(report.applied) - adds} removed)") from None
    if report.failed or done.tags.failed or todo.errors or done.stopped or done.log_error:
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
    return (f"Interrupted{by}: {len(report.applied)} operations applied, "
            f"{counts[Result.NOT_APPLIED]} not applied{in_flight}; run plan to see what is "
            "left.")


@cli.command()
@click.option("--out", metavar="MANIFEST", help="Write the manifest to this file (default: stdout).")
@click.option("--names", "names_file", metavar="FILE",
              help="YAML mapping of names to principals, or a manifest (its `principals:` are "
                   "used), for names instead of generated ones such as account-111122223333.")
@click.option("--name-glob", metavar="GLOB", help="Only images whose Name matches this glob.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
              help="Only images with this tag (repeatable; all must match).")
@common_options
def export(ctx: Ctx, out: str | None, names_file: str | None, name_glob: str | None,
           tags: tuple[str, ...]) -> int:
    """Write a manifest from the current shares of the images you own.

    Only shared images are exported, grouped into rules by who they are shared with;
    `reconcile plan` on the result reports no changes. Review it before committing.
    Regions: every --region given, else the session's Region (else us-east-1).

    \b
    Example:
      reconcile export --region us-east-1 --region eu-west-1 --out amis.yaml
      reconcile plan amis.yaml --detailed-exitcode     # exit 0: no changes
    """
    image_filter = ImageFilter(name_glob, parse_tag_filters(tags))
    names = load_names(names_file) if names_file else {}
    with ctx.aws() as (clients, reader):
        regions = ctx.regions or (clients.default_region,)
        ctx.info(f"Reading the shares of your images in {', '.join(sorted(set(regions)))}...")
        identity, state = read_export(reader, regions, image_filter)
    result = compute_export(identity, state, names, image_filter=image_filter,
                            schema_ref=schema_ref_for(out),
                            file_name=default_name(out) if out else None)
    if out:
        _write_file(out, result.text)
    else:
        with _stdout("the manifest") as stream:
            stream.write(result.text)
    n = len(result.exported)
    ctx.info(f"Exported {plural(n, 'shared image')} in {plural(result.rules, 'rule')}"
             f"{f' to {out}' if out else ''}.")
    if result.left_out:
        many = len(result.left_out) != 1
        ctx.info(f"Left out {plural(len(result.left_out), 'shared image')} that cannot "
                 f"be managed as {'they are' if many else 'it is'} (the reasons are at the end "
                 "of the manifest):")
        for lo in result.left_out:
            ctx.info(neutral.text(f"  {lo.image.region} {lo.image.image_id} ({lo.image.name})"))
    return EXIT_OK


@cli.command()
@click.argument("principal")
@click.argument("manifest", metavar="[MANIFEST]", required=False)
@click.option("--image", "image_id", metavar="AMI_ID", help="The image to explain.")
@click.option("--rule", "rule_name", metavar="NAME",
              help="Explain every image this rule of MANIFEST matches.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format on stdout.")
@OWNER_OPTION
@common_options
def explain(ctx: Ctx, principal: str, manifest: str | None, image_id: str | None,
            rule_name: str | None, fmt: str, owner: str | None) -> int:
    """Say whether PRINCIPAL can launch an image, and why (not).

    PRINCIPAL is an account ID, an Organization/OU ARN, `public`, or a name from MANIFEST.
    Exit 0: it can launch (every image asked about); 3: it cannot (any); 1: error.

    \b
    Examples:
      reconcile explain 444455556666 --image ami-0abc1234def567890
      reconcile explain staging amis.yaml --rule golden-al2023
    """
    if (image_id is None) == (rule_name is None):
        raise UsageError("give exactly one of --image AMI_ID or --rule NAME")
    m = load_manifest(manifest) if manifest else None
    if rule_name is not None and m is None:
        raise UsageError("--rule needs the MANIFEST it names a rule of")
    p = resolve_principal(principal, m.principals if m else ())
    if p is None:
        raise UsageError(unknown_principal(principal, [n for n, _ in m.principals] if m else [],
                                           manifest))
    if m is not None:
        _refuse_unnamed_regions(ctx, m, owner, releases=False)
    verdicts: list[Verdict] = []
    with ctx.connect(m, owner) as conn:
        for scope in conn.scopes:
            regions = ctx.regions or scope.regions or (m.regions if m else (conn.default_region,))
            try:
                verdicts += [explain_verdict(p, facts) for facts in
                             read_explain(scope.reader, regions, image_id, m, rule_name)]
            except UsageError:
                if len(conn.scopes) == 1 or rule_name is not None:
                    raise  # with several owners, one of them owns the image
    if not verdicts:
        raise UsageError(f"no owner account has {image_id}" if image_id else
                         f"rule {rule_name!r} matches no image the caller owns")
    who = principal if principal == p.label else f"{p.label} ({principal})"
    can = bool(verdicts) and all(v.can_launch for v in verdicts)
    with _stdout("the verdict") as out:
        if fmt == "json":
            click.echo(neutral.json_text(json.dumps(
                {"principal": p.to_dict(), "can_launch": can,
                 "images": [v.to_dict(who) for v in verdicts]}, indent=2, ensure_ascii=False)),
                file=out)
        else:
            if len(verdicts) != 1:
                cannot = sum(not v.can_launch for v in verdicts)
                click.echo(neutral.text(f"{who} {'can launch' if can else 'cannot launch'} "
                                        + (f"all {len(verdicts)} images" if can else
                                           f"{cannot} of {len(verdicts)} images")
                                        + f" of rule {rule_name}"), file=out)
            for v in verdicts:
                for line in v.text_lines(who):
                    click.echo(neutral.text(line), file=out)
    return EXIT_OK if can else EXIT_CANNOT


def _print_error(exc: ReconcilerError | str) -> None:
    """One line per error (an input error: per problem), made inert (SPEC §7d)."""
    lines = ([str(p) for p in exc.problems] if isinstance(exc, InputError)
             else [str(exc)])
    for line in lines:
        line = neutral.text(mask_secrets(line))
        click.echo(f"error: {line}" if not line.startswith("error:") else line, err=True)


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
