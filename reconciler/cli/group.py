"""The ``reconcile`` command group and its commands."""

from __future__ import annotations

import click

from .. import __version__
from .apply import apply
from .event import event
from .explain import explain
from .export import export
from .plan import plan
from .usage_reports import usage_reports
from .validate import validate
from .verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="reconcile")
def cli() -> None:
    """Declarative AMI sharing: plan and apply launch permissions from a YAML manifest.

    \b
    Typical flow:
      reconcile validate amis.yaml
      reconcile plan amis.yaml --out plan.json
      reconcile apply amis.yaml --plan plan.json
    """


for command in (validate, plan, apply, event, export, explain, verify, usage_reports):
    cli.add_command(command)
