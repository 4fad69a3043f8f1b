"""What only a consumer account can check, for ``explain`` to list under ``not_checked``
with the AWS CLI commands that check it there (its Allowed AMIs setting, the grants it
created, its IAM policies), and the ``reconcile verify`` command that checks the first two
from the owner's side with a read-only role in the consumer account. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from typing import Any

from .kms import KeyAccess, KeyInfo
from .model import Arn, Image, Principal, PrincipalKind
from .regions import partition_of

# What `reconcile verify` asks the consumer account (SPEC §7e): the Allowed AMIs setting,
# and whether the key lets the account in (a dry run). Not the Auto Scaling grant.
VERIFIED = frozenset({"allowed-amis", "consumer-key-access"})
VERIFY_ROLE = "ami-share-verify"  # the role name README's "Check from the consumer's side" uses


@dataclass(frozen=True)
class Unchecked:
    """Something a launch depends on that the owner account cannot see, and how the
    consumer checks it."""

    check: str  # stable name: allowed-amis, autoscaling-grant, consumer-key-access
    short: str  # for the verdict line
    what: str
    why: str
    where: str  # the account (or accounts) the commands run in
    commands: tuple[str, ...]

    def lines(self) -> list[str]:
        return [f"not checked: {self.what} ({self.why}); check it in {self.where}:",
                *(f"  {c}" for c in self.commands)]

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "what": self.what, "why": self.why, "where": self.where,
                "commands": list(self.commands)}


def _consumers(p: Principal) -> str:
    """The account(s) a consumer-side check runs in."""
    if p.kind is PrincipalKind.ACCOUNT:
        return f"account {p.value}"
    if p.is_public:
        return "the account that launches it"
    return f"each account of {p.label} that launches it"


def _account_or_placeholder(p: Principal) -> str:
    return p.value if p.kind is PrincipalKind.ACCOUNT else "<account-id>"


def allowed_amis(p: Principal, img: Image) -> Unchecked:
    """ImageAllowed in the consumer's DescribeImages; the setting itself from
    GetAllowedImagesSettings (EC2 User Guide, "Allowed AMIs")."""
    r = img.region
    return Unchecked(
        "allowed-amis", "Allowed AMIs",
        f"the Allowed AMIs setting in {r}",
        "a setting of the consumer account, which the owner account cannot read; when it is "
        "enabled, an AMI outside its criteria can be neither found nor launched there",
        _consumers(p),
        (f"aws ec2 get-allowed-images-settings --region {r}",
         f"aws ec2 describe-images --region {r} --image-ids {img.image_id} "
         "--query 'Images[].ImageAllowed'"))


# The service-linked roles that launch for Auto Scaling groups and for Spot requests.
_SERVICE_ROLES = ("autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                  "spot.amazonaws.com/AWSServiceRoleForEC2Spot")


def autoscaling_grant(p: Principal, info: KeyInfo) -> Unchecked:
    arn = info.arn or info.key_id
    partition = Arn.parse(arn).partition or "aws"
    account = _account_or_placeholder(p)
    return Unchecked(
        "autoscaling-grant", "the Auto Scaling / Spot grant",
        f"the grant on key {info.alias or arn} that an Auto Scaling / Spot service-linked "
        "role needs",
        "the consumer creates it in its own account, and explain does not list the key's "
        "grants; without it, plain launches work but Auto Scaling and Spot launches fail",
        _consumers(p),
        tuple(f"aws kms list-grants --region {info.region} --key-id {arn} --grantee-principal "
              f"arn:{partition}:iam::{account}:role/aws-service-role/{role}"
              for role in _SERVICE_ROLES))


def consumer_key_access(p: Principal, info: KeyInfo, acc: KeyAccess) -> Unchecked:
    """The consumer's IAM policies (and any conditional Deny) decide too: a dry run from the
    consumer account answers for all of them at once."""
    arn = info.arn or info.key_id
    unsure = [d.sid for d in acc.refusals if not d.definite]
    denies = (f", nor whether Deny statement{'s' if len(unsure) > 1 else ''} "
              f"{', '.join(unsure)} applies to it" if unsure else "")
    return Unchecked(
        "consumer-key-access", "its roles' key access",
        f"whether the roles that launch instances may use key {info.alias or arn}",
        f"the owner account cannot read the consumer's IAM policies{denies}; run the dry run "
        "as such a role: DryRunOperation means the key lets it in",
        _consumers(p),
        (f"aws kms generate-data-key-without-plaintext --dry-run --region {info.region} "
         f"--key-id {arn} --key-spec AES_256",))


def verify_command(p: Principal, img: Image, manifest: str = "") -> str:
    """The ``reconcile verify`` line that checks ``img`` from ``p``'s account (a member
    account of an organization or OU, or any account for a public image, is a placeholder)."""
    partition = partition_of(img.region) or "aws"
    role = shlex.quote(f"arn:{partition}:iam::{{account}}:role/{VERIFY_ROLE}")
    return (f"reconcile verify {shlex.quote(manifest) if manifest else 'MANIFEST'} "
            f"--consumer-role {role} --account {_account_or_placeholder(p)} "
            f"--image {img.image_id}")


def with_verify(u: Unchecked, p: Principal, img: Image, manifest: str = "") -> Unchecked:
    """``u`` with the ``reconcile verify`` line last, when verify checks it."""
    if u.check not in VERIFIED:
        return u
    return replace(u, commands=(*u.commands, verify_command(p, img, manifest)))
