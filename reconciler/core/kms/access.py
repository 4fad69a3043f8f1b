"""Access: one reading of a key policy for every question of the form "does this key let
that grantee in", asked by the planner and by ``explain``."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .grantees import (
    GRANT_ACTIONS,
    GRANT_CONDITION,
    ORG_ID_KEY,
    ORG_PATH_PATTERN,
    ORG_PATHS_KEY,
    OU_PATH_PATTERN,
    OWNED_SIDS,
    USE_ACTIONS,
    Grantee,
    GranteeKind,
    GrantShape,
    account_of,
    as_list,
    covers,
)

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
    named = [str(v) for entry in values for v in as_list(entry)]
    return "*" in named, frozenset(a for v in named if (a := account_of(v)) is not None)


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
    actions = tuple(str(a) for a in as_list(st.get("Action")))
    return _Statement(sid, owned, everyone, accounts, orgs, actions, grant_only is not None)


def _org_condition(cond: Mapping[str, Any]) -> tuple[Grantee, ...] | None:
    """The organizations and OUs a condition of exactly one organization test names (None:
    it is not such a condition). Only the org-path patterns the tool itself writes count:
    an organization's ``o-…/*`` or an OU's ``o-…/*/ou-…/*`` (a pattern with ?, [..] or
    deeper wildcards covers less than it seems)."""
    if list(cond) == ["StringEquals"] and list(cond["StringEquals"]) == [ORG_ID_KEY]:
        return tuple(Grantee(GranteeKind.ORG, str(v))
                     for v in as_list(cond["StringEquals"][ORG_ID_KEY]))
    if list(cond) == ["ForAnyValue:StringLike"] and list(cond["ForAnyValue:StringLike"]) == [
            ORG_PATHS_KEY]:
        out = []
        for p in map(str, as_list(cond["ForAnyValue:StringLike"][ORG_PATHS_KEY])):
            if (m := ORG_PATH_PATTERN.fullmatch(p)) is not None:
                out.append(Grantee(GranteeKind.ORG, m.group(1)))
            elif OU_PATH_PATTERN.fullmatch(p):
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
    grants = covers(st.actions, GRANT_ACTIONS)
    shape = (GrantShape.AWS_RESOURCE if st.grant_only else GrantShape.ANY) if grants else None
    use = not st.grant_only and covers(st.actions, USE_ACTIONS)
    if not use and shape is None:
        return None
    return Allow(st.sid, st.owned, use, shape, within)


def _action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _deny_statement(st: Mapping[str, Any], sid: str, owned: bool) -> _Statement | None:
    if "NotAction" in st:
        kept = [str(a) for a in as_list(st.get("NotAction"))]
        denied = [c for c in CONSUMER_ACTIONS if not any(_action_matches(a, c) for a in kept)]
    else:
        patterns = [str(a) for a in as_list(st.get("Action"))]
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
