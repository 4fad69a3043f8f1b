"""``reconcile export``: a manifest written from the current shares."""

from __future__ import annotations

import click

from ..core import neutral
from ..core.errors import EXIT_OK
from ..core.exporter import ImageFilter, compute_export, parse_tag_filters
from ..core.manifest import default_name
from ..core.model import plural
from ..shell.inputs import load_names, schema_ref_for
from ..shell.reads import read_export
from .options import Ctx, common_options
from .output import _stdout, _write_file


@click.command()
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
