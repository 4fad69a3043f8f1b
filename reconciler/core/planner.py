"""Planning, pure: desired state (the selection) against current state (a
:class:`CurrentState` value) → a sorted, digested :class:`~reconciler.core.plan.Plan`.

Nothing here talks to AWS: :mod:`reconciler.shell.gather` reads the current state; a test checks
that importing this module loads neither boto3, botocore nor click.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import kms
from .desired import ManagedImage, Selection, active_regions
from .differ import diff_permissions
from .errors import ACCESS_DENIED_CODES
from .kms import Grantee, KeyInfo, KeyManager
from .manifest import KmsMode, Manifest
from .model import (
    OWNERSHIP_TAG,
    Action,
    Arn,
    BlockState,
    Finding,
    Identity,
    Image,
    Operation,
    OpKind,
    Principal,
    PrincipalKind,
    Severity,
    Snapshot,
    plural,
)
from .plan import Ownership, Plan, make_plan

BLOCK_NEW_SHARING = "block-new-sharing"
BLOCK_ALL_SHARING = "block-all-sharing"
LAUNCH, COPY, KMS = OpKind.LAUNCH.value, OpKind.COPY.value, OpKind.KMS.value
SNAPSHOT = "snapshot"  # digest entry: which key encrypts a managed image's snapshot
TAG = "ownership-tag"  # digest entry: whether a managed image carries the ownership tag
RegionKey = tuple[str, str]  # (region, resource id)


@dataclass(frozen=True)
class PlanOptions:
    regions: tuple[str, ...] | None = None  # --region: restrict the run to these
    strict: bool = False
    allow_mass_removal: bool = False  # --allow-mass-removal: acknowledge the removal guard
    now: str = ""  # ISO 8601: when lifecycle ages are taken ("": the clock, when gathering)


@dataclass(frozen=True)
class CurrentState:
    """What the reader found for the managed images."""

    launch: Mapping[RegionKey, frozenset[Principal]]
    # (owner account, Region) -> (Image Block Public Access state or None, why unknown)
    public_access: Mapping[tuple[str, str], BlockState] = field(default_factory=dict)
    snapshots: Mapping[RegionKey, Snapshot] = field(default_factory=dict)
    copy: Mapping[RegionKey, frozenset[Principal]] = field(default_factory=dict)
    keys: Mapping[RegionKey, KeyInfo] = field(default_factory=dict)  # by snapshot's key id
    # key ARN -> permissions held through it outside what the plan writes (read only for
    # keys the plan would take principals out of; see :func:`read_key_uses`)
    key_uses: Mapping[str, tuple[KeyUse, ...]] = field(default_factory=dict)
    regions: tuple[str, ...] = ()  # the Regions this run covered
    # (owner account, Region) -> Snapshot Block Public Access, read where a public copy
    # permission would be added; and how many of the owner's images there are public now
    snapshot_public_access: Mapping[tuple[str, str], BlockState] = field(default_factory=dict)
    public_images: Mapping[tuple[str, str], int] = field(default_factory=dict)
    # images carrying this manifest's ownership tag that no rule matches any more; their
    # launch permissions are in ``launch``, their snapshots in ``snapshots`` and the copy
    # permissions of those the tool tagged in ``copy``
    released: tuple[Image, ...] = ()
    # Region -> the images the listing found there (all of them, managed or not)
    images: Mapping[str, tuple[Image, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class KeyUse:
    """An image's launch or a snapshot's copy permissions that rely on a key and that the
    plan does not write: an unmanaged image, or a snapshot whose copy the rules leave alone."""

    kind: OpKind  # LAUNCH (an image) or COPY (a snapshot)
    region: str
    resource: str
    principals: frozenset[Principal]


def run_regions(manifest: Manifest, options: PlanOptions) -> tuple[str, ...]:
    """Regions this run lists: those of the rules, restricted by ``--region``."""
    return tuple(sorted({r for rule in manifest.rules
                         for r in active_regions(rule, options.regions)}))


def regions_needing_public_check(selection: Selection, launch: Mapping[RegionKey, frozenset[Principal]],
                                 snapshots: Mapping[RegionKey, Snapshot]) -> list[str]:
    """Regions where a public share would be *added* (only then is the block state read)."""
    public = Principal.public()
    return sorted({m.image.region for m in selection.managed
                   if public in m.launch and public not in launch.get(m.image.key, frozenset())
                   and not _encrypted(m, snapshots)})


def regions_needing_snapshot_public_check(managed: Sequence[ManagedImage],
                                          copy: Mapping[RegionKey, frozenset[Principal]],
                                          snapshots: Mapping[RegionKey, Snapshot]) -> list[str]:
    """Regions where a public copy permission would be *added* to unencrypted snapshots."""
    public = Principal.public()
    return sorted({m.image.region for m in managed
                   if m.manages_copy and public in m.copy and not _encrypted(m, snapshots)
                   and not m.image.product_codes
                   and any(public not in copy.get((m.image.region, s), frozenset())
                           for s in m.image.snapshot_ids)})


def _encrypted(m: ManagedImage, snapshots: Mapping[RegionKey, Snapshot]) -> bool:
    img = m.image
    return img.encrypted or any(snapshots[(img.region, s)].encrypted for s in img.snapshot_ids
                                if (img.region, s) in snapshots)


# --------------------------------------------------------------------------- pure part


def tagged(resource: Image | Snapshot, name: str) -> bool:
    return (OWNERSHIP_TAG, name) in resource.tags



@dataclass
class _ImageView:
    """Per-image working values between the passes of :func:`compute_plan`."""

    m: ManagedImage
    current: frozenset[Principal]
    keys: list[KeyInfo]
    blocked: bool = False
    cannot_add: set[Principal] = field(default_factory=set)
    copy_cannot_add: set[Principal] = field(default_factory=set)


def _f(sev: Severity, code: str, region: str, resource: str, msg: str) -> Finding:
    return Finding(sev, code, region, resource, msg)


def _label(img: Image) -> str:
    return f"{img.image_id} ({img.name})"


def _check_quota(manifest: Manifest, v: _ImageView, state: CurrentState) -> Iterator[Finding]:
    """EC2 quota "AMI sharing" (share_quota): entities after the plan, public not counted."""
    m, img = v.m, v.m.image
    after = set(m.launch) if manifest.settings.prune else set(m.launch) | v.current
    entities = len(after - {Principal.public()})
    if entities > manifest.settings.share_quota:
        v.blocked = True
        kept = "" if manifest.settings.prune else " (with the permissions prune: false keeps)"
        yield _f(Severity.ERROR, "share-quota", img.region, img.image_id,
                 f"{_label(img)} would be shared with {entities} entities by rules "
                 f"{', '.join(m.rules)}{kept}; share_quota is {manifest.settings.share_quota}")


def _check_snapshots(manifest: Manifest, v: _ImageView, state: CurrentState) -> Iterator[Finding]:
    img = v.m.image
    for sid in img.snapshot_ids:
        if (img.region, sid) not in state.snapshots:
            v.blocked = True
            yield _f(Severity.ERROR, "snapshot-not-found", img.region, img.image_id,
                     f"{_label(img)}: backing snapshot {sid} was not found or is not readable "
                     "by the caller (ec2:DescribeSnapshots)")


def _check_keys(manifest: Manifest, v: _ImageView, state: CurrentState) -> Iterator[Finding]:
    if manifest.settings.kms is not KmsMode.OFF and _encrypted(v.m, state.snapshots):
        found: list[Finding] = []
        _key_checks(v, state, found)
        yield from found


def _block_problem(block: BlockState, what: str, region: str, fix: str) -> str:
    if block.managed_by == "declarative-policy":
        return (f"{what} Block Public Access is {block.state} in {region}, set by an AWS "
                "Organizations declarative policy: it cannot be changed from this account "
                "(ask the organization's administrators)")
    return f"{what} Block Public Access is {block.state} in {region} ({fix})"


def _check_public_launch(manifest: Manifest, v: _ImageView, state: CurrentState) -> Iterator[Finding]:
    """EC2 User Guide, "Make your AMI public" and "Understand block public access for AMIs"."""
    m, img, public = v.m, v.m.image, Principal.public()
    if public not in m.launch or public in v.current:
        return
    rules = ", ".join(m.launch[public])
    if _encrypted(m, state.snapshots):
        v.cannot_add.add(public)
        yield _f(Severity.ERROR, "encrypted-public", img.region, img.image_id,
                 f"{_label(img)} is backed by encrypted snapshots and can never be made "
                 f"public; remove `public` from rules {rules}")
        return
    if img.product_codes:
        v.cannot_add.add(public)
        yield _f(Severity.ERROR, "public-product-code", img.region, img.image_id,
                 f"{_label(img)} has AWS Marketplace product codes "
                 f"({', '.join(img.product_codes)}); images with product codes cannot be made "
                 f"public. Remove `public` from rules {rules}, or share with accounts")
        return
    block = state.public_access.get((img.owner_id, img.region), BlockState(None, why="not read"))
    if block.state == BLOCK_NEW_SHARING:
        v.cannot_add.add(public)
        yield _f(Severity.ERROR, "public-access-blocked", img.region, img.image_id,
                 f"{_label(img)} cannot be made public: " + _block_problem(
                     block, "Image", img.region, "EC2 console > AMIs > Block public access, or "
                     f"aws ec2 disable-image-block-public-access --region {img.region}"))
    elif block.state is None:
        yield _f(Severity.WARNING, "public-access-unknown", img.region, img.image_id,
                 f"could not read Image Block Public Access in {img.region} ({block.why}); if "
                 f"it blocks new public sharing, making {img.image_id} public will fail at apply")


def _check_public_copy(manifest: Manifest, v: _ImageView, state: CurrentState) -> Iterator[Finding]:
    """EC2 API ModifySnapshotAttribute: encrypted snapshots and snapshots with product codes
    cannot be made public; Snapshot Block Public Access may forbid it."""
    m, img, public = v.m, v.m.image, Principal.public()
    if public not in m.copy:
        return
    rules = ", ".join(m.copy[public])
    if _encrypted(m, state.snapshots):
        v.copy_cannot_add.add(public)
        yield _f(Severity.ERROR, "encrypted-public", img.region, img.image_id,
                 f"{_label(img)}: encrypted snapshots cannot be shared publicly; remove "
                 f"`public` from `copy` in rules {rules}")
        return
    if not m.manages_copy or all(public in state.copy.get((img.region, s), frozenset())
                                 for s in img.snapshot_ids):
        return
    if img.product_codes:
        v.copy_cannot_add.add(public)
        yield _f(Severity.ERROR, "public-product-code", img.region, img.image_id,
                 f"{_label(img)}: snapshots with AWS Marketplace product codes cannot be made "
                 f"public; remove `public` from `copy` in rules {rules}")
        return
    block = state.snapshot_public_access.get((img.owner_id, img.region),
                                             BlockState(None, why="not read"))
    if block.state in (BLOCK_NEW_SHARING, BLOCK_ALL_SHARING):
        v.copy_cannot_add.add(public)
        yield _f(Severity.ERROR, "snapshot-public-access-blocked", img.region, img.image_id,
                 f"{_label(img)}: its snapshots cannot be made public: " + _block_problem(
                     block, "Snapshot", img.region, "aws ec2 disable-snapshot-block-public-access "
                     f"--region {img.region}"))
    elif block.state is None:
        yield _f(Severity.WARNING, "snapshot-public-access-unknown", img.region, img.image_id,
                 f"could not read Snapshot Block Public Access in {img.region} ({block.why}); "
                 f"if it blocks public sharing, the public copy permission on the snapshots of "
                 f"{img.image_id} will fail at apply")


def _check_copy_marketplace(manifest: Manifest, v: _ImageView,
                            state: CurrentState) -> Iterator[Finding]:
    """EC2 User Guide, "Copy an AMI": an AMI derived from AWS Marketplace cannot be copied to
    another account, so a copy grant does not let the consumer copy it."""
    m, img = v.m, v.m.image
    grantees = [p for p in m.copy if not p.is_public]
    if img.product_codes and grantees:
        yield _f(Severity.WARNING, "copy-marketplace", img.region, img.image_id,
                 f"{_label(img)} has AWS Marketplace product codes "
                 f"({', '.join(img.product_codes)}): consumers cannot copy it to their account, "
                 "so the copy permission of rules "
                 f"{', '.join(sorted({r for p in grantees for r in m.copy[p]}))} only lets them "
                 "create volumes from its snapshots")


def _check_undeclared_public(manifest: Manifest, v: _ImageView,
                             state: CurrentState) -> Iterator[Finding]:
    img, public = v.m.image, Principal.public()
    if public in v.current and public not in v.m.launch and not manifest.settings.prune:
        yield _f(Severity.WARNING, "undeclared-public", img.region, img.image_id,
                 f"{_label(img)} is public but no rule declares `public`; it stays public "
                 "because settings.prune is false")


def _check_other_manifest(manifest: Manifest, v: _ImageView,
                          state: CurrentState) -> Iterator[Finding]:
    """An image another manifest's ownership tag claims: two manifests managing one image
    undo each other's changes on every run (with --strict, the image is left alone)."""
    name, img = manifest.settings.name, v.m.image
    other = img.tag_map.get(OWNERSHIP_TAG)
    if manifest.settings.ownership == "tag" and other is not None and other != name:
        yield _f(Severity.WARNING, "other-manifest", img.region, img.image_id,
                 f"{_label(img)} carries {OWNERSHIP_TAG}={other}: a manifest named {other!r} "
                 f"manages it too, or this manifest was renamed (then set settings.name: "
                 f"{other} to keep its images). Apply retags it {name!r}; two manifests that "
                 "manage one image undo each other's changes on every run")


# The checks run on every managed image, in this order: each yields findings and may mark
# the image blocked or a principal impossible to add. A new check is one function here.
IMAGE_CHECKS: tuple[Callable[[Manifest, _ImageView, CurrentState], Iterator[Finding]], ...] = (
    _check_quota, _check_snapshots, _check_keys, _check_public_launch, _check_public_copy,
    _check_copy_marketplace, _check_undeclared_public, _check_other_manifest)


def _image_checks(manifest: Manifest, v: _ImageView, state: CurrentState,
                  findings: list[Finding]) -> None:
    for check in IMAGE_CHECKS:
        findings.extend(check(manifest, v, state))


def _public_quota(manifest: Manifest, views: Sequence[_ImageView], state: CurrentState,
                  findings: list[Finding]) -> None:
    """EC2 quota "Public AMIs" (5 per Region by default, public_quota here): the images the
    plan would make public, counted with those that already are and stay public."""
    public = Principal.public()
    gaining: dict[tuple[str, str], list[_ImageView]] = defaultdict(list)
    losing: dict[tuple[str, str], int] = defaultdict(int)
    for v in views:
        place = (v.m.image.owner_id, v.m.image.region)
        if public in v.m.launch and public not in v.current and public not in v.cannot_add \
                and not v.blocked:
            gaining[place].append(v)
        elif public in v.current and public not in v.m.launch and manifest.settings.prune \
                and not v.blocked:
            losing[place] += 1
    limit = manifest.settings.public_quota
    for place, new in sorted(gaining.items()):
        after = state.public_images.get(place, 0) - losing[place] + len(new)
        if after <= limit:
            continue
        for v in new:
            v.cannot_add.add(public)
            img = v.m.image
            findings.append(_f(
                Severity.ERROR, "public-quota", img.region, img.image_id,
                f"{_label(img)} cannot be made public: {img.region} would have {after} public "
                f"AMIs, over the quota of {limit} (EC2 quota \"Public AMIs\"); make others "
                "private, or raise the quota (Service Quotas, L-0E3CBAB9) and "
                "settings.public_quota"))


def _key_checks(v: _ImageView, state: CurrentState, findings: list[Finding]) -> None:
    img = v.m.image
    caller = img.owner_id  # only the image's owner account can edit its key policies
    label = f"{img.image_id} ({img.name})"
    for sid in img.snapshot_ids:
        snap = state.snapshots.get((img.region, sid))
        if snap is None or not snap.encrypted:
            continue
        info = state.keys.get((img.region, snap.kms_key_id))
        if info is None:
            findings.append(_f(Severity.ERROR, "key-unknown", img.region, img.image_id,
                               f"{label}: snapshot {sid} is encrypted but its KMS key is not "
                               "reported (ec2:DescribeSnapshots returned no KmsKeyId)"))
            v.blocked = True
            continue
        problem = _key_problem(info, caller, img)
        if problem:
            code, why = problem
            findings.append(_f(Severity.ERROR, code, img.region, img.image_id,
                               f"{label}: snapshot {sid} uses KMS key {info.label}: {why}"))
            v.blocked = True
        elif info not in v.keys:
            v.keys.append(info)


def _key_problem(info: KeyInfo, caller: str, img: Image) -> tuple[str, str] | None:
    if info.error:
        code = "kms-access-denied" if info.error_code in ACCESS_DENIED_CODES else "key-unreadable"
        return code, info.error
    if info.manager == KeyManager.AWS:
        return ("aws-managed-key",
                "it is the AWS managed key (aws/ebs), whose policy cannot be changed, so the "
                "image cannot be shared. Copy it re-encrypted with a customer managed key and "
                "share the copy: aws ec2 copy-image --source-image-id "
                f"{img.image_id} --source-region {img.region} --region {img.region} "
                f"--name {shlex.quote(img.name + '-cmk')} --encrypted --kms-key-id <customer-key-arn>")
    if info.account and info.account != caller:
        return ("foreign-key",
                f"the key belongs to account {info.account}, not the caller {caller}; its policy "
                "must be managed there (grant the consumers kms:Decrypt, kms:DescribeKey, "
                "kms:ReEncrypt*, kms:GenerateDataKey*, kms:CreateGrant)")
    if info.state and info.state != "Enabled":
        return "key-unusable", f"the key is {info.state}; launches from this image would fail"
    if info.policy is None:
        return "key-unreadable", "its key policy could not be read (kms:GetKeyPolicy)"
    try:
        kms.parse_policy(info.policy)
        kms.owned_grantees(kms.parse_policy(info.policy))
    except kms.PolicyError as exc:
        return "key-policy-unparseable", f"{exc}; refusing to edit it"
    return None


def _after_apply(desired: Mapping[Principal, Any], current: frozenset[Principal], blocked: bool,
                 prune: bool, cannot_add: set[Principal],
                 revoke: Mapping[Principal, str]) -> set[Principal]:
    """Who will hold the permission once the plan is applied (``revoke``: withheld by a
    rule's lifecycle conditions, removed even without pruning)."""
    if blocked:
        return set(current)
    kept = {p for p in current if p in desired or not (prune or p in revoke)}
    return kept | {p for p in desired if p not in cannot_add}


@dataclass
class _KeyView:
    info: KeyInfo
    needed: dict[Grantee, set[str]] = field(default_factory=dict)  # grantee -> rules
    held: set[Grantee] = field(default_factory=set)  # still holding a permission after apply
    principals: dict[Grantee, Principal] = field(default_factory=dict)
    images: list[_ImageView] = field(default_factory=list)
    # held through released images, or withheld by lifecycle conditions: they leave the
    # key's statements even without pruning (unless something else still holds them)
    released: set[Grantee] = field(default_factory=set)


def _key_views(views: list[_ImageView], state: CurrentState, prune: bool) -> dict[str, _KeyView]:
    keys: dict[str, _KeyView] = {}
    for v in views:
        m = v.m
        for info in v.keys:
            kv = keys.setdefault(info.arn, _KeyView(info))
            kv.images.append(v)
            if not v.blocked:
                for declared, cannot in ((m.launch, v.cannot_add), (m.copy, v.copy_cannot_add)):
                    for p, rules in declared.items():
                        g = kms.grantee_of(p)
                        if g is not None and p not in cannot:
                            kv.needed.setdefault(g, set()).update(rules)
                            kv.principals.setdefault(g, p)
            holders = _after_apply(m.launch, v.current, v.blocked, prune, v.cannot_add,
                                   m.withheld_launch)
            if m.manages_copy:
                for sid in m.image.snapshot_ids:
                    holders |= _after_apply(m.copy, state.copy.get((m.image.region, sid), frozenset()),
                                            v.blocked, prune, v.copy_cannot_add, m.withheld_copy)
            kv.released |= {g for p in (*m.withheld_launch, *m.withheld_copy)
                            if (g := kms.grantee_of(p)) is not None}
            for p in holders:
                g = kms.grantee_of(p)
                if g is not None:
                    kv.held.add(g)
                    kv.principals.setdefault(g, p)
            # A key policy does not record an organization's management account: take the
            # full ARN from a launch permission being removed in the same plan when there is one.
            for p in v.current:
                g = kms.grantee_of(p)
                if g is not None:
                    kv.principals.setdefault(g, p)
    return keys


def _released_keys(keys: dict[str, _KeyView], state: CurrentState) -> dict[RegionKey, tuple[str, ...]]:
    """The keys of the released images join ``keys``: the images' launch permissions are
    revoked in this plan, so their consumers leave the keys' statements unless something
    else still holds them (the key uses). Returns the released images' and snapshots' keys,
    so that a failed revocation keeps the key access it relies on."""
    backing: dict[RegionKey, tuple[str, ...]] = {}
    for img in state.released:
        arns: set[str] = set()
        for sid in img.snapshot_ids:
            snap = state.snapshots.get((img.region, sid))
            info = state.keys.get((img.region, snap.kms_key_id)) if snap and snap.encrypted else None
            # a key the tool cannot edit (AWS managed, another account's, unreadable) holds
            # none of its statements to clean
            if info is None or _key_problem(info, img.owner_id, img) is not None:
                continue
            arns.add(info.arn)
            kv = keys.setdefault(info.arn, _KeyView(info))
            # the launch permissions and the tool-managed copy permissions it loses
            revoked = {*state.launch.get(img.key, frozenset()),
                       *(p for s in img.snapshot_ids for p in state.copy.get((img.region, s), ()))}
            for p in revoked:
                if (g := kms.grantee_of(p)) is not None:
                    kv.principals.setdefault(g, p)
                    kv.released.add(g)
        if arns:
            backing[img.key] = tuple(sorted(arns))
            backing.update({(img.region, sid): backing[img.key] for sid in img.snapshot_ids})
    return backing


@dataclass(frozen=True)
class _KeyResult:
    ops: list[Operation]
    usable: bool = True  # False: the key cannot be changed, share nothing new through it
    unchanged: int = 0
    missing: frozenset[Grantee] = frozenset()  # check mode: access that is not there


_GRANTEE_WORD = {kms.GranteeKind.ACCOUNT: "account", kms.GranteeKind.ORG: "organization",
                 kms.GranteeKind.OU: "OU"}


def _still_used(removes: set[kms.Grantee], uses: Sequence[KeyUse]) -> dict[kms.Grantee, list[str]]:
    """Grantees about to be removed that a permission the plan leaves alone still needs."""
    out: dict[kms.Grantee, list[str]] = {}
    for use in uses:
        what = "launch on" if use.kind is OpKind.LAUNCH else "copy (create volume) on"
        for p in sorted(use.principals):
            g = kms.grantee_of(p)
            if g is not None and g in removes:
                out.setdefault(g, []).append(f"{what} {use.resource}")
    return out


def _wanted(kv: _KeyView, policy: Mapping[str, Any], shape: kms.GrantShape,
            findings: list[Finding]) -> set[Grantee]:
    """The grantees the key's statements must name: declared ones, except those someone
    else's statement already serves (an account by name, an organization or OU by an
    organization condition)."""
    info = kv.info
    wanted: set[Grantee] = set()
    view = kms.evaluate(policy)  # the reading explain shares: read once for every grantee
    for g in sorted(kv.needed):
        if view.access(g).served(shape, foreign_only=True):
            findings.append(_f(Severity.INFO, "kms-foreign-statement", info.region, info.arn,
                               f"{_GRANTEE_WORD[g.kind]} {g.value} already has access to "
                               f"{info.label} through a statement the tool does not own; "
                               "left alone"))
            continue
        wanted.add(g)
    return wanted


def _keep_used(kv: _KeyView, removes: set[Grantee], uses: Sequence[KeyUse], partition: str,
               findings: list[Finding]) -> None:
    """Take out of ``removes`` every grantee a permission the plan leaves alone still needs."""
    info = kv.info
    for g, where in sorted(_still_used(removes, uses).items()):
        removes.discard(g)
        p = kms.principal_of(g, partition, kv.principals)
        one = len(where) == 1
        findings.append(_f(Severity.INFO, "kms-principal-still-used", info.region, info.arn,
                           f"{_GRANTEE_WORD[g.kind]} {p.label} keeps its access to {info.label}: "
                           f"{', '.join(where)} still grant{'s' if one else ''} it and the "
                           f"manifest does not manage {'that' if one else 'those'}; remove "
                           f"{'it' if one else 'them'} (or manage the image) and the next plan "
                           "revokes the key access"))


def _fitting_accounts(policy: Mapping[str, Any], grantees: set[Grantee], partition: str,
                      shape: kms.GrantShape) -> int:
    """How many of the accounts in ``grantees`` fit in the policy with everything else."""
    accounts = sorted(g for g in grantees if g.kind is kms.GranteeKind.ACCOUNT)
    others = grantees - set(accounts)
    low, high = 0, len(accounts)  # invariant: ``low`` accounts fit
    while low < high:
        mid = (low + high + 1) // 2
        size = kms.policy_bytes(kms.with_grantees(policy, others | set(accounts[:mid]),
                                                  partition, shape))
        low, high = (mid, high) if size <= kms.MAX_POLICY_BYTES else (low, mid - 1)
    return low


def _key_ops(manifest: Manifest, kv: _KeyView, partition: str, findings: list[Finding],
             policies: dict[str, tuple[dict[str, Any], dict[str, Any]]],
             uses: Sequence[KeyUse] = ()) -> _KeyResult:
    """Operations for one key (key-policy mode) or findings about it (check mode)."""
    info = kv.info
    shape = manifest.settings.kms_grants
    policy = kms.parse_policy(info.policy or "{}")
    use, grant = kms.statement_grantees(policy)  # the policy's statements walked once
    owned = use | grant
    # a grantee in only one of its two statements cannot launch: it is written again
    complete = use & grant
    wanted = _wanted(kv, policy, shape, findings)
    adds = wanted - complete
    # A release revokes whatever the settings say about pruning, and its key access with it.
    removes = (owned if manifest.settings.prune else owned & kv.released) - wanted - kv.held
    _keep_used(kv, removes, uses, partition, findings)
    after = (owned | adds) - removes
    # Grant statements in the other shape: rewritten, as an add of the access that changes.
    reshaped = after - adds if after and kms.grant_shapes(policy) - {shape} else set()
    unchanged = len(wanted & complete) - len(reshaped & wanted)
    if not adds and not removes and not reshaped:
        return _KeyResult([], unchanged=unchanged)
    if reshaped:
        findings.append(_reshaped(info, shape))
    if manifest.settings.kms is KmsMode.CHECK:
        # access the statements already give (an OU through its organization's entry) is
        # not missing, whatever the tool would write: explain reads it the same way
        view = kms.evaluate(policy)
        adds = {g for g in adds if not view.access(g).served()}
        for g in sorted(adds):
            p = kms.principal_of(g, partition, kv.principals)
            findings.append(_f(Severity.ERROR, "kms-access-missing", info.region, info.arn,
                               f"{p.label} is declared on images encrypted with {info.label} but "
                               "the key policy does not let it use the key, so its launches would "
                               "fail; it is not shared (kms: check, nothing written)"))
        return _KeyResult([], unchanged=unchanged, missing=frozenset(adds))
    final = kms.with_grantees(policy, after, partition, shape)
    widest = kms.with_grantees(policy, owned | adds, partition, shape)
    size = max(kms.policy_bytes(final), kms.policy_bytes(widest))
    if size > kms.MAX_POLICY_BYTES:
        fits = _fitting_accounts(policy, owned | adds, partition, shape)
        findings.append(_too_large(info, size, fits))
        return _KeyResult([], usable=False)
    policies[info.arn] = (policy, final)
    ops = [Operation(Action.ADD, OpKind.KMS, info.region, info.arn,
                     kms.principal_of(g, partition, kv.principals),
                     tuple(sorted(kv.needed.get(g, ()))))
           for g in adds | reshaped]
    ops += [Operation(Action.REMOVE, OpKind.KMS, info.region, info.arn,
                      kms.principal_of(g, partition, kv.principals), ()) for g in removes]
    return _KeyResult(ops, unchanged=unchanged)


def _reshaped(info: KeyInfo, shape: kms.GrantShape) -> Finding:
    return _f(Severity.INFO, "kms-grant-shape", info.region, info.arn,
              f"the grant statements of {info.label} are rewritten for "
              f"settings.kms_grants: {shape.value} "
              + ("(kms:CreateGrant without the kms:GrantIsForAWSResource condition, "
                 "so consumers can grant their Auto Scaling role)"
                 if shape is kms.GrantShape.ANY else
                 "(kms:CreateGrant only for grants AWS services make on the "
                 "consumer's behalf)"))


def _too_large(info: KeyInfo, size: int, fits: int) -> Finding:
    return _f(Severity.ERROR, "key-policy-too-large", info.region, info.arn,
              f"key policy of {info.label} would be {size:,} bytes, over the "
              f"{kms.MAX_POLICY_BYTES:,}-byte KMS limit: with its other statements "
              f"it holds at most {fits:,} accounts. Share with an Organization or "
              "OU instead (each counts once, whatever its size), or use separate "
              "keys; nothing is shared through this key until it fits")


def _deny_checks(kv: _KeyView, findings: list[Finding]) -> None:
    """A foreign Deny that may refuse consumers what a launch needs: a warning on every
    image that shares through the key (the grant alone would not make launches work)."""
    info = kv.info
    denies = kms.evaluate(kms.parse_policy(info.policy or "{}")).refusals(kv.needed)
    if not denies:
        return
    said = "; ".join(f"{d.sid} denies {', '.join(d.actions)}"
                     + ("" if not d.definite else " with no condition") for d in denies)
    # as explain says it: only a Deny with conditions (or NotPrincipal) leaves a doubt
    unsure = ("" if all(d.definite for d in denies) else
              ". Their conditions are not evaluated here: check them")
    for v in kv.images:
        img = v.m.image
        if not any(p.kind is not PrincipalKind.PUBLIC for p in (*v.m.launch, *v.m.copy)):
            continue
        findings.append(_f(Severity.WARNING, "kms-deny-statement", img.region, img.image_id,
                           f"{img.image_id} ({img.name}): the key policy of {info.label} has "
                           f"Deny statements that may stop its consumers from using the key "
                           f"({said}); launches fail for every principal they match, whatever "
                           f"the tool grants{unsure}"))


def policy_digest(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        canonical = text
    return hashlib.sha256(canonical.encode()).hexdigest()


def compute_plan(manifest: Manifest, identity: Identity, selection: Selection,
                 state: CurrentState, options: PlanOptions = PlanOptions(), *,
                 left_alone: frozenset[RegionKey] = frozenset(),
                 carried: tuple[Finding, ...] = ()) -> Plan:
    """Pure: desired (selection) vs current (state) → a sorted, digested plan.

    ``left_alone``: images known to get no write (computed here: an image found to be left
    alone only late — its key cannot hold its principals, or ``--strict`` made a warning on
    it an error — is planned again as left alone from the start, so that nothing, not even
    a key's statements, is planned for it). ``carried``: the errors that left them alone.
    """
    findings: list[Finding] = list(selection.findings)
    views = [_ImageView(m, state.launch.get(m.image.key, frozenset()), [],
                        blocked=m.image.key in left_alone) for m in selection.managed]
    for v in views:
        _image_checks(manifest, v, state, findings)
    _public_quota(manifest, views, state, findings)
    # One rule for error findings: an image with one gets no write at all in this run.
    errored = {f.resource for f in findings if f.severity is Severity.ERROR}
    for v in views:
        v.blocked = v.blocked or v.m.image.image_id in errored
    early = {v.m.image.key for v in views if v.blocked}

    keys = _KeyPhase()
    if manifest.settings.kms is not KmsMode.OFF:
        keys = _key_phase(manifest, identity, views, state, findings)
    diffs = _permission_diffs(views, state, manifest.settings.prune, findings)
    ops = [*keys.ops, *diffs.ops]
    ownership, released_ops = _ownership(manifest, views, state, findings)
    ops += released_ops
    digest_state, resource_images = _consulted(manifest, views, state, diffs)

    findings += _guard_findings(manifest, ops, options)
    if options.strict:
        findings = [_promote(f) for f in findings]
    findings += [f for f in carried if f not in findings]
    errors = tuple(f for f in findings if f.severity is Severity.ERROR)
    late = {v.m.image.key for v in views
            if v.blocked or v.m.image.image_id in {f.resource for f in errors}} - early
    if late:
        return compute_plan(manifest, identity, selection, state, options,
                            left_alone=left_alone | late, carried=errors)
    return make_plan(
        manifest_sha256=manifest.sha256,
        caller_account=identity.account,
        operations=ops,
        findings=findings,
        images=len(selection.managed),
        unchanged=keys.unchanged + diffs.unchanged,
        state=digest_state,
        image_names={**{m.image.image_id: m.image.name for m in selection.managed},
                     **{img.image_id: img.name for img in state.released}},
        resource_images=resource_images,
        key_policies=keys.policies,
        resource_keys=keys.resource_keys,
        resource_owner=_owners(selection, state),
        regions=state.regions,
        ownership=ownership,
        principal_names={p: n for n, p in reversed(manifest.principals)},
        withheld=_withheld(selection),
    )


@dataclass
class _KeyPhase:
    """The key statements the plan writes, and what they tell the permission diffs."""

    ops: list[Operation] = field(default_factory=list)
    unchanged: int = 0
    policies: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)
    resource_keys: dict[RegionKey, tuple[str, ...]] = field(default_factory=dict)


def _key_phase(manifest: Manifest, identity: Identity, views: list[_ImageView],
               state: CurrentState, findings: list[Finding]) -> _KeyPhase:
    """Each key's statements; an image whose consumers cannot use its key is blocked, and a
    principal the key cannot let in is not added to the images it backs."""
    out = _KeyPhase()
    keys = _key_views(views, state, manifest.settings.prune)
    if manifest.settings.on_release != "keep":
        out.resource_keys.update(_released_keys(keys, state))
    for arn, kv in sorted(keys.items()):
        _deny_checks(kv, findings)
        result = _key_ops(manifest, kv, identity.partition, findings, out.policies,
                          state.key_uses.get(arn, ()))
        out.ops += result.ops
        out.unchanged += result.unchanged
        for v in kv.images:
            if not result.usable:
                v.blocked = True  # its consumers could not use the key: share nothing new
            for declared, cannot in ((v.m.launch, v.cannot_add), (v.m.copy, v.copy_cannot_add)):
                cannot.update(p for p in declared if kms.grantee_of(p) in result.missing)
            img_key = v.m.image.key
            out.resource_keys[img_key] = tuple(sorted({*out.resource_keys.get(img_key, ()), arn}))
            for sid in v.m.image.snapshot_ids:
                out.resource_keys[(v.m.image.region, sid)] = out.resource_keys[img_key]
    return out


@dataclass
class _Diffs:
    """The launch and copy permission operations, and the permissions they were diffed from."""

    ops: list[Operation] = field(default_factory=list)
    unchanged: int = 0
    copy: dict[RegionKey, frozenset[Principal]] = field(default_factory=dict)


def _permission_diffs(views: Sequence[_ImageView], state: CurrentState, prune: bool,
                      findings: list[Finding]) -> _Diffs:
    out = _Diffs()
    for v in views:
        img = v.m.image
        if v.blocked:
            continue
        d = diff_permissions(OpKind.LAUNCH, img.region, img.image_id, v.m.launch, v.current,
                             prune=prune, cannot_add=frozenset(v.cannot_add),
                             revoke=frozenset(v.m.withheld_launch))
        out.ops += d.operations
        out.unchanged += d.unchanged
        findings += _removals_kept_through_orgs(v, d.operations, prune)
        for sid in img.snapshot_ids if v.m.manages_copy else ():
            cur = out.copy[(img.region, sid)] = state.copy.get((img.region, sid), frozenset())
            d = diff_permissions(OpKind.COPY, img.region, sid, v.m.copy, cur, prune=prune,
                                 cannot_add=frozenset(v.copy_cannot_add),
                                 revoke=frozenset(v.m.withheld_copy))
            out.ops += d.operations
            out.unchanged += d.unchanged
    return out


def _consulted(manifest: Manifest, views: Sequence[_ImageView], state: CurrentState,
               diffs: _Diffs) -> tuple[dict[tuple[str, str, str], Any], dict[str, str]]:
    """The state of every resource the plan consulted (for the digest a saved plan is checked
    against), and the names resources are shown by."""
    digest_state: dict[tuple[str, str, str], Any] = {}
    resource_images: dict[str, str] = {}
    for v in views:
        img = v.m.image
        digest_state[(LAUNCH, img.region, img.image_id)] = v.current
    for (region, sid), cur in diffs.copy.items():
        digest_state[(COPY, region, sid)] = cur
    for v in views:
        for sid in v.m.image.snapshot_ids if v.m.manages_copy and not v.blocked else ():
            resource_images[sid] = f"snapshot of {v.m.image.image_id}"
    for (region, sid), snap in state.snapshots.items():
        digest_state[(SNAPSHOT, region, sid)] = f"{snap.encrypted}:{snap.kms_key_id}"
    for uses in state.key_uses.values():
        for use in uses:
            digest_state[(use.kind.value, use.region, use.resource)] = use.principals
    for (region, _), info in state.keys.items():
        if info.arn:
            digest_state[(KMS, region, info.arn)] = policy_digest(info.policy)
            if info.alias:
                resource_images[info.arn] = info.alias
    for img in state.released:
        digest_state[(LAUNCH, img.region, img.image_id)] = state.launch.get(img.key, frozenset())
        resource_images.setdefault(img.image_id, "")
        for sid in img.snapshot_ids:
            if (img.region, sid) in state.copy:
                digest_state[(COPY, img.region, sid)] = state.copy[(img.region, sid)]
                resource_images[sid] = f"snapshot of {img.image_id}"
    if manifest.settings.ownership == "tag":
        # the tag value apply writes: a saved plan applied under another name is refused
        digest_state[(TAG, "", "")] = manifest.settings.name
    for v in views:
        digest_state[(TAG, v.m.image.region, v.m.image.image_id)] = tagged(
            v.m.image, manifest.settings.name)
        for sid in v.m.image.snapshot_ids if v.m.manages_copy else ():
            backing = state.snapshots.get((v.m.image.region, sid))
            if backing is not None:
                digest_state[(TAG, v.m.image.region, sid)] = tagged(backing,
                                                                     manifest.settings.name)
    return digest_state, resource_images


def _withheld(selection: Selection) -> dict[tuple[str, str, Principal], str]:
    """Why a rule's lifecycle conditions withhold a principal from an image or snapshot."""
    out: dict[tuple[str, str, Principal], str] = {}
    for m in selection.managed:
        region = m.image.region
        out.update({(region, m.image.image_id, p): why for p, why in m.withheld_launch.items()})
        for sid in m.image.snapshot_ids if m.manages_copy else ():
            out.update({(region, sid, p): why for p, why in m.withheld_copy.items()})
    return out


_ORG_KINDS = frozenset({PrincipalKind.ORGANIZATION, PrincipalKind.OU})


def _removals_kept_through_orgs(v: _ImageView, ops: Sequence[Operation],
                                prune: bool) -> list[Finding]:
    """EC2 accepts removing an account's launch permission from an image that stays shared
    with an organization or OU, but an account inside it can still launch the image."""
    accounts = [o.principal.label for o in ops if o.action is Action.REMOVE
                and o.principal.kind is PrincipalKind.ACCOUNT]
    if not accounts:
        return []
    # _after_apply restricted to organizations and OUs (few), without hashing every account
    orgs = sorted({p.label for p in v.current if p.kind in _ORG_KINDS
                   and (v.blocked or not prune or p in v.m.launch)}
                  | (set() if v.blocked else {p.label for p in v.m.launch
                                              if p.kind in _ORG_KINDS and p not in v.cannot_add}))
    if not orgs:
        return []
    img = v.m.image
    return [_f(Severity.INFO, "removal-kept-through-org", img.region, img.image_id,
               f"{_label(img)}: removing the launch permission of {', '.join(accounts)} "
               f"does not stop {'it' if len(accounts) == 1 else 'them'} launching the image if "
               f"{'it is' if len(accounts) == 1 else 'they are'} in {', '.join(orgs)}, which "
               "the image stays shared with")]


def _ownership(manifest: Manifest, views: Sequence[_ImageView], state: CurrentState,
               findings: list[Finding]) -> tuple[Ownership | None, list[Operation]]:
    """README, "Ownership": which images (and copy-managed snapshots) to tag, which to release, and the
    removals that release them (``rules: []``)."""
    settings = manifest.settings
    if settings.ownership != "tag":
        return None, []
    name = settings.name
    tag = [v.m.image.key for v in views if not v.blocked and not tagged(v.m.image, name)]
    tag_snaps = [(v.m.image.region, sid) for v in views if not v.blocked and v.m.manages_copy
                 for sid in v.m.image.snapshot_ids
                 if (v.m.image.region, sid) in state.snapshots
                 and not tagged(state.snapshots[(v.m.image.region, sid)], name)]
    ops: list[Operation] = []
    # a snapshot tagged when its image's rules had `copy:`, which they have no more: its
    # copy permissions are not the manifest's now (a later release must not revoke them)
    copy_managed = {(v.m.image.region, sid) for v in views if v.m.manages_copy
                    for sid in v.m.image.snapshot_ids}
    untag_snaps = sorted({(v.m.image.region, sid) for v in views
                          if not v.blocked and not v.m.manages_copy
                          for sid in v.m.image.snapshot_ids
                          if (v.m.image.region, sid) not in copy_managed  # another image's rules
                          and (snap := state.snapshots.get((v.m.image.region, sid))) is not None
                          and tagged(snap, name)})
    keep = settings.on_release == "keep"
    for img in state.released:
        ours = [sid for sid in img.snapshot_ids if (img.region, sid) in state.copy]
        untag_snaps += [(img.region, sid) for sid in ours]
        current = state.launch.get(img.key, frozenset())
        if keep:
            findings.append(_f(Severity.INFO, "released-kept", img.region, img.image_id,
                               f"{_label(img)} is no longer matched by any rule; "
                               f"on_release: keep leaves its "
                               f"{plural(len(current), 'launch permission')} and only removes "
                               f"the {OWNERSHIP_TAG} tag"))
            continue
        ops += diff_permissions(OpKind.LAUNCH, img.region, img.image_id, {}, current,
                                prune=True).operations
        for sid in ours:
            ops += diff_permissions(OpKind.COPY, img.region, sid, {},
                                    state.copy[(img.region, sid)], prune=True).operations
    return Ownership(name, tuple(sorted(tag)), tuple(sorted(i.key for i in state.released)),
                     tuple(sorted(tag_snaps)), tuple(sorted(untag_snaps)), keep,
                     {(img.region, sid): img.image_id for img in state.released
                      for sid in img.snapshot_ids}), ops


def _guard_findings(manifest: Manifest, ops: Sequence[Operation],
                    options: PlanOptions) -> list[Finding]:
    """Apply-time guards, reported at plan time so a pull-request check fails before merge."""
    removals = sum(1 for o in ops if o.action is Action.REMOVE)
    limit = manifest.settings.max_removals
    if removals <= limit or options.allow_mass_removal:
        return []
    return [_f(Severity.ERROR, "max-removals", "", "",
               f"the plan removes {removals} permissions, more than settings.max_removals "
               f"({limit}); after review, acknowledge it with --allow-mass-removal on plan and "
               "apply, or raise settings.max_removals")]


def _owners(selection: Selection, state: CurrentState) -> dict[RegionKey, str]:
    """(region, image/snapshot ID or key ARN) -> the owner account that must write it."""
    out: dict[RegionKey, str] = {}
    for img in (*(m.image for m in selection.managed), *state.released):
        out[img.key] = img.owner_id
        for sid in img.snapshot_ids:
            out[(img.region, sid)] = img.owner_id
    for (region, _), info in state.keys.items():
        if info.arn:
            out[(region, info.arn)] = info.account or Arn.parse(info.arn).account
    return out


def _promote(f: Finding) -> Finding:
    return replace(f, severity=Severity.ERROR) if f.severity is Severity.WARNING else f

