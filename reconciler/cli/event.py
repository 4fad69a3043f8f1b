"""``reconcile event``: one EventBridge event, and the manifest applied to exactly the
managed images it concerns (SPEC §7c), minutes after the change instead of at the next
scheduled apply."""

from __future__ import annotations

import datetime as dt

import click

from ..core import neutral
from ..core.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from ..core.events import Event, own_write
from ..core.manifest import Manifest
from ..core.model import Action, Arn, OpKind
from ..core.plan import Planned
from ..shell.aws import SESSION_NAME
from ..shell.events import affected
from ..shell.inputs import load_event, load_manifest
from ..shell.session import Connection
from .apply import apply_plan, applying
from .options import Ctx, _refuse_unused_options, common_options
from .output import _stdout
from .plan import _emit_plan, _plan


@click.command()
@click.argument("manifest", metavar="MANIFEST")
@click.argument("event_file", metavar="EVENT.json")
@click.option("--detect-only", is_flag=True,
              help="Write nothing: exit 2 when the event made drift, naming who made it and "
                   "what differs.")
@click.option("--own-actor", "own_actors", multiple=True, metavar="ARN",
              envvar="RECONCILE_OWN_ACTORS",
              help="An identity (userIdentity ARN) whose writes are reconcile's own: its "
                   "events are ignored (repeatable; also RECONCILE_OWN_ACTORS).")
@click.option("--log-file", metavar="FILE", help="Append one JSON line per executed operation.")
@common_options
def event(ctx: Ctx, manifest: str, event_file: str, detect_only: bool,
          own_actors: tuple[str, ...], log_file: str | None) -> int:
    """Apply MANIFEST to the images one EventBridge event concerns (EVENT.json, `-`: stdin).

    \b
    The event is one AWS delivers: "AWS API Call via CloudTrail" for ModifyImageAttribute,
    ResetImageAttribute, ModifySnapshotAttribute, ResetSnapshotAttribute, PutKeyPolicy,
    CreateTags or DeleteTags, or "EC2 AMI State Change" (available: a new build is shared
    at once). Anything else, or an event about nothing the manifest manages, exits 0 with
    one line saying why it was ignored.

    \b
    Examples:
      reconcile event amis.yaml event.json
      reconcile event amis.yaml - --detect-only < event.json
    """
    _refuse_unused_options(ctx, "the event names its Region", ["regions"])
    m = load_manifest(manifest)
    ev = load_event(event_file)
    if ev.ignored:
        return _ignored(ev, ev.ignored)
    roles = [r for r in (m.settings.role_arn, *(o.role_arn for o in m.owners)) if r]
    if why := own_write(ev, own_actors, roles, SESSION_NAME):
        return _ignored(ev, f"it is reconcile's own write ({why})")
    owners = sorted({Arn.parse(r).account for r in roles})
    if owners and ev.account not in owners:  # known without a request
        return _ignored(ev, f"it happened in account {ev.account}, which is not an owner "
                            f"account of the manifest ({', '.join(owners)})")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    # only the event's owner account is reached (with owners:, its role alone is assumed)
    with applying() as run, ctx.connect(m, ev.account if m.owners else None,
                                        write=not detect_only) as conn:
        found = affected(ev, m, conn.scopes, now)
        if found.ignored:
            return _ignored(ev, found.ignored)
        ctx.regions, ctx.images = (ev.region,), found.images
        ctx.info(neutral.text(f"{ev.describe()}: {'checking' if detect_only else 'applying'} "
                              f"{m.path} against {', '.join(found.images)}"))
        if detect_only:
            return _detect(ctx, conn, m, ev)
        run.code = apply_plan(ctx, conn, m, run, saved=None, auto_approve=True,
                              allow_mass_removal=False, log_file=log_file, owner=None,
                              regions_given=False)
    return run.code


def _ignored(ev: Event, why: str) -> int:
    """The one line an ignored event gets (exit 0)."""
    with _stdout("the result") as out:
        click.echo(neutral.text(f"ignored: {ev.describe()}: {why}"), file=out)
    return EXIT_OK


def _detect(ctx: Ctx, conn: Connection, m: Manifest, ev: Event) -> int:
    """``--detect-only``: the plan, nothing written; exit 2 when there is drift."""
    plan = _plan(ctx, m, conn, False)
    # drift is a permission that differs from the manifest; a retired build the next apply
    # deprecates (settings.deprecate_retired) is the manifest's own doing, not drift
    drifted = bool(plan.operations)
    if drifted:
        with _stdout("the drift") as out:
            click.echo(neutral.text(f"drift: {ev.describe()}: {_what(plan)}"), file=out)
    _emit_plan(ctx, plan, m, "text", step_summary=False)
    if plan.errors:
        return EXIT_ERROR
    return EXIT_CHANGES if drifted else EXIT_OK


_KIND_WORDS = {OpKind.LAUNCH: "launch", OpKind.COPY: "copy", OpKind.KMS: "key access"}


def _what(plan: Planned) -> str:
    """What differs from the manifest, in a few words per resource: the operations that
    put it back, as missing or not declared."""
    by_resource: dict[str, list[str]] = {}
    for op in plan.operations:
        state = "missing" if op.action is Action.ADD else "not declared"
        by_resource.setdefault(op.resource, []).append(
            f"{_KIND_WORDS[op.kind]} {op.principal.label} {state}")
    return "; ".join(f"{resource}: {', '.join(found)}"
                     for resource, found in by_resource.items())


# The event names its Region: --region is refused, and not offered.
for _param in event.params:
    if isinstance(_param, click.Option) and _param.name == "regions":
        _param.hidden = True
