"""Key-policy safety properties of :mod:`reconciler.core.kms` (README, "Encrypted AMIs and KMS"), checked with hypothesis.

The tool owns exactly four statements (``kms.OWNED_SIDS``) and must never change any other
statement: not its content, not its relative order. Its own statements must describe exactly
the grantees it was given, never AND ``aws:PrincipalOrgID`` with ``aws:PrincipalOrgPaths``,
and a policy whose owned statements were tampered with must be refused (PolicyError), so the
planner refuses to edit the key rather than silently rewriting someone else's grant.

Known product bugs are kept as ``xfail(strict=True)`` tests with explicit inputs.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core import kms
from reconciler.core.kms import Grantee, GranteeKind, PolicyError
from reconciler.core.model import Principal, PrincipalKind

PROPS = settings(max_examples=50, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ONE_ACCOUNT = Grantee(GranteeKind.ACCOUNT, "111122223333")
PARTITIONS = st.sampled_from(["aws", "aws-cn", "aws-us-gov"])
ROOT_RE = re.compile(r"arn:[a-z-]+:iam::([0-9]{12}):root", re.ASCII)

# --------------------------------------------------------------------------- grantees

DIGITS = "0123456789"
LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
account_ids = st.text(DIGITS, min_size=12, max_size=12)  # leading zeros included
org_ids = st.text(LOWER_ALNUM, min_size=10, max_size=32).map(lambda s: f"o-{s}")
ou_ids = st.builds(lambda a, b: f"ou-{a}-{b}", st.text(LOWER_ALNUM, min_size=4, max_size=32),
                   st.text(LOWER_ALNUM, min_size=8, max_size=32))
management = account_ids


@st.composite
def principals(draw: st.DrawFn) -> Principal:
    """A launch/copy principal as the manifest would hold it (never public)."""
    kind = draw(st.sampled_from(["account", "org", "ou"]))
    partition = draw(PARTITIONS)
    if kind == "account":
        return Principal.account(draw(account_ids))
    if kind == "org":
        arn = f"arn:{partition}:organizations::{draw(management)}:organization/{draw(org_ids)}"
        return Principal(PrincipalKind.ORGANIZATION, arn)
    return Principal(PrincipalKind.OU, f"arn:{partition}:organizations::{draw(management)}:ou/"
                                       f"{draw(org_ids)}/{draw(ou_ids)}")


def _grantee(p: Principal) -> Grantee:
    g = kms.grantee_of(p)
    assert g is not None
    return g


grantee_sets = st.frozensets(principals().map(_grantee), max_size=8)
nonempty_grantee_sets = st.frozensets(principals().map(_grantee), min_size=1, max_size=8)


@st.composite
def orgs_and_ous(draw: st.DrawFn) -> frozenset[Grantee]:
    """At least one organization and at least one OU (plus maybe accounts)."""
    orgs = draw(st.frozensets(org_ids, min_size=1, max_size=4))
    ous = draw(st.frozensets(st.tuples(org_ids, ou_ids), min_size=1, max_size=4))
    accounts = draw(st.frozensets(account_ids, max_size=3))
    return frozenset({Grantee(GranteeKind.ORG, o) for o in orgs}
                     | {Grantee(GranteeKind.OU, f"{o}/*/{u}/*") for o, u in ous}
                     | {Grantee(GranteeKind.ACCOUNT, a) for a in accounts})


# --------------------------------------------------------------------------- foreign policies

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=5)

# Sids the tool must treat as foreign: anything but the four exact owned strings, including
# near misses (case, whitespace, prefixes), non-strings and a missing Sid.
near_misses = st.sampled_from([s.lower() for s in kms.OWNED_SIDS]
                              + [s + " " for s in kms.OWNED_SIDS]
                              + [" " + s for s in kms.OWNED_SIDS]
                              + [s + "2" for s in kms.OWNED_SIDS]
                              + ["AmiShareReconciler", "AmiShareReconcilerAccountsGrants",
                                 "EnableRootPermissions", "BackupVault", ""])
foreign_sids = st.one_of(st.text(max_size=40), near_misses, st.integers(), st.none(),
                         st.lists(st.sampled_from(kms.OWNED_SIDS), max_size=2)
                         ).filter(lambda s: not (isinstance(s, str) and s in kms.OWNED_SIDS))

principal_shapes = st.one_of(
    st.just("*"),
    st.fixed_dictionaries({"AWS": st.one_of(
        st.just("*"), account_ids.map(lambda a: f"arn:aws:iam::{a}:root"),
        st.lists(st.one_of(account_ids, account_ids.map(lambda a: f"arn:aws:iam::{a}:role/r"),
                           st.text(max_size=20)), max_size=4))}),
    st.fixed_dictionaries({"Service": st.sampled_from(["ec2.amazonaws.com",
                                                       "backup.amazonaws.com"])}),
    json_values,
)
action_shapes = st.one_of(st.sampled_from(["kms:*", "*", "kms:Decrypt"]),
                          st.lists(st.sampled_from(kms.USE_ACTIONS + kms.GRANT_ACTIONS
                                                   + ["kms:Encrypt", "kms:PutKeyPolicy"]),
                                   max_size=5),
                          json_values)
condition_shapes = st.one_of(
    st.dictionaries(st.sampled_from(["StringEquals", "StringLike", "ForAnyValue:StringLike",
                                     "Bool", "ArnLike"]),
                    st.dictionaries(st.sampled_from([kms.ORG_ID_KEY, kms.ORG_PATHS_KEY,
                                                     "kms:GrantIsForAWSResource", "aws:SourceArn",
                                                     "kms:CallerAccount"]),
                                    st.one_of(st.text(max_size=20), st.booleans(),
                                              st.lists(st.text(max_size=20), max_size=3)),
                                    max_size=3),
                    max_size=3),
    json_values,
)


@st.composite
def foreign_statements(draw: st.DrawFn) -> dict[str, Any]:
    st_: dict[str, Any] = {}
    sid = draw(foreign_sids)
    if sid is not None or draw(st.booleans()):
        st_["Sid"] = sid
    for key, strategy in (("Effect", st.one_of(st.sampled_from(["Allow", "Deny"]), json_values)),
                          ("Principal", principal_shapes), ("NotPrincipal", principal_shapes),
                          ("Action", action_shapes), ("NotAction", action_shapes),
                          ("Resource", st.one_of(st.just("*"), json_values)),
                          ("Condition", condition_shapes)):
        if draw(st.integers(0, 3)) > (2 if key.startswith("Not") else 0):
            st_[key] = draw(strategy)
    for extra in draw(st.lists(st.text(max_size=8), max_size=2)):
        st_.setdefault(extra, draw(json_values))
    return st_


@st.composite
def policies(draw: st.DrawFn, with_owned: bool = True) -> dict[str, Any]:
    """A foreign policy, possibly already holding (valid) owned statements for other grantees."""
    statements = draw(st.lists(foreign_statements(), max_size=4))
    if with_owned and draw(st.booleans()):
        previous = kms.with_grantees({"Statement": []}, draw(grantee_sets),
                                     draw(PARTITIONS))["Statement"]
        for s in previous:  # scattered at random places, as someone may have reordered them
            statements.insert(draw(st.integers(0, len(statements))), s)
    policy: dict[str, Any] = {"Statement": statements}
    if draw(st.booleans()):
        policy["Version"] = "2012-10-17"
    if draw(st.booleans()):
        policy["Id"] = draw(st.text(max_size=20))
    return policy


def is_owned(statement: dict[str, Any]) -> bool:
    sid = statement.get("Sid")
    return isinstance(sid, str) and sid in kms.OWNED_SIDS


def foreign_of(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy.get("Statement", []) if not is_owned(s)]


def owned_of(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy.get("Statement", []) if is_owned(s)]


def condition_keys(statement: dict[str, Any]) -> set[str]:
    cond = statement.get("Condition") or {}
    return {k for block in cond.values() if isinstance(block, dict) for k in block}


# --------------------------------------------------------------------------- with_grantees


@PROPS
@given(policy=policies(), grantees=grantee_sets, partition=PARTITIONS)
def test_foreign_statements_are_kept_identical_and_in_order(policy: dict[str, Any],
                                                            grantees: frozenset[Grantee],
                                                            partition: str) -> None:
    before = copy.deepcopy(policy)
    new = kms.with_grantees(policy, grantees, partition)
    assert policy == before, "with_grantees mutated its input"
    # same foreign statements, same content, same relative order
    assert foreign_of(new) == foreign_of(before)
    assert json.dumps(foreign_of(new)) == json.dumps(foreign_of(before))
    # the tool's statements follow every foreign one
    kinds = [is_owned(s) for s in new["Statement"]]
    assert kinds == sorted(kinds)
    # nothing else in the document changes
    assert {k: v for k, v in new.items() if k != "Statement"} == {
        k: v for k, v in before.items() if k != "Statement"}


@PROPS
@given(policy=policies(), grantees=grantee_sets, partition=PARTITIONS)
def test_round_trip_owned_grantees(policy: dict[str, Any], grantees: frozenset[Grantee],
                                   partition: str) -> None:
    new = kms.with_grantees(policy, grantees, partition)
    assert kms.owned_grantees(new) == set(grantees)
    # ... also through the text KMS stores and returns
    text = kms.serialize(new)
    assert kms.policy_bytes(new) == len(text.encode())
    reread = kms.parse_policy(text)
    assert reread == json.loads(text)
    assert kms.owned_grantees(reread) == set(grantees)


@PROPS
@given(policy=policies(), grantees=grantee_sets, other=grantee_sets, partition=PARTITIONS)
def test_with_grantees_is_idempotent_and_forgets_previous_grantees(
        policy: dict[str, Any], grantees: frozenset[Grantee], other: frozenset[Grantee],
        partition: str) -> None:
    once = kms.with_grantees(policy, grantees, partition)
    assert kms.with_grantees(once, grantees, partition) == once
    # the result depends only on the foreign part and the grantees, not on earlier grants
    via_other = kms.with_grantees(kms.with_grantees(policy, other, partition), grantees, partition)
    assert via_other == once
    # and not on the order the grantees come in
    assert kms.with_grantees(policy, sorted(grantees, reverse=True), partition) == once
    as_list = kms.with_grantees(policy, list(grantees), partition)
    assert kms.serialize(as_list) == kms.serialize(once)


@PROPS
@given(policy=policies(), partition=PARTITIONS)
def test_empty_grantee_set_removes_every_owned_statement(policy: dict[str, Any],
                                                         partition: str) -> None:
    new = kms.with_grantees(policy, [], partition)
    assert owned_of(new) == []
    assert new["Statement"] == foreign_of(policy)
    assert kms.owned_grantees(new) == set()


@PROPS
@given(policy=policies(), grantees=nonempty_grantee_sets, partition=PARTITIONS)
def test_owned_statements_have_the_documented_shape(policy: dict[str, Any],
                                                    grantees: frozenset[Grantee],
                                                    partition: str) -> None:
    new = kms.with_grantees(policy, grantees, partition)
    owned = {s["Sid"]: s for s in owned_of(new)}
    assert len(owned) == len(owned_of(new)), "an owned Sid appears twice"
    accounts = sorted(g.value for g in grantees if g.kind is GranteeKind.ACCOUNT)
    orgs = {g for g in grantees if g.kind is not GranteeKind.ACCOUNT}
    expected_sids = set()
    if accounts:
        expected_sids |= {kms.SID_ACCOUNTS, kms.SID_ACCOUNTS_GRANT}
    if orgs:
        expected_sids |= {kms.SID_ORGS, kms.SID_ORGS_GRANT}
    assert set(owned) == expected_sids
    for sid, s in owned.items():
        assert s["Effect"] == "Allow"
        assert s["Resource"] == "*"
        grant = sid.endswith("Grant")
        assert s["Action"] == (kms.GRANT_ACTIONS if grant else kms.USE_ACTIONS)
        if grant:
            assert s["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": True}
        if sid in (kms.SID_ACCOUNTS, kms.SID_ACCOUNTS_GRANT):
            roots = s["Principal"]["AWS"]
            assert roots == [f"arn:{partition}:iam::{a}:root" for a in accounts]
            assert all(ROOT_RE.fullmatch(r) for r in roots)
            assert "Condition" not in s or set(s["Condition"]) == {"Bool"}
        else:
            assert s["Principal"] == "*"  # only ever narrowed by the org condition
            assert condition_keys(s) & {kms.ORG_ID_KEY, kms.ORG_PATHS_KEY}


@PROPS
@given(policy=policies(), grantees=grantee_sets, partition=PARTITIONS)
def test_never_ands_org_id_with_org_paths(policy: dict[str, Any], grantees: frozenset[Grantee],
                                          partition: str) -> None:
    new = kms.with_grantees(policy, grantees, partition)
    for s in owned_of(new):
        keys = condition_keys(s)
        assert not {kms.ORG_ID_KEY, kms.ORG_PATHS_KEY} <= keys, s


@PROPS
@given(policy=policies(), grantees=orgs_and_ous(), partition=PARTITIONS)
def test_organizations_still_match_when_ous_are_present(policy: dict[str, Any],
                                                        grantees: frozenset[Grantee],
                                                        partition: str) -> None:
    new = kms.with_grantees(policy, grantees, partition)
    orgs = {g.value for g in grantees if g.kind is GranteeKind.ORG}
    ous = {g.value for g in grantees if g.kind is GranteeKind.OU}
    for sid in (kms.SID_ORGS, kms.SID_ORGS_GRANT):
        (s,) = [x for x in new["Statement"] if x.get("Sid") == sid]
        assert kms.ORG_ID_KEY not in condition_keys(s)
        paths = s["Condition"]["ForAnyValue:StringLike"][kms.ORG_PATHS_KEY]
        assert set(paths) == {f"{o}/*" for o in orgs} | ous
        assert len(paths) == len(set(paths))
        for o in orgs:
            # the whole organization: every principal path starts with o-xxx/
            some_path = f"{o}/r-ab12/ou-ab12-cdef3456/"
            assert any(re.fullmatch(p.replace("*", ".*"), some_path) for p in paths)


@PROPS
@given(orgs=st.frozensets(org_ids, min_size=1, max_size=5), partition=PARTITIONS)
def test_organizations_only_use_org_id(orgs: frozenset[str], partition: str) -> None:
    grantees = {Grantee(GranteeKind.ORG, o) for o in orgs}
    new = kms.with_grantees({"Statement": []}, grantees, partition)
    for s in new["Statement"]:
        assert s["Condition"]["StringEquals"] == {kms.ORG_ID_KEY: sorted(orgs)}
        assert kms.ORG_PATHS_KEY not in condition_keys(s)


@PROPS
@given(p=principals(), partition=PARTITIONS)
def test_principal_of_inverts_grantee_of(p: Principal, partition: str) -> None:
    g = _grantee(p)
    assert kms.principal_of(g, partition, {g: p}) == p
    back = kms.principal_of(g, partition, {})
    assert back.kind is p.kind
    assert kms.grantee_of(back) == g


# --------------------------------------------------------------------------- parse_policy


def _parse(text: str) -> dict[str, Any] | None:
    try:
        doc = kms.parse_policy(text)
    except PolicyError as exc:
        assert str(exc)
        return None
    assert isinstance(doc, dict)
    assert isinstance(doc["Statement"], list)
    assert all(isinstance(s, dict) for s in doc["Statement"])
    assert doc == json.loads(text)
    return doc


@PROPS
@given(value=st.one_of(json_values, st.fixed_dictionaries(
    {"Statement": st.one_of(st.lists(st.one_of(foreign_statements(), json_values), max_size=4),
                            json_values)})))
def test_parse_policy_on_random_json(value: Any) -> None:
    text = json.dumps(value)
    doc = _parse(text)
    statements = value.get("Statement") if isinstance(value, dict) else None
    valid = isinstance(statements, list) and all(isinstance(s, dict) for s in statements)
    assert (doc is not None) == valid


@PROPS
@given(text=st.one_of(st.text(max_size=200),
                      st.text(max_size=30).map(lambda t: '{"Statement": [' + t),
                      st.sampled_from(["", "{", "[]", "null", "NaN", '{"Statement": null}',
                                       '{"Statement": {}}', '{"Statement": [1]}', "\ufeff{}",
                                       '{"Statement": []}', '{"Statement": [{}]}'])))
def test_parse_policy_on_random_text(text: str) -> None:
    _parse(text)


@PROPS
@given(data=st.data(), grantees=grantee_sets, partition=PARTITIONS)
def test_parse_policy_on_mutated_policy_text(data: st.DataObject, grantees: frozenset[Grantee],
                                             partition: str) -> None:
    text = kms.serialize(kms.with_grantees(data.draw(policies()), grantees, partition))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:pos] + text[pos + data.draw(st.integers(1, 10)):]
        else:
            token = data.draw(st.sampled_from(['"', "{", "}", "[", "]", ",", ":", "\\", "null",
                                               "1e999", "\x00", "é"]))
            text = text[:pos] + token + text[pos:]
    _parse(text)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"Statement": [], "n": ' + "1" * 5000 + "}"])
def test_parse_policy_on_pathological_json(text: str) -> None:
    with pytest.raises(PolicyError):
        kms.parse_policy(text)


# --------------------------------------------------------------------------- tampering

non_root_principals = st.one_of(
    account_ids.map(lambda a: f"arn:aws:iam::{a}:role/Admin"),
    account_ids.map(lambda a: f"arn:aws:iam::{a}:user/mallory"),
    account_ids.map(lambda a: f"arn:aws:sts::{a}:assumed-role/r/s"),
    st.sampled_from(["*", "arn:aws:iam::*:root", "", "root", "12345678901", "1234567890123",
                     "ec2.amazonaws.com"]),
    # ASCII-only text so that e.g. 12 Unicode digits are not drawn (see the xfail below)
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
).filter(lambda v: not re.fullmatch(r"[0-9]{12}", v) and not (
    # root ARNs with a digit-only account part: valid ones are allowed, wrong-length ones are
    # a known bug (test_malformed_account_root_is_refused)
    v.count(":") == 5 and v.split(":")[2] == "iam" and v.split(":")[5] == "root"
    and v.split(":")[4].isdigit()))


@PROPS
@given(policy=policies(), grantees=st.frozensets(account_ids.map(
           lambda a: Grantee(GranteeKind.ACCOUNT, a)), min_size=1, max_size=5),
       partition=PARTITIONS, data=st.data())
def test_non_root_principal_in_accounts_statement_is_refused(
        policy: dict[str, Any], grantees: frozenset[Grantee], partition: str,
        data: st.DataObject) -> None:
    tampered = kms.with_grantees(policy, grantees, partition)
    sid = data.draw(st.sampled_from([kms.SID_ACCOUNTS, kms.SID_ACCOUNTS_GRANT]))
    (s,) = [x for x in tampered["Statement"] if x.get("Sid") == sid]
    bad = data.draw(non_root_principals)
    roots = s["Principal"]["AWS"]
    s["Principal"] = {"AWS": data.draw(st.sampled_from([
        bad, [bad], roots[:1] + [bad], [bad] + roots]))}
    with pytest.raises(PolicyError) as info:
        kms.owned_grantees(tampered)
    assert sid in str(info.value)


@pytest.mark.parametrize("principal", ["*", {"Service": "ec2.amazonaws.com"},
                                       {"AWS": "arn:aws:iam::111122223333:root",
                                        "Federated": "cognito-identity.amazonaws.com"},
                                       ["arn:aws:iam::111122223333:root"]])
def test_accounts_statement_with_wildcard_or_foreign_principal_is_refused(principal: Any) -> None:
    policy = kms.with_grantees({"Statement": []}, [ONE_ACCOUNT], "aws")
    policy["Statement"][0]["Principal"] = principal
    with pytest.raises(PolicyError):
        kms.owned_grantees(policy)


@pytest.mark.parametrize("value", ["arn:aws:iam::1:root", "arn:aws:iam::1234567890123:root",
                                   "\u0661" * 12, "arn:aws:iam::" + "\u0661" * 12 + ":root"])
def test_malformed_account_root_is_refused(value: str) -> None:
    policy = kms.with_grantees({"Statement": []}, [ONE_ACCOUNT], "aws")
    policy["Statement"][0]["Principal"] = {"AWS": [value]}
    with pytest.raises(PolicyError):
        kms.owned_grantees(policy)


@pytest.mark.parametrize("condition", [{}, {"Bool": {"kms:GrantIsForAWSResource": False}},
                                       {"Bool": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}}])
def test_accounts_grant_statement_with_another_condition_is_refused(condition: Any) -> None:
    # neither shape the tool writes: somebody edited it, so the key is left alone
    policy = kms.with_grantees({"Statement": []}, [ONE_ACCOUNT], "aws")
    [grant] = [s for s in policy["Statement"] if s["Sid"] == kms.SID_ACCOUNTS_GRANT]
    grant["Condition"] = condition
    with pytest.raises(PolicyError):
        kms.owned_grantees(policy)


@pytest.mark.parametrize("shape", list(kms.GrantShape))
def test_both_grant_shapes_are_the_tools_own(shape: kms.GrantShape) -> None:
    grantees = {ONE_ACCOUNT, Grantee(GranteeKind.OU, "o-a1b2c3d4e5/*/ou-ab12-cdef3456/*")}
    policy = kms.with_grantees({"Statement": []}, grantees, "aws", shape)
    assert kms.owned_grantees(policy) == grantees
    assert kms.grant_shapes(policy) == {shape}
    grants = [s for s in policy["Statement"] if s["Sid"].endswith("Grant")]
    conditioned = ["kms:GrantIsForAWSResource" in json.dumps(s) for s in grants]
    assert conditioned == [shape is kms.GrantShape.AWS_RESOURCE] * 2


def _orgs_policy(condition: Any) -> dict[str, Any]:
    policy = kms.with_grantees({"Statement": []}, [Grantee(GranteeKind.ORG, "o-a1b2c3d4e5")], "aws")
    policy["Statement"][0]["Condition"] = condition
    return policy


@pytest.mark.parametrize("condition", ["x", ["StringEquals"], {"StringEquals": ["o-a1b2c3d4e5"]},
                                       {"ForAnyValue:StringLike": "o-a1b2c3d4e5/*"}])
def test_orgs_statement_with_malformed_condition_is_refused(condition: Any) -> None:
    with pytest.raises(PolicyError):
        kms.owned_grantees(_orgs_policy(condition))


@pytest.mark.parametrize("path", ["*", "o-a1b2c3d4e5/*/ou-ab12-cdef3456", "o-*/*", "a/b/c/d/e"])
def test_orgs_statement_with_malformed_org_path_is_refused(path: str) -> None:
    policy = _orgs_policy({"ForAnyValue:StringLike": {kms.ORG_PATHS_KEY: [path]}})
    with pytest.raises(PolicyError):
        kms.owned_grantees(policy)


@pytest.mark.parametrize("condition", [{"StringLike": {kms.ORG_ID_KEY: "*"}},
                                       {"StringEquals": {kms.ORG_ID_KEY: "*"}},
                                       {}])
def test_orgs_statement_with_widened_condition_is_refused(condition: Any) -> None:
    with pytest.raises(PolicyError):
        kms.owned_grantees(_orgs_policy(condition))


@PROPS
@given(policy=policies(), grantees=nonempty_grantee_sets, partition=PARTITIONS)
def test_owned_grantees_ignores_foreign_statements_entirely(policy: dict[str, Any],
                                                            grantees: frozenset[Grantee],
                                                            partition: str) -> None:
    """Foreign statements may say anything (even look like ours): they never count as ours."""
    mirror = [dict(s, Sid=f"Copy{i}") for i, s in
              enumerate(kms.with_grantees({}, grantees, partition)["Statement"])]
    foreign_only = {"Statement": foreign_of(policy) + mirror}
    assert kms.owned_grantees(foreign_only) == set()
    assert kms.owned_grantees(kms.with_grantees(foreign_only, grantees, partition)) == set(grantees)
