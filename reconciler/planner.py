"""Planning: read what is needed, then compute the plan with pure functions.

:func:`build_plan` is the only impure function here; it asks the reader for exactly the
state the pure :func:`compute_plan` needs, in the order the call-count contract allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from .desired import ManagedImage, Selection, active_regions, select
from .differ import diff_permissions
from .manifest import Manifest
from .model import Finding, Identity, OpKind, Operation, Principal, Severity
from .plan import Plan, canonical_principals, make_plan
from .reader import Reader

BLOCK_NEW_SHARING = "block-new-sharing"


@dataclass(frozen=True)
class PlanOptions:
    regions: tuple[str, ...] | None = None  # --region: restrict the run to these
    strict: bool = False


@dataclass(frozen=True)
class CurrentState:
    """What the reader found for the managed images."""

    launch: Mapping[tuple[str, str], frozenset[Principal]]
    # Region -> (Image Block Public Access state or None, why it is unknown)
    public_access: Mapping[str, tuple[str | None, str]]


def run_regions(manifest: Manifest, options: PlanOptions) -> tuple[str, ...]:
    """Regions this run lists: those of the rules, restricted by ``--region``."""
    return tuple(sorted({r for rule in manifest.rules
                         for r in active_regions(rule, options.regions)}))


def _public_wanted(m: ManagedImage, current: frozenset[Principal]) -> bool:
    return Principal.public() in m.launch and Principal.public() not in current


def regions_needing_public_check(selection: Selection,
                                 launch: Mapping[tuple[str, str], frozenset[Principal]]) -> list[str]:
    """Regions where a public share would be *added* (only then is the block state read)."""
    return sorted({m.image.region for m in selection.managed
                   if not m.image.encrypted and _public_wanted(m, launch.get(m.image.key, frozenset()))})


def build_plan(manifest: Manifest, reader: Reader, options: PlanOptions = PlanOptions()) -> Plan:
    identity = reader.identity()
    regions = run_regions(manifest, options)
    images = reader.list_all_images(regions)
    selection = select(manifest, images, options.regions)
    launch = reader.all_launch_permissions([m.image for m in selection.managed])
    check = regions_needing_public_check(selection, launch)
    public_access = dict(zip(check, reader.map(reader.public_access_block, check), strict=True))
    return compute_plan(manifest, identity, selection, CurrentState(launch, public_access), options)


def _image_checks(manifest: Manifest, m: ManagedImage, current: frozenset[Principal],
                  state: CurrentState) -> tuple[list[Finding], set[Principal], bool]:
    """Findings for one image, principals that cannot be added, and whether it is blocked."""
    img = m.image
    findings: list[Finding] = []
    cannot_add: set[Principal] = set()
    entities = sum(1 for p in m.launch if not p.is_public)
    if entities > manifest.settings.share_quota:
        findings.append(Finding(
            Severity.ERROR, "share-quota", img.region, img.image_id,
            f"{img.image_id} ({img.name}) would be shared with {entities} entities by rules "
            f"{', '.join(m.rules)}; share_quota is {manifest.settings.share_quota}"))
        return findings, cannot_add, True
    public = Principal.public()
    if public in m.launch and public not in current:
        if img.encrypted:
            findings.append(Finding(
                Severity.ERROR, "encrypted-public", img.region, img.image_id,
                f"{img.image_id} ({img.name}) is backed by encrypted snapshots and can never be "
                f"made public; remove `public` from rules {', '.join(m.launch[public])}"))
            cannot_add.add(public)
        else:
            block, why = state.public_access.get(img.region, (None, "not read"))
            if block == BLOCK_NEW_SHARING:
                findings.append(Finding(
                    Severity.ERROR, "public-access-blocked", img.region, img.image_id,
                    f"{img.image_id} ({img.name}) cannot be made public: Image Block Public Access "
                    f"is {BLOCK_NEW_SHARING} in {img.region} (EC2 console > AMIs > Block public "
                    f"access, or aws ec2 disable-image-block-public-access --region {img.region})"))
                cannot_add.add(public)
            elif block is None:
                findings.append(Finding(
                    Severity.WARNING, "public-access-unknown", img.region, img.image_id,
                    f"could not read Image Block Public Access in {img.region} ({why}); if it "
                    f"blocks new public sharing, making {img.image_id} public will fail at apply"))
    if public in current and public not in m.launch and not manifest.settings.prune:
        findings.append(Finding(
            Severity.WARNING, "undeclared-public", img.region, img.image_id,
            f"{img.image_id} ({img.name}) is public but no rule declares `public`; it stays "
            f"public because settings.prune is false"))
    return findings, cannot_add, False


def compute_plan(manifest: Manifest, identity: Identity, selection: Selection,
                 state: CurrentState, options: PlanOptions = PlanOptions()) -> Plan:
    """Pure: desired (selection) vs current (state) → a sorted, digested plan."""
    findings: list[Finding] = list(selection.findings)
    ops: list[Operation] = []
    unchanged = 0
    digest_state: dict[tuple[str, str, str], list[list[str]]] = {}
    for m in selection.managed:
        img = m.image
        current = state.launch.get(img.key, frozenset())
        digest_state[(OpKind.LAUNCH.value, img.region, img.image_id)] = canonical_principals(current)
        image_findings, cannot_add, blocked = _image_checks(manifest, m, current, state)
        findings += image_findings
        if blocked:
            continue
        d = diff_permissions(OpKind.LAUNCH, img.region, img.image_id, m.launch, current,
                             prune=manifest.settings.prune, cannot_add=frozenset(cannot_add))
        ops += d.operations
        unchanged += d.unchanged
    if options.strict:
        findings = [_promote(f) for f in findings]
    return make_plan(
        manifest_sha256=manifest.sha256,
        caller_account=identity.account,
        operations=ops,
        findings=findings,
        images=len(selection.managed),
        unchanged=unchanged,
        state=digest_state,
        image_names={m.image.image_id: m.image.name for m in selection.managed},
    )


def _promote(f: Finding) -> Finding:
    return replace(f, severity=Severity.ERROR) if f.severity is Severity.WARNING else f
