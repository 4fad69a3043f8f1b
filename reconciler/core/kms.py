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
import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import (
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


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


_ROOT_ARN = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):root", re.ASCII)
_ORG_ID = re.compile(ORG_ID_RE, re.ASCII)
_ORG_PATH = re.compile(rf"({ORG_ID_RE})/\*", re.ASCII)
_OU_PATH = re.compile(rf"{ORG_ID_RE}/\*/{OU_ID_RE}/\*", re.ASCII)


def _account_of(value: str) -> str | None:
    if ACCOUNT_ID_RE.fullmatch(value):
        return value
    m = _ROOT_ARN.fullmatch(value)
    return m.group(1) if m else None


def _tampered(sid: str, why: str) -> PolicyError:
    return PolicyError(f"statement {sid} is not in the shape the tool writes ({why}); it may "
                       "have been edited by hand, so the tool will not rewrite it")


def _strings(sid: str, value: Any, what: str) -> list[str]:
    values = _as_list(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise _tampered(sid, f"{what} must be a non-empty list of strings")
    return values


def _accounts_statement(st: Mapping[str, Any], sid: str) -> set[Grantee]:
    principal = st.get("Principal")
    if not isinstance(principal, dict) or set(principal) != {"AWS"}:
        raise _tampered(sid, "Principal must be {\"AWS\": [account roots]}")
    out = set()
    for v in _strings(sid, principal["AWS"], "Principal.AWS"):
        acct = _account_of(v)
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
            if not _ORG_ID.fullmatch(v):
                raise _tampered(sid, f"{v!r} is not an organization ID")
            out.add(Grantee(GranteeKind.ORG, v))
    else:
        assert paths is not None
        if set(paths) != {ORG_PATHS_KEY}:
            raise _tampered(sid, f"ForAnyValue:StringLike may only test {ORG_PATHS_KEY}")
        for v in _strings(sid, paths[ORG_PATHS_KEY], ORG_PATHS_KEY):
            m = _ORG_PATH.fullmatch(v)
            if m:
                out.add(Grantee(GranteeKind.ORG, m.group(1)))
            elif _OU_PATH.fullmatch(v):
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
                _as_list(st.get("Action"))) != sorted(GRANT_ACTIONS if grant else USE_ACTIONS):
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


def _covers(actions: Sequence[str], wanted: Sequence[str]) -> bool:
    acts = {a.lower() for a in actions}
    if "*" in acts or "kms:*" in acts:
        return True
    return all(w.lower() in acts for w in wanted)


# --------------------------------------------------------------------------- evaluation
# One reading of a key policy for everything that asks "does this key let that grantee in":
# the planner (is a grantee already served by someone else's statements? which Deny
# statements may refuse consumers?) and ``explain`` (can this principal launch?). A
# statement counts for what the owner account can know of it: whom it names (an account,
# or everyone), on which organization condition, and nothing else — any other condition
# cannot be evaluated from the owner account, so such an Allow serves nobody and such a
# Deny is reported as one that *may* refuse.

# What a consumer's launch or copy asks of the key (EBS on its behalf), as concrete actions.
CONSUMER_ACTIONS = ("kms:Decrypt", "kms:DescribeKey", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                    "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:CreateGrant")


@dataclass(frozen=True)
class Allow:
    """A statement letting a grantee do (part of) what the tool's statements let it do."""

    sid: str  # its Sid, or "statement #n"
    owned: bool  # one of the tool's own statements
    use: bool  # kms:Decrypt, kms:DescribeKey, kms:ReEncrypt*, kms:GenerateDataKey*
    # kms:CreateGrant, ListGrants, RevokeGrant: ANY for any grantee principal, AWS_RESOURCE
    # only for the grants AWS services create on the caller's behalf; None: not allowed
    grant: GrantShape | None
    within: tuple[Grantee, ...] = ()  # it applies if the grantee is in one of these ((): always)


@dataclass(frozen=True)
class Refusal:
    """A Deny statement that matches a grantee and denies what a launch or copy needs."""

    sid: str
    actions: tuple[str, ...]  # the consumer actions it denies
    conditional: bool  # it has a Condition (not evaluated: the owner account cannot)
    principal_unsure: bool = False  # NotPrincipal (or no Principal): whom it spares is unknown

    @property
    def definite(self) -> bool:
        """It refuses the grantee whatever the request: launches fail."""
        return not self.conditional and not self.principal_unsure


@dataclass(frozen=True)
class KeyAccess:
    """What a key policy says about one grantee."""

    grantee: Grantee
    allows: tuple[Allow, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    def _counted(self, foreign_only: bool, member_of: Grantee | None) -> list[Allow]:
        return [a for a in self.allows if not (foreign_only and a.owned) and (
            not a.within or (member_of is not None and any(inside(member_of, w)
                                                           for w in a.within)))]

    def served(self, shape: GrantShape = GrantShape.AWS_RESOURCE, *, foreign_only: bool = False,
               member_of: Grantee | None = None) -> bool:
        """Whether the Allow statements give the grantee everything the tool's statements
        of ``shape`` give it: unconditionally, or — with ``member_of`` — once it belongs to
        that organization or OU. ``foreign_only``: counting only statements the tool does
        not own."""
        counted = self._counted(foreign_only, member_of)
        use = any(a.use for a in counted)
        grant = any(a.grant is GrantShape.ANY or a.grant is shape for a in counted)
        return use and grant

    def serving(self, shape: GrantShape = GrantShape.AWS_RESOURCE,
                member_of: Grantee | None = None) -> tuple[Allow, ...]:
        """The statements that make :meth:`served` true (empty when it is not)."""
        if not self.served(shape, member_of=member_of):
            return ()
        return tuple(a for a in self._counted(False, member_of)
                     if a.use or a.grant is GrantShape.ANY or a.grant is shape)

    def memberships(self, shape: GrantShape = GrantShape.AWS_RESOURCE) -> tuple[Grantee, ...]:
        """The organizations and OUs whose members the key lets in (for an account that is
        not served unconditionally: the conditions under which it is)."""
        named = sorted({w for a in self.allows for w in a.within})
        return tuple(w for w in named if self.served(shape, member_of=w))


def inside(member_of: Grantee, w: Grantee) -> bool:
    """Whether every member of ``member_of`` (an organization or OU) is in ``w``."""
    return member_of == w or (w.kind is GranteeKind.ORG
                              and member_of.value.split("/")[0] == w.value)


@dataclass(frozen=True)
class _Statement:
    """One statement, read once for every grantee asked about."""

    sid: str
    owned: bool
    everyone: bool  # Principal "*"
    accounts: frozenset[str]  # the accounts it names (root ARNs or IDs)
    orgs: tuple[Grantee, ...] | None  # its organization condition (None: it has none)
    actions: tuple[str, ...]  # Allow: its Action; Deny: the consumer actions it denies
    grant_only: bool = False  # Allow: only with kms:GrantIsForAWSResource
    conditional: bool = False  # Deny: it has a Condition
    principal_unsure: bool = False  # Deny: NotPrincipal or no Principal


@dataclass(frozen=True)
class KeyPolicyView:
    """A key policy read for access questions (see :func:`evaluate`)."""

    allows: tuple[_Statement, ...]
    denies: tuple[_Statement, ...]

    def access(self, g: Grantee) -> KeyAccess:
        """Which statements allow ``g`` what, on which organization condition, and which
        Deny statements match it."""
        allows = tuple(a for st in self.allows if (a := _allow_for(st, g)) is not None)
        return KeyAccess(g, allows, self.refusals([g]))

    def refusals(self, grantees: Iterable[Grantee]) -> tuple[Refusal, ...]:
        """The Deny statements matching any of ``grantees`` (or everyone), in policy order:
        a Deny naming one account matches that account only."""
        accounts = {g.value for g in grantees if g.kind is GranteeKind.ACCOUNT}
        return tuple(Refusal(st.sid, st.actions, st.conditional, st.principal_unsure)
                     for st in self.denies
                     if st.everyone or st.principal_unsure or st.accounts & accounts)


def evaluate(policy: Mapping[str, Any]) -> KeyPolicyView:
    """Read ``policy`` (as :func:`parse_policy` returns it) once for access questions. Never
    raises: a statement IAM would not accept serves nobody and refuses nobody."""
    allows, denies = [], []
    for n, st in enumerate(policy.get("Statement", []), start=1):
        sid = st.get("Sid")
        label = str(sid) if sid else f"statement #{n}"
        owned = sid in OWNED_SIDS
        if st.get("Effect") == "Allow":
            read = _allow_statement(st, label, owned)
            if read is not None:
                allows.append(read)
        elif st.get("Effect") == "Deny":
            read = _deny_statement(st, label, owned)
            if read is not None:
                denies.append(read)
    return KeyPolicyView(tuple(allows), tuple(denies))


def access(policy: Mapping[str, Any], g: Grantee) -> KeyAccess:
    """What ``policy`` says about ``g``: :meth:`KeyPolicyView.access` of :func:`evaluate`."""
    return evaluate(policy).access(g)


def _principals(principal: Any, aws_only: bool) -> tuple[bool, frozenset[str]]:
    """(names everyone, the accounts it names) of a Principal element; ``aws_only``: read
    its ``AWS`` entry only (an Allow), else every entry (a Deny may match from any)."""
    if principal == "*":
        return True, frozenset()
    if not isinstance(principal, dict):
        return False, frozenset()
    values = [principal.get("AWS")] if aws_only else list(principal.values())
    named = [str(v) for entry in values for v in _as_list(entry)]
    return "*" in named, frozenset(a for v in named if (a := _account_of(v)) is not None)


def _allow_statement(st: Mapping[str, Any], sid: str, owned: bool) -> _Statement | None:
    if "NotPrincipal" in st or "NotAction" in st:
        return None  # not a shape a consumer's access is written in: it serves nobody
    everyone, accounts = _principals(st.get("Principal"), aws_only=True)
    if not everyone and not accounts:
        return None
    raw = st.get("Condition") or {}
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        return None  # not a condition block IAM would accept: it serves nobody here
    cond = dict(raw)
    grant_only = cond.pop("Bool", None)
    if grant_only is not None and grant_only != GRANT_CONDITION["Bool"]:
        return None
    orgs = _org_condition(cond) if cond else None
    if cond and orgs is None:
        return None  # a condition the owner account cannot evaluate
    actions = tuple(str(a) for a in _as_list(st.get("Action")))
    return _Statement(sid, owned, everyone, accounts, orgs, actions, grant_only is not None)


def _org_condition(cond: Mapping[str, Any]) -> tuple[Grantee, ...] | None:
    """The organizations and OUs a condition of exactly one organization test names (None:
    it is not such a condition). Only the org-path patterns the tool itself writes count:
    an organization's ``o-…/*`` or an OU's ``o-…/*/ou-…/*`` (a pattern with ?, [..] or
    deeper wildcards covers less than it seems)."""
    if list(cond) == ["StringEquals"] and list(cond["StringEquals"]) == [ORG_ID_KEY]:
        return tuple(Grantee(GranteeKind.ORG, str(v))
                     for v in _as_list(cond["StringEquals"][ORG_ID_KEY]))
    if list(cond) == ["ForAnyValue:StringLike"] and list(cond["ForAnyValue:StringLike"]) == [
            ORG_PATHS_KEY]:
        out = []
        for p in map(str, _as_list(cond["ForAnyValue:StringLike"][ORG_PATHS_KEY])):
            if (m := _ORG_PATH.fullmatch(p)) is not None:
                out.append(Grantee(GranteeKind.ORG, m.group(1)))
            elif _OU_PATH.fullmatch(p):
                out.append(Grantee(GranteeKind.OU, p))
        return tuple(out)
    return None


def _allow_for(st: _Statement, g: Grantee) -> Allow | None:
    """What statement ``st`` allows ``g`` (None: nothing)."""
    if g.kind is GranteeKind.ACCOUNT:
        if not (st.everyone or g.value in st.accounts):
            return None
        within = st.orgs or ()  # an account is let in by an organization condition if in it
        if st.orgs is not None and not within:
            return None
    elif not st.everyone:
        return None  # a statement naming accounts says nothing of a whole organization
    elif st.orgs is None:
        within = ()
    elif any(inside(g, w) for w in st.orgs):
        within = ()  # the organization or OU is the condition (or inside it)
    else:
        return None
    grants = _covers(st.actions, GRANT_ACTIONS)
    shape = (GrantShape.AWS_RESOURCE if st.grant_only else GrantShape.ANY) if grants else None
    use = not st.grant_only and _covers(st.actions, USE_ACTIONS)
    if not use and shape is None:
        return None
    return Allow(st.sid, st.owned, use, shape, within)


def _action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _deny_statement(st: Mapping[str, Any], sid: str, owned: bool) -> _Statement | None:
    if "NotAction" in st:
        kept = [str(a) for a in _as_list(st.get("NotAction"))]
        denied = [c for c in CONSUMER_ACTIONS if not any(_action_matches(a, c) for a in kept)]
    else:
        patterns = [str(a) for a in _as_list(st.get("Action"))]
        denied = [c for c in CONSUMER_ACTIONS if any(_action_matches(a, c) for a in patterns)]
    if not denied:
        return None
    unsure = "NotPrincipal" in st or "Principal" not in st or not (
        st["Principal"] == "*" or isinstance(st["Principal"], dict))
    everyone, accounts = _principals(st.get("Principal"), aws_only=False)
    return _Statement(sid, owned, everyone, accounts, None, tuple(denied),
                      conditional=bool(st.get("Condition")), principal_unsure=unsure)


def foreign_allows_grantee(policy: Mapping[str, Any], g: Grantee,
                           shape: GrantShape = GrantShape.AWS_RESOURCE) -> bool:
    """Whether statements the tool does not own already give ``g`` — unconditionally —
    everything its own statements would (grant statements of ``shape``): an account named
    or everyone; an organization or OU through ``Principal: "*"`` on an organization
    condition naming it (or its organization)."""
    return access(policy, g).served(shape, foreign_only=True)


class KeyManager(enum.StrEnum):
    """``KeyMetadata.KeyManager`` of DescribeKey: who manages a key (and so its policy)."""

    AWS = "AWS"  # aws/ebs and other AWS managed keys: the policy cannot be changed
    CUSTOMER = "CUSTOMER"

    @classmethod
    def parse(cls, value: object) -> KeyManager | None:
        """The manager DescribeKey reported (None when absent or unknown)."""
        return next((m for m in cls if m.value == value), None)


@dataclass(frozen=True)
class KeyInfo:
    """What the reader learned about one KMS key."""

    key_id: str  # as the snapshot names it (usually the key ARN)
    region: str
    arn: str = ""
    account: str = ""
    manager: KeyManager | None = None  # None: unread, or a kind DescribeKey added since
    state: str = ""
    alias: str = ""
    policy: str | None = None
    error: str = ""  # why the key (or its policy) could not be read
    error_code: str = ""  # AWS's error code for that failure ("" if not AWS-shaped)

    @property
    def label(self) -> str:
        return f"{self.arn or self.key_id} ({self.alias})" if self.alias else (self.arn or self.key_id)

    # The policy is parsed once per key and run (plan, explain and export all ask): a
    # KeyInfo is frozen, so the parsed form, kept beside it, never goes stale.
    @functools.cached_property
    def _parsed(self) -> dict[str, Any] | PolicyError:
        try:
            return parse_policy(self.policy or "{}")
        except PolicyError as exc:
            return exc

    def document(self) -> dict[str, Any]:
        """The key policy as :func:`parse_policy` reads it ({} when it was not read); raises
        :class:`PolicyError` when it cannot be read. Callers never change it."""
        parsed = self._parsed
        if isinstance(parsed, PolicyError):
            raise parsed
        return parsed

    @functools.cached_property
    def evaluation(self) -> KeyPolicyView:
        """:func:`evaluate` of :meth:`document` (raises :class:`PolicyError` likewise)."""
        return evaluate(self.document())
