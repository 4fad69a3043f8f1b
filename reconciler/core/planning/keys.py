"""Key access: the tool's four statements in each customer managed key's policy (README,
"Encrypted AMIs and KMS"), from the images the plan leaves behind.

:func:`key_phase` is a pure function of the checked images and the state. It returns a
:class:`KeyPhase`: the statement operations, the policies before and after, and what the
keys tell the permission diffs (images whose key cannot hold their consumers are left
alone; in ``kms: check`` mode, a consumer without key access is not shared with).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .. import kms
from ..findings import Code
from ..kms import Grantee, KeyInfo
from ..manifest import KmsMode, Manifest
from ..model import (
    Action,
    Finding,
    Image,
    Operation,
    OpKind,
    Principal,
    PrincipalKind,
    RegionKey,
)
from .checks import ImageView, finding, key_problem, label
from .state import CurrentState, KeyUse

_GRANTEE_WORD = {kms.GranteeKind.ACCOUNT: "account", kms.GranteeKind.ORG: "organization",
                 kms.GranteeKind.OU: "OU"}
Policies = Mapping[str, tuple[dict[str, Any], dict[str, Any]]]  # key ARN -> (before, after)


@dataclass(frozen=True)
class KeyView:
    """One key and what the images it backs ask of it."""

    info: KeyInfo
    needed: Mapping[Grantee, frozenset[str]]  # grantee -> the rules declaring it
    held: frozenset[Grantee]  # still holding a permission through it after apply
    principals: Mapping[Grantee, Principal]  # how each grantee is written as a principal
    images: tuple[ImageView, ...]  # the managed images it backs
    # held through released images, or withheld by lifecycle conditions: they leave the
    # key's statements even without pruning (unless something else still holds them)
    released: frozenset[Grantee]


@dataclass(frozen=True)
class KeyResult:
    """The statement operations of one key, or (check mode) the access that is missing."""

    ops: tuple[Operation, ...] = ()
    findings: tuple[Finding, ...] = ()
    usable: bool = True  # False: the key cannot hold its principals; share nothing through it
    unchanged: int = 0
    missing: frozenset[Grantee] = frozenset()  # check mode: access that is not there
    policy: tuple[dict[str, Any], dict[str, Any]] | None = None  # (before, after) if written


@dataclass(frozen=True)
class KeyPhase:
    """The key statements the plan writes, and what they tell the permission diffs."""

    ops: tuple[Operation, ...] = ()
    findings: tuple[Finding, ...] = ()
    unchanged: int = 0
    policies: Policies = field(default_factory=dict)
    # (region, image or snapshot ID) -> the ARNs of the keys its consumers need
    resource_keys: Mapping[RegionKey, tuple[str, ...]] = field(default_factory=dict)
    unusable: frozenset[RegionKey] = frozenset()  # images whose key cannot hold them
    missing: Mapping[RegionKey, frozenset[Grantee]] = field(default_factory=dict)

    def applied_to(self, v: ImageView) -> ImageView:
        """``v`` as the keys leave it: left alone when a key of it cannot hold its
        consumers; without the principals a key does not let in (check mode)."""
        key = RegionKey(*v.image.key)
        missing = self.missing.get(key, frozenset())
        if key not in self.unusable and not missing:
            return v
        return replace(
            v, blocked=v.blocked or key in self.unusable,
            cannot_add=v.cannot_add | {p for p in v.m.launch if kms.grantee_of(p) in missing},
            copy_cannot_add=v.copy_cannot_add | {p for p in v.m.copy
                                                 if kms.grantee_of(p) in missing})

    @property
    def losing_grantees(self) -> frozenset[str]:
        """The keys some principal leaves (whose key uses decide whether it may)."""
        return frozenset(op.resource for op in self.ops
                         if op.kind is OpKind.KMS and op.action is Action.REMOVE)


def key_phase(manifest: Manifest, identity_partition: str, views: Sequence[ImageView],
              state: CurrentState, releasing: Sequence[Image] = ()) -> KeyPhase:
    """Each key's statements, from the images it backs and the released ones: those whose
    shares this plan revokes (``releasing``) and those that keep them (``on_release:
    keep``, or a build still launched), whose consumers still hold access."""
    keys = _key_views(views, state, manifest.settings.prune, releasing)
    resource_keys: dict[RegionKey, tuple[str, ...]] = dict(_released_backing(state, releasing))
    ops: list[Operation] = []
    findings: list[Finding] = []
    policies: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    unchanged = 0
    unusable: set[RegionKey] = set()
    missing: dict[RegionKey, frozenset[Grantee]] = {}
    for arn, kv in sorted(keys.items()):
        findings += _deny_findings(kv)
        result = key_ops(manifest, kv, identity_partition, state.key_uses.get(arn, ()))
        ops += result.ops
        findings += result.findings
        unchanged += result.unchanged
        if result.policy is not None:
            policies[arn] = result.policy
        for v in kv.images:
            key = RegionKey(*v.image.key)
            if not result.usable:
                unusable.add(key)  # its consumers could not use the key: share nothing new
            if result.missing:
                missing[key] = missing.get(key, frozenset()) | result.missing
            resource_keys[key] = tuple(sorted({*resource_keys.get(key, ()), arn}))
            for sid in v.image.snapshot_ids:
                resource_keys[RegionKey(v.image.region, sid)] = resource_keys[key]
    return KeyPhase(tuple(ops), tuple(findings), unchanged, policies, resource_keys,
                    frozenset(unusable), missing)


def after_apply(desired: Mapping[Principal, Any], current: frozenset[Principal], blocked: bool,
                prune: bool, cannot_add: frozenset[Principal],
                revoke: Mapping[Principal, str],
                keep: frozenset[Principal] = frozenset()) -> set[Principal]:
    """Who will hold the permission once the plan is applied (``revoke``: withheld by a
    rule's lifecycle conditions, removed even without pruning; ``keep``: removals that wait
    while the build is still launched)."""
    if blocked:
        return set(current)
    kept = {p for p in current if p in desired or p in keep or not (prune or p in revoke)}
    return kept | {p for p in desired if p not in cannot_add}


class _Builder:
    """A :class:`KeyView` while the images are walked (local to :func:`_key_views`)."""

    def __init__(self, info: KeyInfo) -> None:
        self.info = info
        self.needed: dict[Grantee, set[str]] = {}
        self.held: set[Grantee] = set()
        self.principals: dict[Grantee, Principal] = {}
        self.images: list[ImageView] = []
        self.released: set[Grantee] = set()

    def view(self) -> KeyView:
        return KeyView(self.info, {g: frozenset(r) for g, r in self.needed.items()},
                       frozenset(self.held), dict(self.principals), tuple(self.images),
                       frozenset(self.released))

    def add_image(self, v: ImageView, state: CurrentState, prune: bool) -> None:
        m = v.m
        self.images.append(v)
        if not v.blocked:
            for declared, cannot in ((m.launch, v.cannot_add), (m.copy, v.copy_cannot_add)):
                for p, rules in declared.items():
                    g = kms.grantee_of(p)
                    if g is not None and p not in cannot:
                        self.needed.setdefault(g, set()).update(rules)
                        self.principals.setdefault(g, p)
        holders = after_apply(m.launch, v.current, v.blocked, prune, v.cannot_add,
                              m.withheld_launch, v.keep | v.used)
        if m.manages_copy:
            for sid in m.image.snapshot_ids:
                holders |= after_apply(m.copy, state.copy.get(RegionKey(m.image.region, sid),
                                                              frozenset()),
                                       v.blocked, prune, v.copy_cannot_add, m.withheld_copy,
                                       v.keep_copy | v.used_copy)
        self.released |= {g for p in (*m.withheld_launch, *m.withheld_copy)
                          if (g := kms.grantee_of(p)) is not None}
        for p in holders:
            g = kms.grantee_of(p)
            if g is not None:
                self.held.add(g)
                self.principals.setdefault(g, p)
        # A key policy does not record an organization's management account: take the
        # full ARN from a launch permission being removed in the same plan when there is one.
        for p in v.current:
            g = kms.grantee_of(p)
            if g is not None:
                self.principals.setdefault(g, p)

    def add_released(self, img: Image, state: CurrentState, kept: bool = False) -> None:
        """A released image's launch permissions and tool-managed copy permissions are
        revoked in this plan: their consumers leave the key's statements unless something
        else still holds them (the key uses). ``kept``: its shares stay (on_release: keep,
        or its release waits while it is launched): its consumers still hold access."""
        revoked = {*state.launch.get(RegionKey(*img.key), frozenset()),
                   *(p for s in img.snapshot_ids
                     for p in state.copy.get(RegionKey(img.region, s), ()))}
        for p in revoked:
            if (g := kms.grantee_of(p)) is not None:
                self.principals.setdefault(g, p)
                (self.held if kept else self.released).add(g)


def _key_views(views: Sequence[ImageView], state: CurrentState, prune: bool,
               releasing: Sequence[Image]) -> dict[str, KeyView]:
    keys: dict[str, _Builder] = {}
    for v in views:
        for info in v.keys:
            keys.setdefault(info.arn, _Builder(info)).add_image(v, state, prune)
    for img, infos in _released_keys(state, releasing):
        for info in infos:
            keys.setdefault(info.arn, _Builder(info)).add_released(img, state)
    kept = [img for img in state.released if img not in releasing]
    for img, infos in _released_keys(state, kept):
        for info in infos:
            keys.setdefault(info.arn, _Builder(info)).add_released(img, state, kept=True)
    return {arn: b.view() for arn, b in keys.items()}


def _released_keys(state: CurrentState,
                   releasing: Sequence[Image]) -> list[tuple[Image, list[KeyInfo]]]:
    """Each releasing image with the keys of its encrypted snapshots the tool can edit (an
    AWS managed key, another account's or an unreadable one holds no statement of its)."""
    out = []
    for img in releasing:
        infos: dict[str, KeyInfo] = {}
        for sid in img.snapshot_ids:
            snap = state.snapshots.get(RegionKey(img.region, sid))
            info = (state.keys.get(RegionKey(img.region, snap.kms_key_id))
                    if snap and snap.encrypted else None)
            if info is not None and key_problem(info, img.owner_id, img) is None:
                infos.setdefault(info.arn, info)
        out.append((img, list(infos.values())))
    return out


def _released_backing(state: CurrentState,
                      releasing: Sequence[Image]) -> dict[RegionKey, tuple[str, ...]]:
    """The releasing images' and snapshots' keys, so that a failed revocation keeps the key
    access it relies on."""
    backing: dict[RegionKey, tuple[str, ...]] = {}
    for img, infos in _released_keys(state, releasing):
        if infos:
            arns = tuple(sorted({info.arn for info in infos}))
            backing[RegionKey(*img.key)] = arns
            backing.update({RegionKey(img.region, sid): arns for sid in img.snapshot_ids})
    return backing


def _finding(code: Code, info: KeyInfo, message: str) -> Finding:
    return Finding.of(code, info.region, info.arn, message)


def _still_used(removes: set[Grantee], uses: Sequence[KeyUse]) -> dict[Grantee, list[str]]:
    """Grantees about to be removed that a permission the plan leaves alone still needs."""
    out: dict[Grantee, list[str]] = {}
    for use in uses:
        what = "launch on" if use.kind is OpKind.LAUNCH else "copy (create volume) on"
        for p in sorted(use.principals):
            g = kms.grantee_of(p)
            if g is not None and g in removes:
                out.setdefault(g, []).append(f"{what} {use.resource}")
    return out


def _wanted(kv: KeyView, view: kms.KeyPolicyView,
            shape: kms.GrantShape) -> tuple[set[Grantee], list[Finding]]:
    """The grantees the key's statements must name: declared ones, except those someone
    else's statement already serves (an account by name, an organization or OU by an
    organization condition)."""
    info = kv.info
    wanted: set[Grantee] = set()
    findings = []
    for g in sorted(kv.needed):
        if view.access(g).served(shape, foreign_only=True):
            findings.append(_finding(Code.KMS_FOREIGN_STATEMENT, info,
                                     f"{_GRANTEE_WORD[g.kind]} {g.value} already has access to "
                                     f"{info.label} through a statement the tool does not own; "
                                     "left alone"))
            continue
        wanted.add(g)
    return wanted, findings


def _kept_in_use(kv: KeyView, removes: set[Grantee], uses: Sequence[KeyUse],
                 partition: str) -> tuple[set[Grantee], list[Finding]]:
    """``removes`` without every grantee a permission the plan leaves alone still needs."""
    info = kv.info
    findings = []
    kept = set(removes)
    declared = _still_used(removes, [u for u in uses if u.managed])
    kept -= set(declared)
    for g, where in sorted(_still_used(removes - set(declared),
                                       [u for u in uses if not u.managed]).items()):
        kept.discard(g)
        p = kms.principal_of(g, partition, kv.principals)
        one = len(where) == 1
        findings.append(_finding(
            Code.KMS_PRINCIPAL_STILL_USED, info,
            f"{_GRANTEE_WORD[g.kind]} {p.label} keeps its access to {info.label}: "
            f"{', '.join(where)} still grant{'s' if one else ''} it and the manifest does not "
            f"manage {'that' if one else 'those'}; remove {'it' if one else 'them'} (or manage "
            "the image) and the next plan revokes the key access"))
    return kept, findings


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


def key_ops(manifest: Manifest, kv: KeyView, partition: str,
            uses: Sequence[KeyUse] = ()) -> KeyResult:
    """Operations for one key (key-policy mode) or findings about it (check mode)."""
    info = kv.info
    shape = manifest.settings.kms_grants
    policy = info.document()
    view = info.evaluation  # the reading explain shares: read once for every grantee
    use, grant = kms.statement_grantees(policy)  # the policy's statements walked once
    owned = use | grant
    # a grantee in only one of its two statements cannot launch: it is written again
    complete = use & grant
    wanted, findings = _wanted(kv, view, shape)
    adds = wanted - complete
    # A release revokes whatever the settings say about pruning, and its key access with it.
    removes = (owned if manifest.settings.prune else owned & kv.released) - wanted - kv.held
    removes, in_use = _kept_in_use(kv, removes, uses, partition)
    findings += in_use
    after = (owned | adds) - removes
    # Grant statements in the other shape: rewritten, as an add of the access that changes.
    reshaped = after - adds if after and kms.grant_shapes(policy) - {shape} else set()
    unchanged = len(wanted & complete) - len(reshaped & wanted)
    if not adds and not removes and not reshaped:
        return KeyResult(findings=tuple(findings), unchanged=unchanged)
    if reshaped:
        findings.append(_reshaped(info, shape))
    if manifest.settings.kms is KmsMode.CHECK:
        return _check_mode(kv, view, adds, partition, findings, unchanged)
    final = kms.with_grantees(policy, after, partition, shape)
    widest = kms.with_grantees(policy, owned | adds, partition, shape)
    size = max(kms.policy_bytes(final), kms.policy_bytes(widest))
    if size > kms.MAX_POLICY_BYTES:
        fits = _fitting_accounts(policy, owned | adds, partition, shape)
        return KeyResult(findings=(*findings, _too_large(info, size, fits)), usable=False)
    ops = [Operation(Action.ADD, OpKind.KMS, info.region, info.arn,
                     kms.principal_of(g, partition, kv.principals),
                     tuple(sorted(kv.needed.get(g, ()))))
           for g in adds | reshaped]
    ops += [Operation(Action.REMOVE, OpKind.KMS, info.region, info.arn,
                      kms.principal_of(g, partition, kv.principals), ()) for g in removes]
    return KeyResult(tuple(ops), tuple(findings), unchanged=unchanged, policy=(policy, final))


def _check_mode(kv: KeyView, view: kms.KeyPolicyView, adds: set[Grantee], partition: str,
                findings: list[Finding], unchanged: int) -> KeyResult:
    """``kms: check``: access the statements already give (an OU through its organization's
    entry) is not missing, whatever the tool would write: explain reads it the same way."""
    info = kv.info
    missing = {g for g in adds if not view.access(g).served()}
    for g in sorted(missing):
        p = kms.principal_of(g, partition, kv.principals)
        findings.append(_finding(Code.KMS_ACCESS_MISSING, info,
                                 f"{p.label} is declared on images encrypted with {info.label} "
                                 "but the key policy does not let it use the key, so its "
                                 "launches would fail; it is not shared (kms: check, nothing "
                                 "written)"))
    return KeyResult(findings=tuple(findings), unchanged=unchanged, missing=frozenset(missing))


def _reshaped(info: KeyInfo, shape: kms.GrantShape) -> Finding:
    return _finding(Code.KMS_GRANT_SHAPE, info,
                    f"the grant statements of {info.label} are rewritten for "
                    f"settings.kms_grants: {shape.value} "
                    + ("(kms:CreateGrant without the kms:GrantIsForAWSResource condition, "
                       "so consumers can grant their Auto Scaling role)"
                       if shape is kms.GrantShape.ANY else
                       "(kms:CreateGrant only for grants AWS services make on the "
                       "consumer's behalf)"))


def _too_large(info: KeyInfo, size: int, fits: int) -> Finding:
    return _finding(Code.KEY_POLICY_TOO_LARGE, info,
                    f"key policy of {info.label} would be {size:,} bytes, over the "
                    f"{kms.MAX_POLICY_BYTES:,}-byte KMS limit: with its other statements "
                    f"it holds at most {fits:,} accounts. Share with an Organization or "
                    "OU instead (each counts once, whatever its size), or use separate "
                    "keys; nothing is shared through this key until it fits")


def _deny_findings(kv: KeyView) -> list[Finding]:
    """A foreign Deny that may refuse consumers what a launch needs: a warning on every
    image that shares through the key (the grant alone would not make launches work)."""
    info = kv.info
    denies = info.evaluation.refusals(kv.needed)
    if not denies:
        return []
    said = "; ".join(f"{d.sid} denies {', '.join(d.actions)}"
                     + ("" if not d.definite else " with no condition") for d in denies)
    # as explain says it: only a Deny with conditions (or NotPrincipal) leaves a doubt
    unsure = ("" if all(d.definite for d in denies) else
              ". Their conditions are not evaluated here: check them")
    return [finding(Code.KMS_DENY_STATEMENT, v.image,
                    f"{label(v.image)}: the key policy of {info.label} has Deny statements "
                    f"that may stop its consumers from using the key ({said}); launches fail "
                    f"for every principal they match, whatever the tool grants{unsure}")
            for v in kv.images
            if any(p.kind is not PrincipalKind.PUBLIC for p in (*v.m.launch, *v.m.copy))]
