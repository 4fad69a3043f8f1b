"""``reconcile validate``: manifests checked offline."""

from __future__ import annotations

import click

from ..core import neutral
from ..core.errors import EXIT_ERROR, EXIT_OK, InputError, Problem
from ..core.model import plural
from ..shell.inputs import load_manifest
from .options import Ctx, _refuse_unused_options, common_options
from .output import _stdout


@click.command()
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
