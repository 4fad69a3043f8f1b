"""``reconcile usage-reports``: request the AMI usage reports the next plan needs (SPEC
§7b; :mod:`reconciler.shell.usage`)."""

from __future__ import annotations

from dataclasses import replace

import click

from ..core import neutral
from ..core.errors import EXIT_ERROR, EXIT_OK
from ..core.model import plural
from ..shell.aws import mask_secrets
from ..shell.gather import build_plan
from ..shell.inputs import load_manifest
from ..shell.usage import Requested, request
from .options import (
    OWNER_OPTION,
    Ctx,
    _refuse_unnamed_regions,
    _refuse_unused_options,
    common_options,
)
from .output import _stdout

READY = ("EC2 does not say how long a report takes: `aws ec2 wait image-usage-report-available "
         "--region REGION --report-ids ID` waits for one (up to 10 minutes), and the next plan "
         "uses each report that is available by then")


@click.command("usage-reports")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--dry-run", is_flag=True, help="Say which reports would be requested; create none.")
@OWNER_OPTION
@common_options
def usage_reports(ctx: Ctx, manifest: str, dry_run: bool, owner: str | None) -> int:
    """Request the AMI usage reports the next plan needs. Writes no share.

    For each image the plan removes an account's launch permission from (or keeps it
    because a report lists the account using the image), create an AMI usage report of
    those accounts' instances and launch templates (ec2:CreateImageUsageReport). With
    settings.usage_reports, a plan withholds such a removal while the image's newest
    available report lists the account's use. Exit 0: requested (or nothing to request);
    1: error.

    \b
    Example:
      reconcile usage-reports amis.yaml --dry-run
      reconcile usage-reports amis.yaml --region us-east-1
    """
    _refuse_unused_options(ctx, "usage-reports has no warnings to make errors", ("strict",))
    m = load_manifest(manifest)
    _refuse_unnamed_regions(ctx, m, owner)
    checked = replace(m, settings=replace(m.settings, usage_reports=True))
    with ctx.connect(m, owner, write=not dry_run) as conn:  # CreateImageUsageReport
        ctx.info(f"Reading current state for {plural(len(m.rules), 'rule')}...")
        planned = build_plan(checked, conn.scopes, ctx.options(), conn.caller)
        _refuse_unnamed_regions(ctx, m, owner, planned)
        readers = {scope.reader.identity().account: scope.reader for scope in conn.scopes}
        results = request(planned, readers, dry_run)
    if not m.settings.usage_reports:
        ctx.info(neutral.text(f"Note: settings.usage_reports is false in {m.path}: plans do not "
                              "consult these reports until it is true."))
    with _stdout("the requested reports") as out:
        if not results:
            click.echo("No planned removal of an account: no report to request.", file=out)
        for r in results:
            if not r.error:
                click.echo(neutral.text(_line(r, dry_run)), file=out)
        if any(r.created for r in results):
            click.echo(neutral.text(READY + "."), file=out)
    for r in results:
        if r.error:
            click.echo(neutral.text(mask_secrets(f"error: {r.region} {r.image_id}: {r.error}")),
                       err=True)
    return EXIT_ERROR if any(r.error for r in results) else EXIT_OK


def _line(r: Requested, dry_run: bool) -> str:
    image = f"{r.region} {r.image_id}" + (f" ({r.name})" if r.name else "")
    accounts = ", ".join(r.accounts)
    if r.pending_since:
        return (f"{image}: report {r.report_id} is pending since {r.pending_since}; no new "
                "one requested (EC2 allows one pending report per AMI)")
    if dry_run:
        return f"{image}: would request a report of {accounts} (instances, launch templates)"
    return (f"{image}: requested report {r.report_id} of {accounts} (instances, launch "
            f"templates): pending, usable once available and until {r.expires}")
