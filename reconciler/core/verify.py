"""``reconcile verify`` (SPEC §7e): can each declared consumer account launch its images,
as that account itself sees them? Pure.

The owner account cannot see a consumer's Allowed AMIs setting, its membership of an
organization or OU, or whether the consumer's principals get through the key policy. The
shell assumes a read-only role in each consumer account and asks there: ``DescribeImages``
by ID (EC2 API reference: an account sees public images, its own, and those shared with it;
with Allowed AMIs ``enabled`` only allowed ones, ``ImageAllowed`` telling which), the Allowed
AMIs setting (``GetAllowedImagesSettings``), and for each KMS key ``DescribeKey`` and a
``GenerateDataKeyWithoutPlaintext`` dry run (KMS Developer Guide, "Testing your
permissions": ``DryRunOperationException`` when the call would succeed, else the error it
would return, such as ``AccessDeniedException``). This module chooses what to ask and
judges the answers: each (account, image) is ``can``, ``cannot`` (with the reasons) or
``unknown`` (a check that could not be made: an error, never a guess).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import allowed_amis
from .allowed_amis import AllowedSettings
from .desired import ManagedImage
from .errors import ACCESS_DENIED_CODES
from .manifest import Manifest
from .model import (
    ACCOUNT_ID_RE,
    Arn,
    Image,
    ImageState,
    Principal,
    PrincipalKind,
    RegionKey,
    bad_account_id,
)

ACCOUNT_FIELD = "{account}"
DRY_RUN_OK = "DryRunOperationException"  # KMS: "the request would have succeeded"
# IAM User Guide, "Troubleshoot access denied error messages"
# (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html): the
# message names the policy type that refused ("because no identity-based policy allows",
# "with an explicit deny in a resource-based policy"). These refuse the verifying role
# itself, and say nothing of the principals that launch instances.
_ROLE_OWN_POLICIES = re.compile(r"identity-based policy|permissions boundary|session policy",
                                re.IGNORECASE)
_ROLE_RE = re.compile(r"arn:aws[a-z-]*:iam::\{account\}:role/[\w+=,.@/-]+", re.ASCII)


def template_problem(template: str) -> str | None:
    """Why ``--consumer-role`` is not a usable template (None when it is one)."""
    example = "arn:aws:iam::{account}:role/ami-share-verify"
    if template.count(ACCOUNT_FIELD) != 1:
        return (f"--consumer-role {template!r} must contain {ACCOUNT_FIELD} exactly once, "
                f"where the account ID goes (e.g. {example})")
    if not _ROLE_RE.fullmatch(template):
        return (f"--consumer-role {template!r} is not an IAM role ARN with {ACCOUNT_FIELD} as "
                f"its account (e.g. {example})")
    return None


def role_for(template: str, account: str) -> str:
    return template.replace(ACCOUNT_FIELD, account)


# --------------------------------------------------------------------------- what to check


@dataclass(frozen=True)
class Target:
    """One consumer account and one managed image declared for it."""

    account: str
    image: Image
    via: tuple[Principal, ...]  # the declared principals that reach the account
    rules: tuple[str, ...]  # the rules declaring them
    keys: tuple[str, ...] = ()  # the KMS keys of its encrypted snapshots, as the owner reads them
    unread: tuple[str, ...] = ()  # encrypted image: snapshots the owner could not read

    @property
    def direct(self) -> bool:
        return Principal.account(self.account) in self.via


def declares(manifest: Manifest, account: str) -> bool:
    """Whether any rule declares ``account`` for launch, directly or through an
    organization, OU or public (whose members only the consumer's view can confirm)."""
    return any(p == Principal.account(account) or p.kind is not PrincipalKind.ACCOUNT
               for rule in manifest.rules for p in rule.launch)


def targets(managed: Sequence[ManagedImage], accounts: Sequence[str] = (),
            keys: Mapping[RegionKey, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
            ) -> list[Target]:
    """What to check: every account a managed image declares for launch, with that image;
    with ``accounts`` (``--account``), those accounts only, each also with the images
    declared for an organization, OU or public (membership only the account can show).
    ``keys``: image -> (its keys, its encrypted snapshots the owner could not read)."""
    named = set(accounts)
    out = []
    for m in sorted(managed, key=lambda m: m.image.key):
        found: dict[str, list[Principal]] = {}
        for p in sorted(m.launch):
            if p.kind is PrincipalKind.ACCOUNT:
                if not named or p.value in named:
                    found.setdefault(p.value, []).append(p)
            else:
                for a in sorted(named):
                    found.setdefault(a, []).append(p)
        ks, unread = (keys or {}).get(m.image.key, ((), ()))
        for account, via in found.items():
            rules = tuple(dict.fromkeys(r for p in via for r in m.launch[p]))
            out.append(Target(account, m.image, tuple(via), rules, ks, unread))
    return sorted(out, key=lambda t: (t.account, t.image.region, t.image.image_id))


# --------------------------------------------------------------------------- what was seen


@dataclass(frozen=True)
class Answer:
    """One consumer-side call's outcome: ``code`` "" when it succeeded, else AWS's error
    code (or "" with ``failed``: an answer that was not AWS-shaped)."""

    code: str = ""
    message: str = ""
    failed: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def refused_to_role(self) -> bool:
        """Refused by the verifying role's own policies (not by the resource)."""
        return self.code in ACCESS_DENIED_CODES and bool(_ROLE_OWN_POLICIES.search(self.message))


@dataclass(frozen=True)
class Seen:
    """An image as ``DescribeImages`` by ID shows it to the consumer."""

    state: str
    image_allowed: bool | None = None  # None: no ImageAllowed (Allowed AMIs disabled)


@dataclass(frozen=True)
class KeySeen:
    """One KMS key from the consumer account: ``DescribeKey`` and the dry run."""

    describe: Answer
    state: str = ""  # KeyState, when DescribeKey answered
    dry_run: Answer | None = None  # the GenerateDataKeyWithoutPlaintext dry run


@dataclass(frozen=True)
class RegionView:
    """What one consumer account sees in one Region."""

    listing: Answer = Answer()  # DescribeImages by ID
    images: Mapping[str, Seen] = field(default_factory=dict)  # the visible ones, by ID
    allowed: AllowedSettings | None = None
    allowed_answer: Answer = Answer()  # GetAllowedImagesSettings
    keys: Mapping[str, KeySeen] = field(default_factory=dict)


# --------------------------------------------------------------------------- verdicts


class Status(enum.StrEnum):
    CAN = "can launch"
    CANNOT = "cannot launch"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    target: Target
    status: Status
    reasons: tuple[str, ...]  # cannot: why; unknown: what could not be checked
    evidence: tuple[str, ...]  # what was seen (the can-launch line says it)
    checks: Mapping[str, Any] = field(default_factory=dict)  # for JSON
    notes: tuple[str, ...] = ()  # said on every line: what will stop it later (audit mode)

    def who(self, names: Mapping[str, str]) -> str:
        name = names.get(self.target.account)
        via = "" if self.target.direct else \
            f"through {', '.join(names.get(p.value, p.label) for p in self.target.via)}"
        said = ", ".join(x for x in (name or "", via) if x)
        return f"{self.target.account} ({said})" if said else self.target.account

    def line(self, names: Mapping[str, str]) -> str:
        img = self.target.image
        head = f"{self.who(names)} {{}} {img.image_id} ({img.name}) in {img.region}"
        if self.status is Status.UNKNOWN:
            return (f"{self.who(names)}: could not check {img.image_id} ({img.name}) in "
                    f"{img.region}: {'; '.join(self.reasons)}")
        said = (self.reasons if self.status is Status.CANNOT else self.evidence) + self.notes
        return head.format(self.status.value) + (f": {'; '.join(said)}" if said else "")

    def to_dict(self, names: Mapping[str, str]) -> dict[str, Any]:
        t = self.target
        return {"account": t.account, "account_name": names.get(t.account),
                "image": t.image.image_id, "name": t.image.name, "region": t.image.region,
                "owner": t.image.owner_id,
                "can_launch": None if self.status is Status.UNKNOWN else
                self.status is Status.CAN,
                "line": self.line(names), "reasons": list(self.reasons),
                "evidence": list(self.evidence), "notes": list(self.notes),
                "declared": {"principals": [p.to_dict() for p in t.via],
                             "rules": list(t.rules)},
                "checks": dict(self.checks)}


@dataclass
class _Judgement:
    cannot: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def judge(t: Target, view: RegionView, now: dt.datetime,
          owner_launch: frozenset[Principal] | None = None,
          grants: Mapping[str, KeyGrants] | None = None) -> Verdict:
    """The verdict for one target from what its account sees in the image's Region.
    ``owner_launch``: the image's launch permissions as the owner reads them (read only
    for an image the account does not see: they say whether the share is missing).
    ``grants``: per key, its grantees as the owner lists them (``kms_grants: any`` only)."""
    j = _Judgement()
    _visibility(t, view, now, owner_launch, j)
    for key in t.keys:
        _key(t, key, view.keys.get(key), j)
        if grants is not None and key in grants:
            _autoscaling(t, key, grants[key], j)
    for sid in t.unread:
        j.unknown.append(f"the owner cannot read snapshot {sid}, so its KMS key cannot be "
                         "checked")
    status = Status.CANNOT if j.cannot else Status.UNKNOWN if j.unknown else Status.CAN
    reasons = j.cannot + [f"also not checked: {u}" for u in j.unknown] if j.cannot else j.unknown
    return Verdict(t, status, tuple(reasons), tuple(j.evidence), j.checks, tuple(j.notes))


def _visibility(t: Target, view: RegionView, now: dt.datetime,
                owner_launch: frozenset[Principal] | None, j: _Judgement) -> None:
    img, settings = t.image, view.allowed
    j.checks["allowed_amis"] = settings.to_dict() if settings else (
        {"error": view.allowed_answer.message} if view.allowed_answer.failed else None)
    if view.listing.failed:
        j.checks["visible"] = None
        j.unknown.append(f"DescribeImages in account {t.account} failed: "
                         f"{view.listing.message}")
        return
    seen = view.images.get(img.image_id)
    j.checks["visible"] = seen is not None
    j.checks["image_allowed"] = seen.image_allowed if seen else None
    if seen is None:
        j.cannot.append(_invisible(t, settings, view.allowed_answer, now, owner_launch))
        return
    if seen.state != ImageState.AVAILABLE:
        j.cannot.append(f"the image is {seen.state}")
    why = allowed_amis.explain(settings, img, now) if settings else None
    said = f" ({why.text})" if why else ""
    if seen.image_allowed is False:
        if settings is not None and settings.state == allowed_amis.AUDIT:
            j.evidence.append("it sees the image by ID")
            j.notes.append(f"its Allowed AMIs setting is in audit mode and would hide it once "
                           f"enabled{said}")
        else:
            j.cannot.append(f"its Allowed AMIs setting does not allow it{said}")
        return
    j.evidence.append("it sees the image by ID"
                      + (f" ({allowed_amis.describe_state(settings)})" if settings else ""))


def _invisible(t: Target, settings: AllowedSettings | None, answer: Answer, now: dt.datetime,
               owner_launch: frozenset[Principal] | None) -> str:
    """Why the account does not see the image: its Allowed AMIs setting (enabled, it hides
    what it does not allow), the share, or both."""
    parts = []
    if settings is not None and settings.state == allowed_amis.ENABLED and (
            why := allowed_amis.explain(settings, t.image, now)) is not None:
        parts.append(f"its Allowed AMIs setting (enabled) {why.verb}: {why.text}")
    shared, share = _share(t, owner_launch)
    if not (shared and parts):
        parts.append(share)
    if answer.failed:
        parts.append(f"its Allowed AMIs setting could not be read ({answer.message})")
    return f"account {t.account} does not see it (DescribeImages by ID): " + "; also ".join(parts)


def _share(t: Target, owner_launch: frozenset[Principal] | None) -> tuple[bool, str]:
    """Whether the owner shares the image with the account (directly or publicly), and what
    its launch permissions say about a missing share."""
    if owner_launch is None:
        return False, "the image is not shared with it"
    if Principal.account(t.account) in owner_launch or Principal.public() in owner_launch:
        return True, ("the owner shares it with the account, yet the account does not see it "
                      "(a share made seconds ago, or Allowed AMIs criteria only EC2 evaluates)")
    groups = sorted(p for p in owner_launch if p.is_org_or_ou)
    if groups and not t.direct:
        return False, (f"it is shared with {', '.join(p.label for p in groups)}, and the "
                       "account is not in it (or not yet)")
    held = ", ".join(p.label for p in sorted(owner_launch)) or "nobody"
    return False, (f"the image is not shared with it (the owner shares it with {held}): a "
                   "share removed by hand? `reconcile apply` restores the declared share")


def _key(t: Target, key: str, seen: KeySeen | None, j: _Judgement) -> None:
    """Whether the key lets the account in: DescribeKey, then the dry run."""
    checks = j.checks.setdefault("keys", [])
    if seen is None:
        j.unknown.append(f"key {key} was not checked")
        return
    entry: dict[str, Any] = {"key": key, "state": seen.state or None,
                             "describe_key": seen.describe.code or "ok",
                             "dry_run": (seen.dry_run.code or "ok") if seen.dry_run else None}
    checks.append(entry)
    if not _key_answer(t, key, "kms:DescribeKey", seen.describe, j):
        return
    if seen.state and seen.state != "Enabled":
        j.cannot.append(f"key {key} is {seen.state}")
        return
    if seen.dry_run is None or seen.dry_run.code == DRY_RUN_OK or not seen.dry_run.failed:
        j.evidence.append(f"key {key} lets it in (dry run)")
        return
    _key_answer(t, key, "a dry run of kms:GenerateDataKeyWithoutPlaintext", seen.dry_run, j)


@dataclass(frozen=True)
class KeyGrants:
    """A key's grants as its owner lists them (``ListGrants``): the grantee principals, or
    why they could not be listed."""

    grantees: frozenset[str] = frozenset()
    failure: str = ""


# EC2 Auto Scaling User Guide, "Required AWS KMS key policy for use with encrypted volumes"
# (https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html):
# an Auto Scaling group launches with its service-linked role, which needs a grant the
# consumer account creates on the owner's key; plain launches do not.
AUTOSCALING_ROLE = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


def autoscaling_role(account: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:{AUTOSCALING_ROLE}"


def _autoscaling(t: Target, key: str, grants: KeyGrants, j: _Judgement) -> None:
    """A note on whether the account's Auto Scaling role holds a grant on the key (it does
    not decide plain launches)."""
    role = autoscaling_role(t.account, Arn.parse(key).partition or "aws")
    if grants.failure:
        j.notes.append(f"the grants of key {key} could not be listed ({grants.failure}), so "
                       "Auto Scaling launches were not checked")
    elif role not in grants.grantees:
        j.notes.append(f"Auto Scaling launches fail: no grant on key {key} for {role} (the "
                       "account creates it: aws kms create-grant, see README, "
                       "\"settings.kms_grants\")")


def _key_answer(t: Target, key: str, what: str, a: Answer, j: _Judgement) -> bool:
    """True when ``a`` succeeded; else records why the key does not let the account in (or
    why that cannot be told)."""
    if not a.failed:
        return True
    if a.refused_to_role:
        j.unknown.append(f"the verifying role in {t.account} may not call {what} itself "
                         f"({a.message}); give it the policy in README, \"Check from the "
                         "consumer's side\"")
    elif a.code in ACCESS_DENIED_CODES:
        j.cannot.append(f"key {key} does not let account {t.account} in: {what} was refused "
                        f"({_refusal(a)})")
    elif a.code in ("NotFoundException", "DisabledException", "KMSInvalidStateException",
                    "KeyUnavailableException", "InvalidKeyUsageException"):
        j.cannot.append(f"key {key}: {what} answered {a.message}")
    else:
        j.unknown.append(f"{what} on key {key} failed: {a.message}")
    return False


def _refusal(a: Answer) -> str:
    """An access-denied message shortened to what refused (its caller and resource are said
    already): "AccessDeniedException: ... because no resource-based policy allows ..."."""
    m = re.search(r"\b(because no .*|with an explicit deny .*)$", a.message)
    return f"{a.code}: {m.group(1)}" if m else a.message


def owner_names(manifest: Manifest) -> dict[str, str]:
    """Principal value -> the manifest's name for it (for the lines)."""
    return {p.value: name for name, p in reversed(manifest.principals)}


def account_problem(text: str) -> str | None:
    """Why an ``--account`` is not an account ID (None when it is one)."""
    if ACCOUNT_ID_RE.fullmatch(text):
        return None
    why = bad_account_id(text) if text.isdigit() else "not an account ID (12 digits)"
    return f"--account {text!r}: {why}"
