"""KMS key policies: the four statements the tool owns, and nothing else. Pure.

For each customer managed key backing a managed image, the tool owns exactly the statements
whose Sid is one of :data:`OWNED_SIDS`; every other statement is kept byte-for-byte in its
place. Principals are compared as *grantees*: an account ID, an organization ID, or an OU
path pattern (``o-…/*/ou-…/*``), because that is all a key policy can say about them.

Organizations and OUs share the two ``Orgs`` statements. Conditions on different keys in one
statement are ANDed, so the tool never puts ``aws:PrincipalOrgID`` and
``aws:PrincipalOrgPaths`` in the same statement: with organizations only it uses
``aws:PrincipalOrgID``; as soon as an OU is present, every grantee is written as an
``aws:PrincipalOrgPaths`` pattern (an organization as ``o-…/*``), which is their union.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import ORG_ARN_RE, OU_ARN_RE, Principal, PrincipalKind

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
        m = ORG_ARN_RE.match(p.value)
        return Grantee(GranteeKind.ORG, m.group(1)) if m else None
    if p.kind is PrincipalKind.OU:
        m = OU_ARN_RE.match(p.value)
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
    if not isinstance(doc, dict):
        raise PolicyError("key policy is not a JSON object")
    stmts = doc.get("Statement")
    if isinstance(stmts, dict):
        raise PolicyError("key policy has a single Statement object; expected a list")
    if not isinstance(stmts, list) or not all(isinstance(s, dict) for s in stmts):
        raise PolicyError("key policy has no Statement list")
    return doc


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def _account_of(value: str) -> str | None:
    if value.isdigit() and len(value) == 12:
        return value
    parts = value.split(":")
    if len(parts) == 6 and parts[2] == "iam" and parts[5] == "root" and parts[4].isdigit():
        return parts[4]
    return None


def owned_grantees(policy: Mapping[str, Any]) -> set[Grantee]:
    """Grantees currently named by the tool's own statements."""
    out: set[Grantee] = set()
    for st in policy.get("Statement", []):
        sid = st.get("Sid")
        if sid in (SID_ACCOUNTS, SID_ACCOUNTS_GRANT):
            principal = st.get("Principal") or {}
            values = _as_list(principal.get("AWS")) if isinstance(principal, dict) else []
            for v in values:
                acct = _account_of(str(v))
                if acct is None:
                    raise PolicyError(f"statement {sid} names principal {v!r}, which is not an "
                                      "account root")
                out.add(Grantee(GranteeKind.ACCOUNT, acct))
        elif sid in (SID_ORGS, SID_ORGS_GRANT):
            cond = st.get("Condition") or {}
            for v in _as_list((cond.get("StringEquals") or {}).get(ORG_ID_KEY)):
                out.add(Grantee(GranteeKind.ORG, str(v)))
            for v in _as_list((cond.get("ForAnyValue:StringLike") or {}).get(ORG_PATHS_KEY)):
                parts = str(v).split("/")
                if len(parts) == 2 and parts[1] == "*":
                    out.add(Grantee(GranteeKind.ORG, parts[0]))
                else:
                    out.add(Grantee(GranteeKind.OU, str(v)))
    return out


def _statements(grantees: Iterable[Grantee], partition: str) -> list[dict[str, Any]]:
    accounts = sorted(g.value for g in grantees if g.kind is GranteeKind.ACCOUNT)
    orgs = sorted((g for g in grantees if g.kind is not GranteeKind.ACCOUNT),
                  key=lambda g: g.org_path)
    out: list[dict[str, Any]] = []
    if accounts:
        aws = [f"arn:{partition}:iam::{a}:root" for a in accounts]
        out.append({"Sid": SID_ACCOUNTS, "Effect": "Allow", "Principal": {"AWS": aws},
                    "Action": USE_ACTIONS, "Resource": "*"})
        out.append({"Sid": SID_ACCOUNTS_GRANT, "Effect": "Allow", "Principal": {"AWS": aws},
                    "Action": GRANT_ACTIONS, "Resource": "*", "Condition": GRANT_CONDITION})
    if orgs:
        if any(g.kind is GranteeKind.OU for g in orgs):
            cond: dict[str, Any] = {"ForAnyValue:StringLike": {ORG_PATHS_KEY: [g.org_path for g in orgs]}}
        else:
            cond = {"StringEquals": {ORG_ID_KEY: [g.value for g in orgs]}}
        out.append({"Sid": SID_ORGS, "Effect": "Allow", "Principal": "*", "Action": USE_ACTIONS,
                    "Resource": "*", "Condition": cond})
        out.append({"Sid": SID_ORGS_GRANT, "Effect": "Allow", "Principal": "*",
                    "Action": GRANT_ACTIONS, "Resource": "*", "Condition": {**cond, **GRANT_CONDITION}})
    return out


def with_grantees(policy: Mapping[str, Any], grantees: Iterable[Grantee],
                  partition: str) -> dict[str, Any]:
    """The policy with the tool's statements rewritten for ``grantees``.

    Foreign statements keep their content and relative order; the tool's statements follow
    them (an empty grantee set removes them).
    """
    foreign = [st for st in policy.get("Statement", []) if st.get("Sid") not in OWNED_SIDS]
    new = dict(policy)
    new["Statement"] = foreign + _statements(set(grantees), partition)
    return new


def policy_bytes(policy: Mapping[str, Any]) -> int:
    return len(serialize(policy).encode())


def serialize(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2)


def _covers(actions: Sequence[str], wanted: Sequence[str]) -> bool:
    acts = {a.lower() for a in actions}
    if "*" in acts or "kms:*" in acts:
        return True
    return all(w.lower() in acts for w in wanted)


def foreign_allows(policy: Mapping[str, Any], account: str) -> bool:
    """True when statements the tool does not own already give ``account`` everything its
    own statements would (unconditional Allow of the use and grant actions)."""
    use = grant = False
    for st in policy.get("Statement", []):
        if st.get("Sid") in OWNED_SIDS or st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal")
        if not isinstance(principal, dict):
            continue
        if account not in {_account_of(str(v)) for v in _as_list(principal.get("AWS"))}:
            continue
        actions = [str(a) for a in _as_list(st.get("Action"))]
        if st.get("Condition"):
            grant = grant or (_covers(actions, GRANT_ACTIONS)
                              and st["Condition"] == GRANT_CONDITION)
            continue
        use = use or _covers(actions, USE_ACTIONS)
        grant = grant or _covers(actions, GRANT_ACTIONS)
    return use and grant


def has_deny(policy: Mapping[str, Any]) -> bool:
    return any(st.get("Effect") == "Deny" for st in policy.get("Statement", []))


@dataclass(frozen=True)
class KeyInfo:
    """What the reader learned about one KMS key."""

    key_id: str  # as the snapshot names it (usually the key ARN)
    region: str
    arn: str = ""
    account: str = ""
    manager: str = ""  # CUSTOMER or AWS
    state: str = ""
    alias: str = ""
    policy: str | None = None
    error: str = ""  # why the key (or its policy) could not be read

    @property
    def label(self) -> str:
        return f"{self.arn or self.key_id} ({self.alias})" if self.alias else (self.arn or self.key_id)
