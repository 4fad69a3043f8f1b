"""``reconcile verify``: whether each declared consumer account can launch its images, as
that account itself sees them (SPEC §7e)."""

from __future__ import annotations

import datetime as dt
import json

import click

from ..core import neutral
from ..core.desired import ManagedImage
from ..core.errors import EXIT_CANNOT, EXIT_ERROR, EXIT_OK, InputError, UsageError
from ..core.kms import GrantShape
from ..core.manifest import Manifest
from ..core.model import AMI_ID_RE, plural
from ..core.planning import PlanOptions
from ..core.verify import (
    Status,
    Target,
    Verdict,
    account_problem,
    declares,
    owner_names,
    targets,
    template_problem,
)
from ..shell.consumer import check_consumers, key_grants
from ..shell.gather import read_image_keys, select_managed
from ..shell.inputs import load_manifest
from ..shell.reader import Reader
from ..shell.session import Connection
from .options import (
    OWNER_OPTION,
    Ctx,
    _refuse_unnamed_regions,
    _refuse_unused_options,
    common_options,
)
from .output import _print_error, _stdout


@click.command()
@click.argument("manifest", metavar="MANIFEST")
@click.option("--consumer-role", "template", required=True, metavar="TEMPLATE",
              help="The read-only role to assume in each consumer account, with {account} "
                   "where its ID goes: arn:aws:iam::{account}:role/ami-share-verify.")
@click.option("--account", "accounts", multiple=True, metavar="ID",
              help="Only this consumer account (repeatable); also how a member of a declared "
                   "organization or OU is checked.")
@click.option("--image", "image_ids", multiple=True, metavar="AMI_ID",
              help="Only this managed image (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format on stdout.")
@OWNER_OPTION
@common_options
def verify(ctx: Ctx, manifest: str, template: str, accounts: tuple[str, ...],
           image_ids: tuple[str, ...], fmt: str, owner: str | None) -> int:
    """Check from each consumer account that it can launch the images declared for it.

    Assumes TEMPLATE's role in every account the manifest declares for launch and asks
    there: is the image visible by ID, does its Allowed AMIs setting allow it, does the KMS
    key let it in (a dry run). Writes nothing. Exit 0: every one can launch; 3: any cannot;
    1: error (a role that cannot be assumed, bad arguments).

    \b
    Example:
      reconcile verify amis.yaml --consumer-role 'arn:aws:iam::{account}:role/ami-share-verify'
    """
    problems = _option_problems(ctx)
    try:
        m: Manifest | None = load_manifest(manifest)
    except InputError as exc:
        m, problems = None, problems + [str(p) for p in exc.problems]
    problems += _argument_problems(m, template, accounts, image_ids)
    if _report(problems) or m is None:
        return EXIT_ERROR
    _refuse_unnamed_regions(ctx, m, owner, releases=False)
    with ctx.connect(m, owner) as conn:
        found, owners, problems = _targets(ctx, m, conn, accounts, image_ids)
        if _report(problems):
            return EXIT_ERROR
        ctx.info(f"Checking {plural(len(found), 'account-image pair')}: "
                 f"{plural(len({t.account for t in found}), 'consumer account')}, "
                 f"{plural(len({t.image for t in found}), 'image')}")
        assert conn.base is not None
        # Auto Scaling launches need a grant the consumer creates itself, which only the
        # grant statements of kms_grants: any allow: then the owners list each key's grants.
        grants = (key_grants(owners, [k for t in found for k in t.keys])
                  if m.settings.kms_grants is GrantShape.ANY else None)
        verdicts, errors = check_consumers(ctx.run_options(), conn.base, template, found,
                                           owners, dt.datetime.now(dt.UTC),
                                           dict(m.settings.api_rates), grants)
    return _emit(ctx, m, template, fmt, verdicts, errors)


# The common options verify refuses (below) are not offered in its help either.
for _param in verify.params:
    if _param.name in ("sandbox", "strict") and isinstance(_param, click.Option):
        _param.hidden = True


def _option_problems(ctx: Ctx) -> list[str]:
    """The common options verify refuses."""
    out = []
    try:
        _refuse_unused_options(ctx, "verify has no warnings to make errors", ("strict",))
    except UsageError as exc:
        out.append(str(exc))
    if ctx.sandbox:
        out.append("--sandbox: verify asks AWS from each consumer account, which the sandbox "
                   "does not emulate; run it against AWS")
    return out


def _argument_problems(m: Manifest | None, template: str, accounts: tuple[str, ...],
                       image_ids: tuple[str, ...]) -> list[str]:
    """Every bad argument, one line each (before any AWS call); what the manifest declares
    is checked when it could be read."""
    out = [p for p in [template_problem(template)] if p]
    for a in accounts:
        if (why := account_problem(a)) is not None:
            out.append(why)
        elif m is not None and not declares(m, a):
            out.append(f"--account {a}: {m.path} declares no launch for it (neither the "
                       "account nor an organization, OU or public)")
    out += [f"--image {i!r} is not an AMI ID (ami- and 8 or 17 hexadecimal digits)"
            for i in image_ids if not AMI_ID_RE.fullmatch(i)]
    return out


def _report(lines: list[str]) -> bool:
    for line in lines:
        _print_error(line)
    return bool(lines)


def _targets(ctx: Ctx, m: Manifest, conn: Connection, accounts: tuple[str, ...],
             image_ids: tuple[str, ...],
             ) -> tuple[list[Target], dict[str, Reader], list[str]]:
    """What to check, each owner's reader, and (when an argument names nothing to check)
    why, one line each."""
    selection, owners = select_managed(m, conn.scopes, PlanOptions(regions=ctx.regions))
    managed = [mi for mi in selection.managed if not image_ids or mi.image.image_id in image_ids]
    chosen = targets(managed, accounts)
    problems = _unmatched(m, selection.managed, chosen, accounts, image_ids)
    if not chosen and not problems:
        problems = [f"nothing to verify: no managed image of {m.path} is declared for an "
                    "account (for an organization or OU, name its member accounts with "
                    "--account)"]
    if problems:
        return [], owners, problems
    keys = read_image_keys(owners, {t.image for t in chosen})
    return targets(managed, accounts, keys), owners, []


def _unmatched(m: Manifest, managed: tuple[ManagedImage, ...], chosen: list[Target],
               accounts: tuple[str, ...], image_ids: tuple[str, ...]) -> list[str]:
    known = {mi.image.image_id for mi in managed}
    out = [f"--image {i}: not a managed image of {m.path} in the Regions read" for i in
           image_ids if i not in known]
    checked = {t.account for t in chosen}
    out += [f"--account {a}: no managed image of {m.path} in the Regions read is declared "
            "for it" for a in accounts if a not in checked]
    return out


def _emit(ctx: Ctx, m: Manifest, template: str, fmt: str, verdicts: list[Verdict],
          errors: list[str]) -> int:
    names = owner_names(m)
    unknown = [v.line(names) for v in verdicts if v.status is Status.UNKNOWN]
    with _stdout("the verdicts") as out:
        if fmt == "json":
            doc = {"format_version": 1, "manifest": m.path, "consumer_role": template,
                   "can_launch": not errors and all(v.status is Status.CAN for v in verdicts),
                   "results": [v.to_dict(names) for v in verdicts], "errors": errors + unknown}
            click.echo(neutral.json_text(json.dumps(doc, indent=2, ensure_ascii=False)),
                       file=out)
        else:
            for v in verdicts:
                if v.status is not Status.UNKNOWN:
                    click.echo(neutral.text(v.line(names)), file=out)
    _report(errors + unknown)
    cannot = sum(v.status is Status.CANNOT for v in verdicts)
    ctx.info(f"{cannot} of {plural(len(verdicts), 'account-image pair')}: cannot launch"
             + (f"; {plural(len(errors) + len(unknown), 'error')}" if errors or unknown else ""))
    if errors or unknown:
        return EXIT_ERROR
    return EXIT_CANNOT if cannot else EXIT_OK
