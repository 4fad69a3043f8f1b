"""The planning pipeline, pure: desired state (the selection) against current state (a
:class:`CurrentState` value) -> a sorted, digested :class:`~reconciler.core.plan.Plan`.

Each phase takes values and returns values:

1. :func:`~.checks.check_image` on every managed image, then the public-AMI quota across
   them: findings, images left alone, principals that cannot be added;
2. one rule for errors: an image with an error finding gets no write at all;
3. :func:`~.keys.key_phase`: the tool's statements in each key, from what the images leave
   behind; a key that cannot hold its consumers leaves its images alone too;
4. :func:`~.diffs.permission_diffs`, :func:`~.ownership.ownership` (tags, releases),
   :func:`~.retire.retirement` (retired builds to deprecate) and the removal guard;
5. the plan, with the state it consulted (:mod:`.consulted`).

Steps 1-3 are computed to a fixed point (:func:`settle`): an image found to be left alone
only late (its key cannot hold its principals, or ``--strict`` made a warning on it an
error) is planned again as left alone from the start, so that nothing, not even a key's
statements, is planned for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..desired import Selection
from ..findings import Code
from ..manifest import KmsMode, Manifest
from ..model import Action, Finding, Identity, Operation, RegionKey, Severity, plural
from ..plan import ApplyContext, Display, Planned, make_plan
from . import consulted
from .checks import ImageView, check_image, check_public_quota, errored_images
from .diffs import permission_diffs
from .inuse import InUse, launched_within, waiting, waiting_finding
from .keys import KeyPhase, key_phase
from .ownership import ownership, releasing
from .retire import retirement
from .state import CurrentState, PlanOptions
from .summaries import withheld_condensed
from .usage import AccountUse, withhold
from .usage import consulted as usage_consulted


@dataclass(frozen=True)
class Settled:
    """Steps 1-3 at their fixed point: the images as the checks and keys leave them."""

    views: tuple[ImageView, ...]
    findings: tuple[Finding, ...]  # the selection's, the checks', the keys' (not promoted)
    keys: KeyPhase
    in_use: InUse  # the builds still launched (SPEC §7b): their lifecycle removals wait
    # the errors of the attempt before the last (what left its late images alone); they
    # stay in the plan even when they no longer arise once those images are left alone
    carried: tuple[Finding, ...] = ()
    account_use: AccountUse = AccountUse()  # usage reports: account removals that wait


def _promoted(findings: Iterable[Finding], strict: bool) -> list[Finding]:
    """``--strict``: every warning is an error."""
    if not strict:
        return list(findings)
    return [replace(f, severity=Severity.ERROR) if f.severity is Severity.WARNING else f
            for f in findings]


def _attempt(manifest: Manifest, identity: Identity, selection: Selection,
             state: CurrentState, in_use: InUse, left_alone: frozenset[RegionKey],
             use: AccountUse = AccountUse()) -> tuple[Settled, frozenset[RegionKey]]:
    """Steps 1-3 once, with ``left_alone`` left alone from the start; and the images left
    alone before the keys were planned."""
    findings: list[Finding] = list(selection.findings)
    views: list[ImageView] = []
    for m in selection.managed:
        start = waiting(ImageView(m, state.launch.get(RegionKey(*m.image.key), frozenset()),
                                  blocked=m.image.key in left_alone), state, in_use)
        checked, found = check_image(manifest, start, state)
        checked, used = withhold(checked, use, manifest.settings.prune)
        views.append(checked)
        findings += (*found, *used)
        if (wait := waiting_finding(start, in_use)) is not None:
            findings.append(wait)
    quota_views, quota_findings = check_public_quota(manifest, views, state)
    findings += quota_findings
    errored = errored_images(findings)
    checked_views = tuple(replace(v, blocked=v.blocked or v.image.image_id in errored)
                          for v in quota_views)
    early = frozenset(RegionKey(*v.image.key) for v in checked_views if v.blocked)
    keys = KeyPhase()
    if manifest.settings.kms is not KmsMode.OFF:
        keys = key_phase(manifest, identity.partition, checked_views, state,
                         releasing(manifest, state, in_use, use))
    return Settled(tuple(keys.applied_to(v) for v in checked_views),
                   (*findings, *keys.findings), keys, in_use, account_use=use), early


def settle(manifest: Manifest, identity: Identity, selection: Selection, state: CurrentState,
           options: PlanOptions = PlanOptions()) -> Settled:
    """Steps 1-3 at their fixed point. Each round leaves alone from the start the images the
    previous one left alone only late; the set only grows, so it ends within one round per
    managed image."""
    in_use = launched_within(manifest.settings.keep_launched_within_days,
                             (*(m.image for m in selection.managed), *state.released),
                             options.now)
    use = AccountUse(manifest.settings.usage_reports, state.usage, options.now)
    left_alone: frozenset[RegionKey] = frozenset()
    carried: tuple[Finding, ...] = ()
    while True:
        settled, early = _attempt(manifest, identity, selection, state, in_use, left_alone,
                                  use)
        errors = [f for f in (*_promoted(settled.findings, options.strict), *carried)
                  if f.severity is Severity.ERROR]
        errored = errored_images(errors)
        late = frozenset(RegionKey(*v.image.key) for v in settled.views
                         if v.blocked or v.image.image_id in errored) - early
        if not late:
            return replace(settled, carried=carried)
        left_alone, carried = left_alone | late, tuple(dict.fromkeys(errors))


def keys_losing_grantees(manifest: Manifest, identity: Identity, selection: Selection,
                         state: CurrentState, options: PlanOptions = PlanOptions()
                         ) -> frozenset[str]:
    """The keys the plan would take some principal out of. Gathering reads their key uses
    (what else still grants those principals) before the one planning pass: the uses only
    ever keep a principal in, so they never change which images are left alone."""
    return settle(manifest, identity, selection, state, options).keys.losing_grantees


def compute_plan(manifest: Manifest, identity: Identity, selection: Selection,
                 state: CurrentState, options: PlanOptions = PlanOptions(),
                 settled: Settled | None = None) -> Planned:
    """Pure: desired (selection) vs current (state) -> a sorted, digested plan, with what
    drives its apply and what shows it. ``settled``: :func:`settle` of these same inputs,
    when the caller has it already (gathering does, to ask which keys lose grantees)."""
    if settled is None:
        settled = settle(manifest, identity, selection, state, options)
    views = settled.views
    diffs = permission_diffs(views, state, manifest.settings.prune)
    release = ownership(manifest, views, state, settled.in_use, settled.account_use)
    ops = (*settled.keys.ops, *diffs.ops, *release.ops)
    retired = retirement(views, manifest.settings.deprecate_retired, options.now,
                         manifest.settings.name, selection.matched_by)
    # a normal stage of an image's life is said once (summaries), never as a failure
    findings = _promoted((*withheld_condensed((*settled.findings, *diffs.findings,
                                               *release.findings), ops, selection),
                          *_guard_findings(manifest, ops, options, len(retired.deprecate))),
                         options.strict)
    findings += [f for f in settled.carried if f not in findings]
    state_entries = {**consulted.consulted_state(manifest, views, state, diffs.copy,
                                                 settled.in_use), **retired.consulted,
                      **usage_consulted(settled, state, manifest)}
    plan = make_plan(manifest_sha256=manifest.sha256, caller_account=identity.account,
                     operations=ops, findings=findings, images=len(selection.managed),
                     unchanged=settled.keys.unchanged + diffs.unchanged, state=state_entries,
                     regions=state.regions, ownership=release.ownership,
                     only=options.images or (), deprecate=retired.deprecate,
                     undeprecate=retired.undeprecate)
    return Planned(
        plan,
        ApplyContext(resource_keys=settled.keys.resource_keys,
                     resource_owner=consulted.owners(selection, state),
                     consulted=state_entries,
                     released=frozenset(RegionKey(*img.key) for img in state.released)),
        Display(principal_names={p: n for n, p in reversed(manifest.principals)},
                image_names=consulted.image_names(selection, state),
                resource_images=consulted.resource_names(views, state),
                key_policies=settled.keys.policies,
                withheld=consulted.withheld(selection),
                image_rules=selection.matched_by,
                image_created=consulted.image_dates(selection, state),
                snapshot_images=consulted.snapshot_images(selection, state)))


def _guard_findings(manifest: Manifest, ops: Sequence[Operation], options: PlanOptions,
                    deprecations: int = 0) -> list[Finding]:
    """Apply-time guards, reported at plan time so a pull-request check fails before merge.
    A deprecation counts as a removal: it takes a build away from every consumer's lookup."""
    removals = sum(1 for o in ops if o.action is Action.REMOVE)
    limit = manifest.settings.max_removals
    if removals + deprecations <= limit or options.allow_mass_removal:
        return []
    also = f" and deprecates {plural(deprecations, 'build')}" if deprecations else ""
    return [Finding.of(Code.MAX_REMOVALS, "", "",
                    f"the plan removes {plural(removals, 'permission')}{also}, more than "
                    "settings.max_removals "
                    f"({limit}); after review, acknowledge it with --allow-mass-removal on plan "
                    "and apply, or raise settings.max_removals")]
