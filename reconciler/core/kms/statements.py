"""The four statements the tool owns in a key policy: reading them back (refusing what was
edited into a shape it cannot rewrite safely), writing them for a set of grantees, and the
policy's size as KMS measures it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .grantees import (
    GRANT_ACTIONS,
    GRANT_CONDITION,
    ORG_ID_KEY,
    ORG_ID_PATTERN,
    ORG_PATH_PATTERN,
    ORG_PATHS_KEY,
    OU_PATH_PATTERN,
    OWNED_SIDS,
    SID_ACCOUNTS,
    SID_ACCOUNTS_GRANT,
    SID_ORGS,
    SID_ORGS_GRANT,
    USE_ACTIONS,
    Grantee,
    GranteeKind,
    GrantShape,
    PolicyError,
    account_of,
    as_list,
)


def _tampered(sid: str, why: str) -> PolicyError:
    return PolicyError(f"statement {sid} is not in the shape the tool writes ({why}); it may "
                       "have been edited by hand, so the tool will not rewrite it")


def _strings(sid: str, value: Any, what: str) -> list[str]:
    values = as_list(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise _tampered(sid, f"{what} must be a non-empty list of strings")
    return values


def _accounts_statement(st: Mapping[str, Any], sid: str) -> set[Grantee]:
    principal = st.get("Principal")
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        raise _tampered(sid, "Principal must be {\"AWS\": [account roots]}")
    out = set()
    for v in _strings(sid, principal["AWS"], "Principal.AWS"):
        acct = account_of(v)
        if acct is None:
            raise _tampered(sid, f"principal {v!r} is not an account root")
        out.add(Grantee(GranteeKind.ACCOUNT, acct))
    return out


def _orgs_statement(st: Mapping[str, Any], sid: str) -> set[Grantee]:
    if st.get("Principal") not in ("*", {"AWS": "*"}):
        raise _tampered(sid, 'Principal must be "*" with an organization condition')
    cond = st.get("Condition")
    expected_ops = {"StringEquals", "ForAnyValue:StringLike"}
    if sid == SID_ORGS_GRANT:
        expected_ops.add("Bool")
    if not isinstance(cond, dict) or not set(cond) <= expected_ops or not all(
            isinstance(v, dict) for v in cond.values()):
        raise _tampered(sid, "unexpected Condition")
    if sid == SID_ORGS_GRANT and "Bool" in cond and cond["Bool"] != GRANT_CONDITION["Bool"]:
        raise _tampered(sid, "its Bool condition is not kms:GrantIsForAWSResource: true")
    ids = cond.get("StringEquals")
    paths = cond.get("ForAnyValue:StringLike")
    if (ids is None) == (paths is None):
        raise _tampered(sid, f"exactly one of {ORG_ID_KEY} and {ORG_PATHS_KEY} is expected")
    out = set()
    if ids is not None:
        if set(ids) != {ORG_ID_KEY}:
            raise _tampered(sid, f"StringEquals may only test {ORG_ID_KEY}")
        for v in _strings(sid, ids[ORG_ID_KEY], ORG_ID_KEY):
            if not ORG_ID_PATTERN.fullmatch(v):
                raise _tampered(sid, f"{v!r} is not an organization ID")
            out.add(Grantee(GranteeKind.ORG, v))
    else:
        assert paths is not None
        if set(paths) != {ORG_PATHS_KEY}:
            raise _tampered(sid, f"ForAnyValue:StringLike may only test {ORG_PATHS_KEY}")
        for v in _strings(sid, paths[ORG_PATHS_KEY], ORG_PATHS_KEY):
            m = ORG_PATH_PATTERN.fullmatch(v)
            if m:
                out.add(Grantee(GranteeKind.ORG, m.group(1)))
            elif OU_PATH_PATTERN.fullmatch(v):
                out.add(Grantee(GranteeKind.OU, v))
            else:
                raise _tampered(sid, f"{v!r} is not an organization or OU path")
    return out


def owned_grantees(policy: Mapping[str, Any]) -> set[Grantee]:
    """Grantees currently named by the tool's own statements.

    Raises :class:`PolicyError` when one of those statements is not exactly in a shape the
    tool writes (wrong Effect, Principal, Action, Resource or Condition): rewriting it
    could silently drop a grant somebody added by hand, so the key is left alone instead.
    Both grant shapes (:class:`GrantShape`) are the tool's own.
    """
    use, grant = statement_grantees(policy)
    return use | grant


def statement_grantees(policy: Mapping[str, Any]) -> tuple[set[Grantee], set[Grantee]]:
    """The grantees of the tool's use statements and of its grant statements (see
    :func:`owned_grantees` for when a statement is refused)."""
    use: set[Grantee] = set()
    grant_side: set[Grantee] = set()
    for st in policy.get("Statement", []):
        sid = st.get("Sid")
        if sid not in OWNED_SIDS:
            continue
        grant = sid in (SID_ACCOUNTS_GRANT, SID_ORGS_GRANT)
        if st.get("Effect") != "Allow" or st.get("Resource") != "*" or sorted(
                as_list(st.get("Action"))) != sorted(GRANT_ACTIONS if grant else USE_ACTIONS):
            raise _tampered(sid, "Effect, Action or Resource differs")
        out = grant_side if grant else use
        if sid in (SID_ACCOUNTS, SID_ACCOUNTS_GRANT):
            if st.get("Condition") not in ((GRANT_CONDITION, None) if grant else (None,)):
                raise _tampered(sid, "unexpected Condition")
            out |= _accounts_statement(st, sid)
        else:
            out |= _orgs_statement(st, sid)
    return use, grant_side


def grant_shapes(policy: Mapping[str, Any]) -> set[GrantShape]:
    """The shapes of the tool's grant statements in ``policy`` (empty: none there)."""
    out = set()
    for st in policy.get("Statement", []):
        if st.get("Sid") in (SID_ACCOUNTS_GRANT, SID_ORGS_GRANT):
            cond = st.get("Condition")
            conditioned = isinstance(cond, dict) and cond.get("Bool") == GRANT_CONDITION["Bool"]
            out.add(GrantShape.AWS_RESOURCE if conditioned else GrantShape.ANY)
    return out


def _statements(grantees: Iterable[Grantee], partition: str,
                shape: GrantShape = GrantShape.AWS_RESOURCE) -> list[dict[str, Any]]:
    accounts = sorted(g.value for g in grantees if g.kind is GranteeKind.ACCOUNT)
    orgs = sorted((g for g in grantees if g.kind is not GranteeKind.ACCOUNT),
                  key=lambda g: g.org_path)
    out: list[dict[str, Any]] = []
    if accounts:
        aws = [f"arn:{partition}:iam::{a}:root" for a in accounts]
        out.append({"Sid": SID_ACCOUNTS, "Effect": "Allow", "Principal": {"AWS": aws},
                    "Action": USE_ACTIONS, "Resource": "*"})
        grant: dict[str, Any] = {"Sid": SID_ACCOUNTS_GRANT, "Effect": "Allow",
                                 "Principal": {"AWS": aws}, "Action": GRANT_ACTIONS,
                                 "Resource": "*"}
        if shape is GrantShape.AWS_RESOURCE:
            grant["Condition"] = GRANT_CONDITION
        out.append(grant)
    if orgs:
        if any(g.kind is GranteeKind.OU for g in orgs):
            cond: dict[str, Any] = {"ForAnyValue:StringLike": {ORG_PATHS_KEY: [g.org_path for g in orgs]}}
        else:
            cond = {"StringEquals": {ORG_ID_KEY: [g.value for g in orgs]}}
        out.append({"Sid": SID_ORGS, "Effect": "Allow", "Principal": "*", "Action": USE_ACTIONS,
                    "Resource": "*", "Condition": cond})
        grant_cond = {**cond, **GRANT_CONDITION} if shape is GrantShape.AWS_RESOURCE else cond
        out.append({"Sid": SID_ORGS_GRANT, "Effect": "Allow", "Principal": "*",
                    "Action": GRANT_ACTIONS, "Resource": "*", "Condition": grant_cond})
    return out


def with_grantees(policy: Mapping[str, Any], grantees: Iterable[Grantee], partition: str,
                  shape: GrantShape = GrantShape.AWS_RESOURCE) -> dict[str, Any]:
    """The policy with the tool's statements rewritten for ``grantees``, grant statements
    in ``shape``.

    Foreign statements keep their content and relative order; the tool's statements follow
    them (an empty grantee set removes them).
    """
    foreign = [st for st in policy.get("Statement", []) if st.get("Sid") not in OWNED_SIDS]
    new = dict(policy)
    new["Statement"] = foreign + _statements(set(grantees), partition, shape)
    return new


def policy_bytes(policy: Mapping[str, Any]) -> int:
    return len(serialize(policy).encode())


def serialize(policy: Mapping[str, Any]) -> str:
    """The policy as sent to KMS, and as its 32 KB limit measures it: compact JSON."""
    return json.dumps(policy, separators=(",", ":"))
