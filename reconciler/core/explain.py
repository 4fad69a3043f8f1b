"""``reconcile explain``: can this principal launch that image, and why (not)? Pure.

The evidence comes from what the owner account can see: the image's launch permissions
and state, each snapshot's KMS key (manager, state, policy) and copy permissions, and what
the manifest declares. Membership of an organization or OU cannot be seen from the owner
account, so a share through one is stated as a condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import kms
from .desired import ManagedImage
from .kms import KeyInfo, KeyManager
from .model import Image, Principal, PrincipalKind, Snapshot
from .planner import CurrentState


@dataclass(frozen=True)
class ImageFacts:
    """What the owner account shows about one image (read by the shell)."""

    image: Image
    launch: frozenset[Principal]
    snapshots: Mapping[str, Snapshot] = field(default_factory=dict)
    copy: Mapping[str, frozenset[Principal]] = field(default_factory=dict)
    keys: Mapping[str, KeyInfo] = field(default_factory=dict)  # by snapshot's key ID
    managed: ManagedImage | None = None  # what the manifest declares (None: no rule / none)
    manifest_given: bool = False
    matched_by: tuple[str, ...] = ()  # the rules matching it (a disabled one is not managed)

    @classmethod
    def of(cls, img: Image, state: CurrentState, managed: ManagedImage | None = None,
           manifest_given: bool = False, matched_by: tuple[str, ...] = ()) -> ImageFacts:
        """The facts about ``img`` in what was gathered."""
        mine = [sid for sid in img.snapshot_ids if (img.region, sid) in state.snapshots]
        return cls(img, state.launch.get(img.key, frozenset()),
                   {sid: state.snapshots[(img.region, sid)] for sid in mine},
                   {sid: state.copy[(img.region, sid)] for sid in mine
                    if (img.region, sid) in state.copy},
                   {kid: info for (r, kid), info in state.keys.items() if r == img.region},
                   managed, manifest_given, matched_by)


@dataclass(frozen=True)
class Verdict:
    image: Image
    can_launch: bool
    summary: str  # the verdict line's reason
    evidence: tuple[str, ...]

    def line(self, who: str) -> str:
        what = "can launch" if self.can_launch else "cannot launch"
        return f"{who} {what} {self.image.image_id} ({self.image.name}): {self.summary}"

    def to_dict(self, who: str) -> dict[str, Any]:
        return {"image": self.image.image_id, "region": self.image.region,
                "name": self.image.name, "can_launch": self.can_launch,
                "verdict": self.line(who), "evidence": list(self.evidence)}


def _launch(p: Principal, facts: ImageFacts) -> tuple[bool, str, list[str]]:
    """(allowed, condition or "", evidence) for the launch permission itself."""
    perms = facts.launch
    if p.is_public:
        return (Principal.public() in perms, "", ["launch permission: public"
                if Principal.public() in perms else "launch permission: the image is not public"])
    if p.kind is PrincipalKind.ACCOUNT and p.value == facts.image.owner_id:
        return True, "", [f"launch permission: {p.label} owns the image"]
    if p in perms:
        return True, "", [f"launch permission: granted to {p.label} directly"]
    if Principal.public() in perms:
        return True, "", ["launch permission: the image is public"]
    grantee = kms.grantee_of(p)
    via = []
    for q in sorted(perms):
        if not q.is_org_or_ou:
            continue
        g = kms.grantee_of(q)
        if grantee is not None and g is not None and g.kind is not kms.GranteeKind.ACCOUNT:
            inside = (grantee.org_path.startswith(g.org_path.rstrip("*")) if
                      grantee.kind is not kms.GranteeKind.ACCOUNT else False)
            if inside:
                return True, "", [f"launch permission: through {q.label}, which contains it"]
        via.append(q.label)
    if via and p.kind is PrincipalKind.ACCOUNT:
        cond = f"if account {p.value} is in {' or '.join(via)}"
        return True, cond, [f"launch permission: shared with {', '.join(via)}; membership "
                            "cannot be seen from the owner account"]
    return False, "", [f"launch permission: not granted to {p.label}"
                       + (f" (shared with {', '.join(sorted(q.label for q in perms))})"
                          if perms else " (the image is shared with nobody)")]


def _key_allows(p: Principal, info: KeyInfo) -> tuple[bool, str, str]:
    """Whether the key policy lets ``p`` use the key, on what condition ("" for none), and
    what says so."""
    try:
        policy = kms.parse_policy(info.policy or "{}")
        owned = kms.complete_grantees(policy)  # one of its two statements is not enough
    except kms.PolicyError as exc:
        return False, "", f"its policy cannot be read ({exc})"
    g = kms.grantee_of(p)
    if g is None:
        return False, "", "a KMS key cannot be used by everyone: public launches fail"
    asg = ("Auto Scaling / Spot launches work too (grant statements without condition)"
           if kms.GrantShape.ANY in kms.grant_shapes(policy)
           else "Auto Scaling / Spot launches need settings.kms_grants: any")
    if g in owned:
        return True, "", f"the tool's statements allow it; {asg}"
    orgs = sorted(o for o in owned if o.kind is not kms.GranteeKind.ACCOUNT)
    if g.kind is kms.GranteeKind.OU:
        covering = [o for o in orgs if g.value.startswith(o.org_path.rstrip("*"))]
        if covering:
            return True, "", f"the tool's statements allow {covering[0].value}; {asg}"
    if kms.foreign_allows_grantee(policy, g):
        sids = [str(st.get("Sid") or "?") for st in policy.get("Statement", [])
                if st.get("Effect") == "Allow" and st.get("Sid") not in kms.OWNED_SIDS]
        return True, "", f"a statement the tool does not own allows it ({', '.join(sids)})"
    if g.kind is kms.GranteeKind.ACCOUNT and orgs:
        names = " or ".join(o.value for o in orgs)
        return True, f"if account {p.value} is in {names}", (
            f"the tool's statements allow {names}; membership cannot be seen from the owner "
            f"account; {asg}")
    return False, "", f"the key policy does not allow {p.label}"


@dataclass
class _Findings:
    """What the checks of one image found so far."""

    ok: bool
    condition: str  # the condition the verdict depends on ("" for none)
    evidence: list[str]
    reasons: list[str] = field(default_factory=list)

    def refuse(self, reason: str, evidence: str | None = None) -> None:
        self.ok = False
        self.reasons.append(reason)
        if evidence is not None:
            self.evidence.append(evidence)


def explain(p: Principal, facts: ImageFacts) -> Verdict:
    """Whether ``p`` can launch the image, from its launch permission, state, snapshots and
    their keys, with the manifest's view of it when one was given."""
    img = facts.image
    ok, condition, evidence = _launch(p, facts)
    found = _Findings(ok, condition, evidence)
    if not ok:
        found.reasons.append(f"no launch permission for {p.label}")
    if img.state != "available":
        found.refuse(f"the image is {img.state}",
                     f"image state: {img.state} (a disabled AMI has no launch permissions)")
    elif img.deprecation_time:
        found.evidence.append(f"image state: deprecation time {img.deprecation_time} (a "
                              "deprecated image can still be launched)")
    for sid in img.snapshot_ids:
        _check_snapshot(p, facts, sid, found)
    if facts.manifest_given:
        found.evidence.append(_manifest_evidence(p, facts))
    summary = (found.condition or "every check passed") if found.ok else "; ".join(found.reasons)
    return Verdict(img, found.ok, summary, tuple(found.evidence))


def _check_snapshot(p: Principal, facts: ImageFacts, sid: str, found: _Findings) -> None:
    """The copy permission of one backing snapshot and, when encrypted, its key."""
    snap = facts.snapshots.get(sid)
    if snap is None:
        found.evidence.append(f"snapshot {sid}: not readable by the owner")
        if facts.image.encrypted:
            found.refuse(f"snapshot {sid} cannot be read, so its key cannot be checked")
        return
    copy = facts.copy.get(sid, frozenset())
    found.evidence.append(f"snapshot {sid}: copy (createVolumePermission) "
                          + ("granted" if p in copy or Principal.public() in copy
                             else "not granted"))
    if not snap.encrypted:
        return
    info = facts.keys.get(snap.kms_key_id)
    if info is None:
        found.refuse(f"the KMS key of {sid} is unknown")
        return
    _check_key(p, sid, info, found)


def _check_key(p: Principal, sid: str, info: KeyInfo, found: _Findings) -> None:
    """Whether the key of snapshot ``sid`` lets ``p`` use it."""
    label = info.alias or info.arn or info.key_id
    if info.manager == KeyManager.AWS:
        found.refuse(f"{sid} is encrypted with the AWS managed key aws/ebs",
                     f"key {label}: AWS managed (aws/ebs): it cannot be shared")
        return
    if info.error:
        found.refuse(f"key {label} cannot be read", f"key {label}: {info.error}")
        return
    if info.state and info.state != "Enabled":
        found.refuse(f"key {label} is {info.state}")
    allowed, key_condition, why = _key_allows(p, info)
    found.evidence.append(f"key {label} (customer managed, {info.state or 'state unknown'}): "
                          f"{why}")
    if not allowed:
        found.refuse(f"key policy of {label} does not allow {p.label}")
    elif key_condition and not found.condition:
        found.condition = key_condition
    try:
        denies = kms.consumer_denies(kms.parse_policy(info.policy or "{}"), [p.value])
    except kms.PolicyError:
        denies = []
    for deny_sid, actions in denies:
        found.evidence.append(f"key {label}: Deny statement {deny_sid} may refuse "
                              f"{', '.join(actions)} (its conditions are not evaluated)")


def _manifest_evidence(p: Principal, facts: ImageFacts) -> str:
    m = facts.managed
    rules = m.launch.get(p) if m is not None else None
    if rules:
        return (f"manifest: declared by rule {', '.join(rules)}"
                + ("" if p in facts.launch else " (the next apply adds it)"))
    if m is not None:
        return ("manifest: not declared for this image"
                + (" (the next apply removes it)" if p in facts.launch else ""))
    if facts.matched_by:
        return (f"manifest: rule {', '.join(facts.matched_by)} matches it, but a "
                f"{facts.image.state} image is not managed")
    return "manifest: no rule manages this image"


def resolve_principal(text: str, names: Sequence[tuple[str, Principal]]) -> Principal | None:
    for name, p in names:
        if name == text:
            return p
    return Principal.parse_literal(text)
