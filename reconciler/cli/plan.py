"""``reconcile plan``, and the plan it makes and shows (``apply`` shows the same one):
its text, JSON or Markdown, the errors that failed it, and how long applying it takes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import TextIO

import click

from .. import __version__
from ..core import neutral
from ..core.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, InputError
from ..core.manifest import Manifest
from ..core.model import Severity, plural, sorted_findings
from ..core.pacing import describe_duration
from ..core.plan import Planned
from ..core.render import key_policy_details, render_markdown, text_lines
from ..core.sarif import plan_log, problems_log
from ..shell.applier import write_calls
from ..shell.aws import mask_secrets
from ..shell.gather import build_plan
from ..shell.inputs import load_manifest
from ..shell.session import Connection
from ..shell.terminal import ansi
from .options import (
    IMAGE_OPTION,
    OWNER_OPTION,
    SARIF_OPTION,
    Ctx,
    _refuse_unnamed_regions,
    checked_images,
    common_options,
)
from .output import _stdout, _write_file, _write_sarif


@click.command()
@click.argument("manifest", metavar="MANIFEST")
@click.option("--out", metavar="PLAN.json", help="Also write the plan as JSON to this file.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "sarif"]),
              default="text", show_default=True,
              help="Output format on stdout (sarif: a SARIF 2.1.0 log for code scanning).")
@SARIF_OPTION
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 2 when the plan has changes (0: none, 1: error).")
@click.option("--allow-mass-removal", is_flag=True,
              help="Acknowledge more removals than settings.max_removals (else an error).")
@IMAGE_OPTION
@OWNER_OPTION
@common_options
def plan(ctx: Ctx, manifest: str, out: str | None, fmt: str, sarif_file: str | None,
         detailed_exitcode: bool, allow_mass_removal: bool, owner: str | None,
         image_ids: tuple[str, ...]) -> int:
    """Show what apply would change. Reads AWS, writes nothing to it.

    \b
    Example:
      reconcile plan amis.yaml --out plan.json --detailed-exitcode
      reconcile plan amis.yaml --format markdown --sarif plan.sarif
      reconcile plan amis.yaml --image ami-0abcdef1234567890 --region us-east-1
    """
    ctx.images = checked_images(image_ids)
    try:
        m = load_manifest(manifest)
    except InputError as exc:  # the manifest's problems are the log's results
        problems = exc.problems
        _write_sarif(fmt, sarif_file, lambda: problems_log(problems, __version__))
        raise
    _refuse_unnamed_regions(ctx, m, owner)
    with ctx.connect(m, owner) as conn:
        p = _plan(ctx, m, conn, allow_mass_removal)
        _refuse_unnamed_regions(ctx, m, owner, p)
    if out:
        _write_file(out, p.json_lines())
    if sarif_file:
        _write_file(sarif_file, plan_log(p, m, __version__))
    _emit_plan(ctx, p, m, fmt)
    if line := _apply_time(ctx, p, m):
        ctx.info(line)
    if p.errors:
        return EXIT_ERROR
    if detailed_exitcode and p.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def _text(ctx: Ctx, plan: Planned, manifest: Manifest, out: TextIO) -> Iterator[str]:
    details = key_policy_details(plan) if ctx.verbose else None
    return text_lines(plan, manifest, paint=ansi if ctx.color(out) else None, details=details)


def _emit_plan(ctx: Ctx, plan: Planned, manifest: Manifest, fmt: str,
               step_summary: bool = True) -> None:
    with _stdout("the plan") as out:
        if fmt == "json":
            out.writelines(plan.json_lines())
        elif fmt == "markdown":
            out.write(render_markdown(plan, manifest))
        elif fmt == "sarif":
            out.write(plan_log(plan, manifest, __version__))
        else:
            out.writelines(_text(ctx, plan, manifest, out))
    # In every format: the plan may go to a file, a comment or /dev/null, and a long one is
    # cut; the errors that failed it still reach the log.
    for f in plan.errors:
        where = f" {f.where}" if f.where else ""
        click.echo(neutral.text(mask_secrets(f"error: [{f.code}]{where}: {f.message}")),
                   err=True)
    summary_md = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_md and step_summary:
        with contextlib.suppress(OSError), open(summary_md, "a", encoding="utf-8") as fh:
            fh.write(render_markdown(plan, manifest))


def _plan(ctx: Ctx, manifest: Manifest, conn: Connection, allow_mass_removal: bool) -> Planned:
    ctx.info(f"Reading current state for {plural(len(manifest.rules), 'rule')}...")
    options = replace(ctx.options(), allow_mass_removal=allow_mass_removal)
    plan = build_plan(manifest, conn.scopes, options, conn.caller)
    hygiene = [replace(f, severity=Severity.ERROR) if ctx.strict else f for f in manifest.hygiene()]
    if not hygiene:
        return plan
    return replace(plan, plan=replace(plan.plan, findings=sorted_findings([*plan.findings,
                                                                           *hygiene])))


APPLY_TIME_AT_LEAST = 30.0  # seconds: a plan that applies faster needs no estimate


def _apply_seconds(ctx: Ctx, plan: Planned, m: Manifest) -> tuple[float, tuple[str, str, str] | None]:
    """How long the plan's writes take at least at the request rates (fresh buckets: reads
    and writes use different actions), and the bucket that decides it."""
    longest: tuple[float, tuple[str, str, str] | None] = (0.0, None)
    for calls in write_calls(plan.operations, plan.apply.resource_owner).values():
        longest = max(longest, ctx.pacer(dict(m.settings.api_rates)).bottleneck(calls),
                      key=lambda x: x[0])
    return longest


def _apply_time(ctx: Ctx, plan: Planned, m: Manifest) -> str:
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
