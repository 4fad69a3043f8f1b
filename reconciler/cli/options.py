"""Options every command takes (:class:`Ctx`, :func:`common_options`), and the checks that
refuse an option a command would ignore."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

import click

from ..core.errors import UsageError
from ..core.manifest import Manifest, OwnershipMode
from ..core.model import AMI_ID_RE, OWNERSHIP_TAG, REGION_RE
from ..core.pacing import Pacer, Rate
from ..core.plan import Planned
from ..core.planning import PlanOptions
from ..core.regions import region_problem
from ..shell.aws import Clients
from ..shell.concurrency import Stop
from ..shell.reader import Reader
from ..shell.session import DEFAULT_CONCURRENCY, Connection, RunOptions, connect, open_aws, single

MIN_RATE_SHARE = 0.05  # ModifyImageAttribute then still gets a token every 4 s


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
        self.images: tuple[str, ...] | None = None  # --image (plan, apply, event)
        self._now: str | None = None  # the sandbox's pinned clock, once read

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

    def connect(self, manifest: Manifest | None, owner: str | None,
                write: bool = False) -> contextlib.AbstractContextManager[Connection]:
        """Every owner account of ``manifest`` (or, without one, the caller's own), through
        the plan roles the manifest names unless the command writes."""
        if manifest is None:
            return single(self.run_options())
        return connect(self.run_options(), manifest, owner, write)

    def pacer(self, overrides: Mapping[str, Rate] | None = None) -> Pacer:
        return self.run_options().pacer(overrides)

    def show_progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def options(self) -> PlanOptions:
        if self._now is None:
            self._now = _sandbox_now(self.sandbox) if self.sandbox else ""
        return PlanOptions(regions=self.regions, strict=self.strict, images=self.images,
                           now=self._now)


def _sandbox_now(path: str) -> str:
    """The time a sandbox state file pins the run to (``now:``), or "" for the clock."""
    from ..shell.sandbox.state import load_sandbox

    return load_sandbox(path).now


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


def _decorators(offline: bool) -> list[Callable[[Any], Any]]:
    """The common options; ``offline``: those that reach AWS are hidden from the help (a
    command that makes no AWS call refuses them, with a message that says why)."""
    return [
        click.option("--region", "regions", multiple=True, metavar="R", hidden=offline,
                     help="Restrict the run to this Region (repeatable)."),
        click.option("--profile", metavar="P", hidden=offline, help="AWS profile to use."),
        click.option("--strict", is_flag=True, help="Treat warnings as errors."),
        click.option("--concurrency", type=int, default=DEFAULT_CONCURRENCY, show_default=True,
                     metavar="N", hidden=offline,
                     help="Maximum AWS calls in flight per owner account."),
        click.option("--api-rate-share", default="1", show_default=True,
                     metavar="F", envvar="RECONCILE_API_RATE_SHARE", hidden=offline,
                     help="Use this share of AWS's default request rates (0.5 leaves half to "
                          "other tools; also RECONCILE_API_RATE_SHARE)."),
        click.option("--sandbox", metavar="STATE.yaml", hidden=offline,
                     help="Run against an embedded AWS emulator seeded from this state file."),
        click.option("--no-color", is_flag=True, help="Never color output (NO_COLOR is honoured too)."),
        click.option("--color", "force_color", is_flag=True,
                     help="Color output even when it is not a terminal (or FORCE_COLOR=1)."),
        click.option("-v", "--verbose", count=True, help="More detail."),
        click.option("--quiet", is_flag=True, help="Only errors and requested output."),
    ]


def _with_options(fn: Callable[..., Any], offline: bool) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(regions: tuple[str, ...], profile: str | None, strict: bool, concurrency: int,
                api_rate_share: str, sandbox: str | None, no_color: bool, force_color: bool,
                verbose: int, quiet: bool, **kwargs: Any) -> Any:
        ctx = Ctx(regions, profile, strict, concurrency, sandbox, no_color, verbose, quiet,
                  _rate_share(api_rate_share), click.get_current_context().find_object(Stop))
        ctx.force_color = force_color
        return fn(ctx, **kwargs)

    for d in reversed(_decorators(offline)):
        wrapper = d(wrapper)
    return wrapper


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that reads AWS takes, as a :class:`Ctx`."""
    return _with_options(fn, offline=False)


def offline_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`common_options` for a command that makes no AWS call: the help offers only
    the options it uses."""
    return _with_options(fn, offline=True)


SARIF_OPTION = click.option(
    "--sarif", "sarif_file", metavar="FILE",
    help="Also write a SARIF 2.1.0 log of the findings to this file (for code scanning).")


IMAGE_OPTION = click.option(
    "--image", "image_ids", multiple=True, metavar="AMI_ID",
    help="Only this image (repeatable): read and write it, its snapshots and the key access "
         "its consumers need, and nothing else.")


def checked_images(given: tuple[str, ...]) -> tuple[str, ...] | None:
    """``--image`` values, checked (None when none is given: every managed image)."""
    for ami in given:
        if not AMI_ID_RE.fullmatch(ami):
            raise UsageError(f"--image {ami!r} is not an AMI ID (ami- followed by 8 or 17 hex "
                             "digits)")
    return tuple(sorted(set(given))) if given else None


OWNER_OPTION = click.option(
    "--owner", metavar="ACCOUNT", help="Only this owner account (ID or role ARN from `owners:`); "
                                       "to shard big estates into parallel jobs.")


def _refuse_unused_options(ctx: Ctx, why: str, names: Iterable[str]) -> None:
    """An option a command would silently ignore is refused instead (so that a typo such
    as ``validate --sandbox missing.yaml`` does not pass as success)."""
    source = click.get_current_context().get_parameter_source
    given = [n for n in names if source(n) is click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join("--" + ("region" if n == "regions" else n.replace("_", "-"))
                          for n in given)
        raise UsageError(f"{why}: {flags} would be ignored; leave "
                         f"{'it' if len(given) == 1 else 'them'} out")


def _refuse_unnamed_regions(ctx: Ctx, m: Manifest, owner: str | None,
                            plan: Planned | None = None, *, releases: bool = True) -> None:
    """A ``--region`` the manifest does not name plans nothing: a usage error naming the
    Regions it has. With ownership tags such a Region may still hold images the manifest
    released (it was dropped from the manifest; a job sharded by Region releases them),
    so it is refused only once the ``plan`` found none there (before it: when ``releases``
    is false, as for explain, or ownership is not ``tag``)."""
    covered = m.covered_regions(owner)
    if ctx.regions is None or covered is None:
        return
    scans = releases and m.settings.ownership == OwnershipMode.TAG
    if plan is None and scans:
        return
    released = {key.region for key in plan.apply.released} if plan is not None else set()
    outside = [r for r in ctx.regions if r not in covered and r not in released]
    if not outside:
        return
    which = f" for owner {owner}" if owner and m.owners else ""
    tag = (f", and no image there carries its ownership tag {OWNERSHIP_TAG}={m.settings.name} "
           "to release" if scans else "")
    raise UsageError(f"--region {outside[0]}: {m.path} names no such Region{which} (its "
                     f"Regions: {', '.join(covered) or 'none'}){tag}; leave it out or add it "
                     "to the manifest")
