"""Immutable values shared by every step of the pipeline.

Nothing here performs I/O. Principals, images, operations and findings are frozen
dataclasses so the pure steps (desired state, diff, render) can be tested without AWS
and can never mutate what another step sees.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .findings import Code as Code
from .findings import Finding as Finding
from .findings import Severity as Severity
from .findings import sorted_findings as sorted_findings

# Matched with fullmatch and ASCII semantics: no trailing newline, no non-ASCII digits.
ACCOUNT_ID_RE = re.compile(r"\d{12}", re.ASCII)
ORG_ID_RE = r"o-[a-z0-9]{10,32}"
OU_ID_RE = r"ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}"
ORG_ARN_RE = re.compile(rf"arn:aws[a-z-]*:organizations::\d{{12}}:organization/({ORG_ID_RE})", re.ASCII)
OU_ARN_RE = re.compile(
    rf"arn:aws[a-z-]*:organizations::\d{{12}}:ou/({ORG_ID_RE})/({OU_ID_RE})",
    re.ASCII)
AMI_ID_RE = re.compile(r"ami-(?:[0-9a-f]{8}|[0-9a-f]{17})", re.ASCII)
# The shape of a Region name in every partition (us-east-1, us-gov-west-1, us-isob-east-1,
# eusc-de-east-1); whether botocore knows it is core.regions' business.
REGION_RE = re.compile(r"[a-z]{2,4}(?:-[a-z]{2,4})?-[a-z]+-\d{1,2}", re.ASCII)
PUBLIC = "public"
# The tag that records, in AWS itself, which manifest manages an image (README, "Ownership").
OWNERSHIP_TAG = "reconciler:manifest"
# on a build a manifest deprecated because it retired it (settings.deprecate_retired): the
# manifest's name, so that its own deprecation is undone, never a reason to keep it out
DEPRECATED_BY_TAG = "reconciler:deprecated-by"


def bad_account_id(text: str) -> str | None:
    """Why ``text``, made of digits, is not an account ID (None when it is one)."""
    if not text.isascii():
        return (f"account ID {text!r} contains non-ASCII digits; write it with the ASCII "
                "digits 0-9")
    if not ACCOUNT_ID_RE.fullmatch(text):
        return f"account ID {text!r} must be exactly 12 digits (it has {len(text)})"
    return None


def principal_hint(text: str) -> str | None:
    """What is wrong with a principal as people paste it, said to follow the text itself
    (``'o-a1b2c3d4e5' is an organization ID; ...``): surrounding spaces, or a bare
    organization or OU ID where launch permissions take the ARN. None for anything else."""
    if text != text.strip():
        return "has surrounding spaces; remove them"
    if re.fullmatch(ORG_ID_RE, text, re.ASCII):
        return ("is an organization ID; write its ARN arn:aws:organizations::"
                f"<management-account-id>:organization/{text}")
    if re.fullmatch(OU_ID_RE, text, re.ASCII):
        return ("is an OU ID; write its ARN arn:aws:organizations::<management-account-id>:"
                f"ou/<organization-id>/{text}")
    return None


class PrincipalKind(enum.StrEnum):
    """The four kinds of launch-permission principal, named as the EC2 API names them."""

    ACCOUNT = "UserId"
    ORGANIZATION = "OrganizationArn"
    OU = "OrganizationalUnitArn"
    PUBLIC = "Group"


_PUBLIC_KIND = PrincipalKind.PUBLIC
# Sort order: accounts first, then organizations, OUs and public; by value within a kind.
_KIND_RANK = {PrincipalKind.ACCOUNT: "0", PrincipalKind.ORGANIZATION: "1", PrincipalKind.OU: "2",
              PrincipalKind.PUBLIC: "3"}


@dataclass(frozen=True, slots=True)
class Principal:
    """One launch-permission principal in canonical form (an account ID, org/OU ARN or ``all``).

    Hashing uses the value only (IDs and ARNs never collide across kinds), and the sort key
    is computed once: plans compare and sort millions of these.
    """

    kind: PrincipalKind
    value: str
    sort_key: tuple[str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sort_key", (_KIND_RANK[self.kind], self.value))

    def __hash__(self) -> int:
        return hash(self.value)

    def __lt__(self, other: Principal) -> bool:
        return self.sort_key < other.sort_key

    @classmethod
    def account(cls, account_id: str) -> Principal:
        return cls(PrincipalKind.ACCOUNT, account_id)

    @classmethod
    def public(cls) -> Principal:
        return cls(PrincipalKind.PUBLIC, "all")

    @classmethod
    def parse_literal(cls, text: str) -> Principal | None:
        """Parse a literal account ID, org/OU ARN or ``public``; None if it is none of these."""
        if text == PUBLIC:
            return cls.public()
        if ACCOUNT_ID_RE.fullmatch(text):
            return cls.account(text)
        if ORG_ARN_RE.fullmatch(text):
            return cls(PrincipalKind.ORGANIZATION, text)
        if OU_ARN_RE.fullmatch(text):
            return cls(PrincipalKind.OU, text)
        return None

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> Principal:
        """Read one EC2 ``LaunchPermission`` / plan ``principal`` mapping."""
        present = [k for k in PrincipalKind if k.value in entry]
        if len(present) != 1:
            raise ValueError(f"principal must have exactly one of UserId, OrganizationArn, "
                             f"OrganizationalUnitArn, Group: {dict(entry)!r}")
        kind = present[0]
        value = str(entry[kind.value])
        if kind is PrincipalKind.PUBLIC and value != "all":
            raise ValueError(f"unknown launch-permission group {value!r}")
        return _interned(kind, value)

    def to_dict(self) -> dict[str, str]:
        return {_KIND_NAME[self.kind]: self.value}

    @property
    def is_public(self) -> bool:
        return self.kind is _PUBLIC_KIND

    @property
    def is_org_or_ou(self) -> bool:
        return self.kind in (PrincipalKind.ORGANIZATION, PrincipalKind.OU)

    @property
    def label(self) -> str:
        """Short human form: the account ID, the ARN, or ``public``."""
        return PUBLIC if self.kind is _PUBLIC_KIND else self.value


_KIND_NAME = {k: k.value for k in PrincipalKind}


class Action(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"


class OpKind(enum.StrEnum):
    LAUNCH = "launch_permission"
    COPY = "create_volume_permission"
    KMS = "kms_key_access"


@functools.lru_cache(maxsize=1 << 16)
def _interned(kind: PrincipalKind, value: str) -> Principal:
    """One object per distinct principal read from AWS or a plan file: an estate of 10,000
    images shared with the same 50 accounts holds 50 principals, not 500,000."""
    return Principal(kind, value)


@dataclass(frozen=True, slots=True)
class Operation:
    """One permission to add or remove. Apply is described entirely by these."""

    action: Action
    kind: OpKind
    region: str
    resource: str
    principal: Principal
    rules: tuple[str, ...] = ()

    @property
    def sort_key(self) -> tuple[str, str, str, str, str, str]:
        # str-valued enums compare as their values; no .value lookups on this hot path
        return (self.region, self.resource, self.kind, self.action, *self.principal.sort_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": _ENUM_VALUE[self.action],
            "kind": _ENUM_VALUE[self.kind],
            "region": self.region,
            "resource": self.resource,
            "principal": self.principal.to_dict(),
            "rules": list(self.rules),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Operation:
        return cls(Action(d["action"]), OpKind(d["kind"]), d["region"], d["resource"],
                   Principal.from_dict(d["principal"]), tuple(d["rules"]))


_ENUM_VALUE: dict[enum.Enum, str] = {**{a: a.value for a in Action}, **{k: k.value for k in OpKind}}


def by_resource(ops: Iterable[Operation]) -> dict[tuple[str, str], list[Operation]]:
    """The operations grouped by (Region, resource), in their order."""
    out: dict[tuple[str, str], list[Operation]] = {}
    for op in ops:
        out.setdefault((op.region, op.resource), []).append(op)
    return out


def plural(n: int, word: str) -> str:
    """``1 image``, ``2 images``: the count and the word, for every message."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def sorted_operations(ops: Iterable[Operation]) -> tuple[Operation, ...]:
    return tuple(sorted(ops, key=lambda o: o.sort_key))


def parse_time(iso: str) -> dt.datetime | None:
    """A time as AWS or the manifest writes it (ISO 8601), read as UTC when it names no
    zone; None when it is not one."""
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class ImageState(enum.StrEnum):
    """``Image.State`` in DescribeImages (AWS may add states: an image keeps what AWS said)."""

    AVAILABLE = "available"
    DISABLED = "disabled"
    PENDING = "pending"
    FAILED = "failed"


class Blocking(enum.StrEnum):
    """Image / Snapshot Block Public Access states (GetImageBlockPublicAccessState,
    GetSnapshotBlockPublicAccessState); an unknown one is kept as AWS said it."""

    BLOCK_NEW_SHARING = "block-new-sharing"
    BLOCK_ALL_SHARING = "block-all-sharing"  # snapshots only
    UNBLOCKED = "unblocked"


class RegionKey(NamedTuple):
    """A resource in its Region: an image or snapshot ID, or a key's ID or ARN."""

    region: str
    resource: str


class OwnerRegion(NamedTuple):
    """An owner account in one Region: where account-wide settings (Block Public Access,
    the public-image count) live."""

    owner: str
    region: str


@dataclass(frozen=True)
class Image:
    """An AMI owned by the caller, as listed by ``DescribeImages``."""

    image_id: str
    region: str
    owner_id: str
    name: str
    state: str  # an ImageState value, as DescribeImages reported it
    public: bool
    tags: tuple[tuple[str, str], ...] = ()
    snapshot_ids: tuple[str, ...] = ()
    encrypted: bool = False
    product_codes: tuple[str, ...] = ()  # AWS Marketplace product codes (ProductCodeId)
    creation_date: str = ""  # ISO 8601, as DescribeImages reports it
    deprecation_time: str = ""  # ISO 8601, "" when the image has none
    last_launched: str = ""  # ISO 8601 LastLaunchedTime (up to 24 h late), "" when never
    usage_operation: str = ""  # "RunInstances" (Linux/UNIX) or a billing product's, as reported
    root_device_type: str = "ebs"  # "ebs" or "instance-store"

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def key(self) -> RegionKey:
        return RegionKey(self.region, self.image_id)


@dataclass(frozen=True)
class BlockState:
    """An account's Block Public Access setting in one Region, for images or snapshots."""

    state: str | None  # a Blocking value (None: it could not be read; ``why`` says why)
    managed_by: str = ""  # "account" or "declarative-policy" (an organization's policy)
    why: str = ""


@dataclass(frozen=True)
class Counted:
    """A number read from AWS, or None when it could not be read (``why`` says why)."""

    count: int | None
    why: str = ""


@dataclass(frozen=True)
class Arn:
    """An Amazon Resource Name: ``arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE``. The one
    place ARNs are taken apart; a text that is not one parses to empty fields."""

    partition: str = ""
    service: str = ""
    region: str = ""
    account: str = ""
    resource: str = ""  # everything after the account: "key/1234...", "role/x", "ou/o-a/ou-b"

    @classmethod
    def parse(cls, text: str) -> Arn:
        parts = text.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn":
            return cls()
        return cls(*parts[1:])

    @property
    def resource_id(self) -> str:
        """The last path element of the resource (a key's ID, a role's name)."""
        return self.resource.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Identity:
    """Who the run acts as: from ``sts:GetCallerIdentity``."""

    account: str
    arn: str

    @property
    def partition(self) -> str:
        return Arn.parse(self.arn).partition or "aws"


@dataclass(frozen=True)
class Snapshot:
    """An EBS snapshot backing a managed image, as ``DescribeSnapshots`` returns it."""

    snapshot_id: str
    region: str
    encrypted: bool = False
    kms_key_id: str = ""
    owner_id: str = ""
    tags: tuple[tuple[str, str], ...] = ()
