"""Grantees: what a key policy can say about a principal (an account ID, an organization ID
or an OU path pattern), the constants of the tool's statements, and reading a policy."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import (
    ACCOUNT_ID_RE,
    ORG_ARN_RE,
    ORG_ID_RE,
    OU_ARN_RE,
    OU_ID_RE,
    Principal,
    PrincipalKind,
)

SID_ACCOUNTS = "AmiShareReconcilerAccounts"
SID_ACCOUNTS_GRANT = "AmiShareReconcilerAccountsGrant"
SID_ORGS = "AmiShareReconcilerOrgs"
SID_ORGS_GRANT = "AmiShareReconcilerOrgsGrant"
OWNED_SIDS = (SID_ACCOUNTS, SID_ACCOUNTS_GRANT, SID_ORGS, SID_ORGS_GRANT)

USE_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:ReEncrypt*", "kms:GenerateDataKey*"]
GRANT_ACTIONS = ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"]
GRANT_CONDITION = {"Bool": {"kms:GrantIsForAWSResource": True}}
MAX_POLICY_BYTES = 32 * 1024
ORG_ID_KEY = "aws:PrincipalOrgID"
ORG_PATHS_KEY = "aws:PrincipalOrgPaths"


class GrantShape(enum.StrEnum):
    """``settings.kms_grants``: how the tool's two grant statements are written."""

    AWS_RESOURCE = "aws-resource"  # kms:CreateGrant only for grants EBS makes on their behalf
    ANY = "any"  # no condition: consumers may create the grant their Auto Scaling role needs


class GranteeKind(enum.StrEnum):
    ACCOUNT = "account"
    ORG = "org"
    OU = "ou"


@dataclass(frozen=True, order=True)
class Grantee:
    """What a key policy can name: account ID, organization ID, or OU path pattern."""

    kind: GranteeKind
    value: str

    @property
    def org_path(self) -> str:
        return f"{self.value}/*" if self.kind is GranteeKind.ORG else self.value


class PolicyError(ValueError):
    """The current key policy cannot be understood well enough to edit it safely."""


def grantee_of(p: Principal) -> Grantee | None:
    """The key-policy form of a launch/copy principal (None for ``public``)."""
    if p.kind is PrincipalKind.ACCOUNT:
        return Grantee(GranteeKind.ACCOUNT, p.value)
    if p.kind is PrincipalKind.ORGANIZATION:
        m = ORG_ARN_RE.fullmatch(p.value)
        return Grantee(GranteeKind.ORG, m.group(1)) if m else None
    if p.kind is PrincipalKind.OU:
        m = OU_ARN_RE.fullmatch(p.value)
        return Grantee(GranteeKind.OU, f"{m.group(1)}/*/{m.group(2)}/*") if m else None
    return None


def principal_of(g: Grantee, partition: str, known: Mapping[Grantee, Principal]) -> Principal:
    """Back from a grantee to a plan principal (full ARNs come from ``known`` when possible)."""
    if g in known:
        return known[g]
    if g.kind is GranteeKind.ACCOUNT:
        return Principal.account(g.value)
    # The management account is not recorded in a key policy; org IDs are globally unique,
    # so this ARN identifies the same organization/OU.
    if g.kind is GranteeKind.ORG:
        return Principal(PrincipalKind.ORGANIZATION,
                         f"arn:{partition}:organizations::000000000000:organization/{g.value}")
    org, _, ou, _ = g.value.split("/")
    return Principal(PrincipalKind.OU, f"arn:{partition}:organizations::000000000000:ou/{org}/{ou}")


def parse_policy(text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise PolicyError(f"key policy is not valid JSON ({exc})") from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, 4,300+ digit numbers
        raise PolicyError(f"key policy cannot be read ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise PolicyError("key policy is not a JSON object")
    stmts = doc.get("Statement")
    if isinstance(stmts, dict):
        raise PolicyError("key policy has a single Statement object; expected a list")
    if not isinstance(stmts, list) or not all(isinstance(s, dict) for s in stmts):
        raise PolicyError("key policy has no Statement list")
    return doc


def as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


ROOT_ARN_PATTERN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):root", re.ASCII)
ORG_ID_PATTERN = re.compile(ORG_ID_RE, re.ASCII)
ORG_PATH_PATTERN = re.compile(rf"({ORG_ID_RE})/\*", re.ASCII)
OU_PATH_PATTERN = re.compile(rf"{ORG_ID_RE}/\*/{OU_ID_RE}/\*", re.ASCII)


def account_of(value: str) -> str | None:
    if ACCOUNT_ID_RE.fullmatch(value):
        return value
    m = ROOT_ARN_PATTERN.fullmatch(value)
    return m.group(1) if m else None


def covers(actions: Sequence[str], wanted: Sequence[str]) -> bool:
    acts = {a.lower() for a in actions}
    if "*" in acts or "kms:*" in acts:
        return True
    return all(w.lower() in acts for w in wanted)
