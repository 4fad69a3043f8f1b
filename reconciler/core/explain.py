"""``reconcile explain``: can this principal launch that image, and why (not)? Pure.

The evidence comes from what the owner account can see: the image's launch permissions
and state, each snapshot's KMS key (manager, state, policy) and copy permissions, and what
the manifest declares. The key policy is read by :func:`reconciler.core.kms.evaluate`, the
reading the planner uses too, so a verdict never contradicts the plan.

A verdict never claims more than the owner account can know. Membership of an organization
or OU cannot be seen from it, so a share through one is stated as a condition; what only
the consumer account shows (its Allowed AMIs setting, the grants it created, its IAM
policies) is listed under ``not_checked``, each with the AWS CLI commands that check it
there.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import kms
from .consumer_checks import (
    Unchecked,
    allowed_amis,
    autoscaling_grant,
    consumer_key_access,
    with_verify,
)
from .desired import ManagedImage
from .kms import Grantee, GrantShape, KeyAccess, KeyInfo, KeyManager
from .model import (
    OWNERSHIP_TAG,
    Blocking,
    BlockState,
    Image,
    ImageState,
    OwnerRegion,
    Principal,
    PrincipalKind,
    RegionKey,
    Snapshot,
    bad_account_id,
    parse_time,
    principal_hint,
)
from .planning import CurrentState


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
    manifest_path: str = ""  # the MANIFEST given (for the verify command line)
    matched_by: tuple[str, ...] = ()  # the rules matching it (a disabled one is not managed)
    now: str = ""  # ISO 8601: when it was read (a deprecation time is compared with it)
    # the manifest name whose ownership tag it carries although no rule matches it any more
    released_by: str = ""
    keep_on_release: bool = False  # settings.on_release: keep
    # Snapshot Block Public Access in the image's Region, read where a snapshot shows a
    # public copy permission ("": not read)
    snapshot_block: str = ""

    @classmethod
    def of(cls, img: Image, state: CurrentState, managed: ManagedImage | None = None,
           manifest_given: bool = False, matched_by: tuple[str, ...] = (), *, now: str = "",
           released_by: str = "", keep_on_release: bool = False,
           manifest_path: str = "") -> ImageFacts:
        """The facts about ``img`` in what was gathered."""
        mine = [sid for sid in img.snapshot_ids if (img.region, sid) in state.snapshots]
        return cls(img, state.launch.get(img.key, frozenset()),
                   {sid: state.snapshots[RegionKey(img.region, sid)] for sid in mine},
                   {sid: state.copy[RegionKey(img.region, sid)] for sid in mine
                    if (img.region, sid) in state.copy},
                   {kid: info for (r, kid), info in state.keys.items() if r == img.region},
                   managed, manifest_given, manifest_path, matched_by, now, released_by,
                   keep_on_release, str(state.snapshot_public_access.get(
                       OwnerRegion(img.owner_id, img.region), BlockState(None)).state or ""))


@dataclass(frozen=True)
class Verdict:
    image: Image
    can_launch: bool
    summary: str  # the verdict line's reason
    evidence: tuple[str, ...]
    condition: str = ""  # the organization/OU membership it depends on ("" for none)
    not_checked: tuple[Unchecked, ...] = ()

    def line(self, who: str) -> str:
        what = "can launch" if self.can_launch else "cannot launch"
        return f"{who} {what} {self.image.image_id} ({self.image.name}): {self.summary}"

    def text_lines(self, who: str) -> list[str]:
        """The verdict line, then the evidence and what was not checked (indented)."""
        return [self.line(who), *(f"  {e}" for e in self.evidence),
                *(f"  {x}" for u in self.not_checked for x in u.lines())]

    def to_dict(self, who: str) -> dict[str, Any]:
        return {"image": self.image.image_id, "region": self.image.region,
                "name": self.image.name, "can_launch": self.can_launch,
                "verdict": self.line(who), "condition": self.condition,
                "evidence": list(self.evidence),
                "not_checked": [u.to_dict() for u in self.not_checked]}


@dataclass(frozen=True)
class _Membership:
    """A condition a verdict depends on: the account is in one of these organizations or
    OUs (each with the name it is shown by)."""

    options: tuple[tuple[Grantee, str], ...]

    def implied_by(self, other: _Membership) -> bool:
        """Whether being in ``other`` (any of its options) means being in this."""
        return all(any(kms.inside(g, w) for w, _ in self.options) for g, _ in other.options)

    @property
    def text(self) -> str:
        return " or ".join(label for _, label in self.options)


@dataclass
class _Findings:
    """What the checks of one image found so far."""

    ok: bool
    evidence: list[str]
    memberships: list[_Membership] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said on the verdict line when it can
    unchecked: list[Unchecked] = field(default_factory=list)

    def refuse(self, reason: str, evidence: str | None = None) -> None:
        self.ok = False
        self.reasons.append(reason)
        if evidence is not None:
            self.evidence.append(evidence)

    def require(self, membership: _Membership) -> None:
        """One more membership the verdict depends on (one already required that implies
        it makes it moot; one it implies is dropped)."""
        if any(membership.implied_by(m) for m in self.memberships):
            return
        self.memberships = [m for m in self.memberships if not m.implied_by(membership)]
        self.memberships.append(membership)

    def condition(self, p: Principal) -> str:
        if not self.memberships:
            return ""
        return f"if account {p.value} is in " + " and in ".join(m.text for m in self.memberships)


def _is_owner(p: Principal, img: Image) -> bool:
    return p.kind is PrincipalKind.ACCOUNT and p.value == img.owner_id


def explain(p: Principal, facts: ImageFacts) -> Verdict:
    """Whether ``p`` can launch the image, from its launch permission, state, snapshots and
    their keys, with the manifest's view of it when one was given."""
    img = facts.image
    ok, membership, evidence = _launch(p, facts)
    found = _Findings(ok, evidence)
    if membership is not None:
        found.require(membership)
    if not ok:
        found.reasons.append(f"no launch permission for {p.label}")
    if img.state != ImageState.AVAILABLE:
        found.refuse(f"the image is {img.state}",
                     f"image state: {img.state} (a disabled AMI has no launch permissions)")
    elif img.deprecation_time:
        _deprecation(img, facts.now, found)
    if img.last_launched:
        # SPEC §7b: a rotation or release keeps the shares of a build launched this recently
        found.evidence.append(f"last launched: {img.last_launched} (LastLaunchedTime, "
                              "reported up to 24 h late; by any account)")
    for sid in img.snapshot_ids:
        _check_snapshot(p, facts, sid, found)
    if facts.manifest_given:
        found.evidence.append(_manifest_evidence(p, facts, found))
    if not _is_owner(p, img):
        # EC2 User Guide, "Control the discovery and use of AMIs in Amazon EC2 with Allowed
        # AMIs" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-allowed-amis.html):
        # a setting of each consumer account, which never restricts the AMIs it owns.
        found.unchecked.insert(0, allowed_amis(p, img))
    unchecked = tuple(with_verify(u, p, img, facts.manifest_path) for u in found.unchecked)
    return Verdict(img, found.ok, _summary(p, img, found), tuple(found.evidence),
                   found.condition(p), unchecked)


def _summary(p: Principal, img: Image, found: _Findings) -> str:
    if not found.ok:
        return "; ".join(found.reasons)
    first = (found.condition(p) or ("it owns the image" if _is_owner(p, img) else
                                    "every check the owner account can make passed"))
    shorts = list(dict.fromkeys(u.short for u in found.unchecked))
    return "; ".join([first, *found.notes, *(["not checked: " + ", ".join(shorts)]
                                            if shorts else [])])


def _launch(p: Principal, facts: ImageFacts) -> tuple[bool, _Membership | None, list[str]]:
    """(allowed, the membership it depends on, evidence) for the launch permission itself."""
    perms = facts.launch
    if p.is_public:
        return (Principal.public() in perms, None, ["launch permission: public"
                if Principal.public() in perms else "launch permission: the image is not public"])
    if _is_owner(p, facts.image):
        return True, None, [f"launch permission: {p.label} owns the image"]
    if p in perms:
        return True, None, [f"launch permission: granted to {p.label} directly"]
    if Principal.public() in perms:
        return True, None, ["launch permission: the image is public"]
    grantee = kms.grantee_of(p)
    via: list[tuple[Grantee, str]] = []
    for q in sorted(perms):
        g = kms.grantee_of(q) if q.is_org_or_ou else None
        if g is None or grantee is None:
            continue
        if grantee.kind is not kms.GranteeKind.ACCOUNT and kms.inside(grantee, g):
            return True, None, [f"launch permission: through {q.label}, which contains it"]
        via.append((g, q.label))
    if via and p.kind is PrincipalKind.ACCOUNT:
        names = ", ".join(label for _, label in via)
        return True, _Membership(tuple(via)), [f"launch permission: shared with {names}; "
                                               "membership cannot be seen from the owner account"]
    return False, None, [f"launch permission: not granted to {p.label}"
                         + (f" (shared with {', '.join(sorted(q.label for q in perms))})"
                            if perms else " (the image is shared with nobody)")]


def _deprecation(img: Image, now: str, found: _Findings) -> None:
    """EC2 User Guide, "Deprecate an AMI"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ami-deprecate.html): a deprecated
    AMI is left out of the consumers' DescribeImages listings (and the console's) unless
    asked for by ID or with IncludeDeprecated; launch templates and Auto Scaling groups
    naming its ID keep working."""
    when, at = parse_time(img.deprecation_time), parse_time(now) if now else None
    by_id = ("consumers find it by its ID only (DescribeImages leaves a deprecated AMI out of "
             "listings unless asked for by ID or with --include-deprecated); launch templates "
             "and Auto Scaling groups that name its ID keep working")
    if when is not None and at is not None and when > at:
        found.evidence.append(f"image state: will be deprecated at {img.deprecation_time}; "
                              f"from then on {by_id}")
        return
    found.evidence.append(f"image state: deprecated since {img.deprecation_time}: {by_id}")
    found.notes.append(f"deprecated since {img.deprecation_time}, so consumers find it by its "
                       "ID only")


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
                          + _copy_access(p, copy, facts))
    if not snap.encrypted:
        return
    info = facts.keys.get(snap.kms_key_id)
    if info is None:
        found.refuse(f"the KMS key of {sid} is unknown")
        return
    _check_key(p, facts.image, sid, info, found)


def _copy_access(p: Principal, copy: frozenset[Principal], facts: ImageFacts) -> str:
    """Whether ``copy`` lets ``p`` copy. A public one is void under Snapshot Block Public
    Access block-all-sharing (EC2 API Reference, DisableSnapshotBlockPublicAccess: the
    attributes "still indicate that they are publicly shared, even though they are not
    publicly available")."""
    if p in copy:
        return "granted"
    if Principal.public() not in copy:
        return "not granted"
    if facts.snapshot_block == Blocking.BLOCK_ALL_SHARING:
        return ("not in effect: it shows public, but Snapshot Block Public Access is "
                f"block-all-sharing in {facts.image.region}")
    return "granted (public)"


def _check_key(p: Principal, img: Image, sid: str, info: KeyInfo, found: _Findings) -> None:
    """Whether the key of snapshot ``sid`` lets ``p`` use it."""
    label = info.alias or info.arn or info.key_id
    own = _is_owner(p, img) and (info.account or img.owner_id) == p.value
    if info.manager == KeyManager.AWS:
        if own:
            found.evidence.append(f"key {label}: AWS managed (aws/ebs): the owner account "
                                  "uses it; no other account can use it")
        else:
            found.refuse(f"{sid} is encrypted with the AWS managed key aws/ebs",
                         f"key {label}: AWS managed (aws/ebs): it cannot be shared")
        return
    if info.error:
        found.refuse(f"key {label} cannot be read", f"key {label}: {info.error}")
        return
    if info.state and info.state != "Enabled":
        found.refuse(f"key {label} is {info.state}")
    try:
        view = info.evaluation
    except kms.PolicyError as exc:
        found.refuse(f"key policy of {label} cannot be read",
                     f"key {label}: its policy cannot be read ({exc})")
        return
    g = kms.grantee_of(p)
    if g is None:
        found.refuse(f"key policy of {label} does not allow {p.label}",
                     f"key {label}: a KMS key cannot be used by everyone: public launches fail")
        return
    acc = view.access(g)
    head = f"key {label} (customer managed, {info.state or 'state unknown'})"
    if own:
        found.evidence.append(f"{head}: the owner account's own key (its Allow statements "
                              "are not weighed for the owner)")
    else:
        unchecked = _key_allows(p, acc, info, head, found)
        if not any(d.definite for d in acc.refusals):  # else nothing there could help
            found.unchecked += unchecked
    _key_denies(p, acc, label, found)


def _by(allows: Sequence[kms.Allow]) -> tuple[str, str]:
    """Who allows it, and the verb agreeing with that."""
    foreign = list(dict.fromkeys(a.sid for a in allows if not a.owned))
    parts = (["the tool's statements"] if any(a.owned for a in allows) else []) + (
        [f"statement{'s' if len(foreign) > 1 else ''} {', '.join(foreign)}"] if foreign else [])
    plural = len(foreign) > 1 or any(a.owned for a in allows)
    return " and ".join(parts), "allow" if plural else "allows"


def _key_allows(p: Principal, acc: KeyAccess, info: KeyInfo, head: str,
                found: _Findings) -> list[Unchecked]:
    """Whether the key policy lets ``p`` use the key — unconditionally, or (an account) on
    the condition that it is in an organization or OU the key lets in. Returns what the
    consumer account still decides (nothing when the key does not let it in)."""
    label = info.alias or info.arn or info.key_id
    orgs = acc.memberships() if acc.grantee.kind is kms.GranteeKind.ACCOUNT else ()
    if acc.served():
        orgs = ()
        who, verb = _by(acc.serving())
        allowed = f"{who} {verb} it"
    elif orgs:
        membership = _Membership(tuple((w, w.value) for w in orgs))
        found.require(membership)
        who, verb = _by([a for w in orgs for a in acc.serving(member_of=w)])
        allowed = (f"{who} {verb} {membership.text}; membership cannot be seen from the "
                   "owner account")
    else:
        found.refuse(f"key policy of {label} does not allow {p.label}",
                     f"{head}: the key policy does not allow {p.label}")
        return []
    asg, unchecked = _autoscaling(p, acc, orgs, info)
    found.evidence.append(f"{head}: {allowed}; {asg}")
    return [*unchecked, consumer_key_access(p, info, acc)]


def _autoscaling(p: Principal, acc: KeyAccess, orgs: Sequence[Grantee],
                 info: KeyInfo) -> tuple[str, list[Unchecked]]:
    """EC2 Auto Scaling User Guide, "Required AWS KMS key policy for use with encrypted
    volumes" (https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html):
    an Auto Scaling group (or Spot) launches with its service-linked role, which
    needs a grant the consumer account creates itself — allowed only by grant statements
    without the kms:GrantIsForAWSResource condition."""
    memberships: Sequence[Grantee | None] = orgs or [None]
    if not any(acc.served(GrantShape.ANY, member_of=w) for w in memberships):
        return ("Auto Scaling / Spot launches need settings.kms_grants: any (kms:CreateGrant "
                "without the kms:GrantIsForAWSResource condition)"), []
    return ("Auto Scaling / Spot launches also need the grant the consumer creates for its "
            "service-linked role (not checked)"), [autoscaling_grant(p, info)]


def _key_denies(p: Principal, acc: KeyAccess, label: str, found: _Findings) -> None:
    """A Deny that matches ``p`` with no condition refuses its launches; one with conditions
    (or a NotPrincipal) may."""
    for d in acc.refusals:
        actions = ", ".join(d.actions)
        if d.definite:
            found.refuse(f"key policy of {label} denies {p.label} ({d.sid})",
                         f"key {label}: Deny statement {d.sid} refuses {actions} to "
                         f"{p.label}, with no condition")
        else:
            why = ("its conditions cannot be evaluated from the owner account" if d.conditional
                   else "whom its NotPrincipal spares cannot be evaluated from the owner account")
            found.evidence.append(f"key {label}: Deny statement {d.sid} may refuse {actions}: "
                                  f"{why}")


# --------------------------------------------------------------------------- not checked


# --------------------------------------------------------------------------- the manifest


def _manifest_evidence(p: Principal, facts: ImageFacts, found: _Findings) -> str:
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
    if facts.released_by:
        # README, "Ownership": the image is released by the manifest whose tag it carries
        if facts.keep_on_release:
            then = "on_release: keep, so the next apply only removes the tag"
        else:
            then = "the next apply revokes its shares and removes the tag"
            found.notes.append(f"released by manifest {facts.released_by}: the next apply "
                               "revokes its shares")
        return (f"manifest: released: it carries {OWNERSHIP_TAG}={facts.released_by} but no "
                f"rule matches it any more; {then}")
    return "manifest: no rule manages this image"


# --------------------------------------------------------------------------- names


def did_you_mean(text: str, names: Sequence[str]) -> str:
    """A did-you-mean suffix naming the closest of ``names`` ("" when none is close)."""
    hint = difflib.get_close_matches(text, list(names), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def resolve_principal(text: str, names: Sequence[tuple[str, Principal]]) -> Principal | None:
    for name, p in names:
        if name == text:
            return p
    return Principal.parse_literal(text)


def unknown_principal(text: str, names: Sequence[str], manifest: str | None) -> str:
    """Why ``text`` names no principal, and what to do about it."""
    hint = principal_hint(text)  # pasted with spaces, or an organization's bare ID
    if hint is not None:
        return f"{text!r} {hint}"
    said = f"{text!r} is not an account ID, Organization/OU ARN, `public`"
    if manifest is not None:
        return said + f" or a principal named in {manifest}" + did_you_mean(text, names)
    if text.isdigit():
        return f"{said} ({bad_account_id(text)})"
    if text.startswith("arn:"):
        return said
    return (f"{said}; to use a principal name, pass the MANIFEST that names it: "
            f"reconcile explain {text} MANIFEST (--image AMI_ID | --rule NAME)")
