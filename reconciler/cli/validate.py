"""``reconcile validate``: manifests checked offline."""

from __future__ import annotations

from dataclasses import replace

import click

from .. import __version__
from ..core import neutral
from ..core.errors import EXIT_ERROR, EXIT_OK, InputError, Problem
from ..core.findings import Finding, Severity
from ..core.manifest import Manifest
from ..core.model import plural
from ..core.sarif import findings_log
from ..shell.inputs import load_manifest
from .options import SARIF_OPTION, Ctx, _refuse_unused_options, offline_options
from .output import _stdout, _write_sarif


@click.command()
@click.argument("manifests", metavar="MANIFEST...", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "sarif"]), default="text",
              show_default=True,
              help="Output format on stdout (sarif: a SARIF 2.1.0 log for code scanning).")
@SARIF_OPTION
@offline_options
def validate(ctx: Ctx, manifests: tuple[str, ...], fmt: str, sarif_file: str | None) -> int:
    """Check manifests offline (schema and semantics). No AWS call is made.

    Every error in every file is reported; exit 1 if any file is invalid.

    \b
    Example:
      reconcile validate amis.yaml
      reconcile validate amis.yaml --format sarif > validate.sarif
    """
    _refuse_unused_options(ctx, "validate makes no AWS call",
                           ("regions", "profile", "concurrency", "api_rate_share", "sandbox"))
    problems: list[Problem] = []
    found: list[tuple[Manifest, Finding]] = []
    for manifest in manifests:
        try:
            m = load_manifest(manifest)
        except InputError as exc:
            problems += exc.problems
            continue
        for f in m.hygiene():
            f = replace(f, severity=Severity.ERROR) if ctx.strict else f
            found.append((m, f))
            click.echo(neutral.text(f"{f.severity.value}: {manifest}: [{f.code}] {f.message}"),
                       err=True)
        verdict = neutral.text(f"{manifest}: valid ({plural(len(m.rules), 'rule')}, "
                               f"{plural(len(m.principals), 'named principal')}, "
                               f"Regions {', '.join(m.regions) or 'none'})")
        if fmt == "sarif":
            ctx.info(verdict)  # standard output holds the log alone
        else:
            with _stdout("the result") as out:
                click.echo(verdict, file=out)
    _write_sarif(fmt, sarif_file,
                 lambda: findings_log(found, __version__, problems=sorted(set(problems))))
    if problems:
        raise InputError(problems)
    return EXIT_ERROR if found and ctx.strict else EXIT_OK
