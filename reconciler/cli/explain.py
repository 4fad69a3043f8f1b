"""``reconcile explain``: whether a principal can launch an image, and why (not)."""

from __future__ import annotations

import json

import click

from ..core import neutral
from ..core.errors import EXIT_CANNOT, EXIT_OK, UsageError
from ..core.explain import Verdict, resolve_principal, unknown_principal
from ..core.explain import explain as explain_verdict
from ..shell.inputs import load_manifest
from ..shell.reads import read_explain
from .options import OWNER_OPTION, Ctx, _refuse_unnamed_regions, common_options
from .output import _stdout


@click.command()
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
