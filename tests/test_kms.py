"""Encrypted AMIs: key-policy statements, blockers, copy permissions, apply order (moto)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.exceptions
import pytest
from helpers import (
    ACCOUNT,
    DEV,
    FOREIGN,
    ORG,
    OU,
    PROD,
    ROOT_STATEMENT,
    STAGING,
    Calls,
    Images,
    encrypted_image,
    kms_manifest,
    make_key,
    owned,
    plan_and_apply,
    policy_of,
    replan,
    session_with,
)

from reconciler.core import kms
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Principal
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader
from reconciler.shell.sandbox import make_aws_managed


def test_encrypted_ami_shared_with_accounts_and_an_ou(aws: Images) -> None:
    key = make_key(FOREIGN)
    image, _ = encrypted_image(aws, "golden-1", key)
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod, staging, ou]}\n')
    plan, report = plan_and_apply(text)
    assert not report.failed and not plan.errors
    kms_ops = [(o.action.value, o.principal.to_dict()) for o in plan.operations if o.kind.value == "kms_key_access"]
    assert kms_ops == [("add", {"UserId": PROD}), ("add", {"UserId": STAGING}),
                       ("add", {"OrganizationalUnitArn": OU})]
    policy = policy_of(key)
    assert policy["Statement"][:2] == [ROOT_STATEMENT, FOREIGN], "foreign statements must stay"
    ours = owned(policy)
    roots = [f"arn:aws:iam::{PROD}:root", f"arn:aws:iam::{STAGING}:root"]
    assert ours["AmiShareReconcilerAccounts"]["Principal"] == {"AWS": roots}
    assert ours["AmiShareReconcilerAccounts"]["Action"] == kms.USE_ACTIONS
    assert ours["AmiShareReconcilerAccountsGrant"]["Condition"] == {
        "Bool": {"kms:GrantIsForAWSResource": True}}
    assert ours["AmiShareReconcilerOrgs"]["Principal"] == "*"
    assert ours["AmiShareReconcilerOrgs"]["Condition"] == {
        "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/*/ou-ab12-cdef3456/*"]}}
    assert {"OrganizationalUnitArn": OU} in aws.launch(image)
    assert replan(text).operations == (), "plan after apply must be empty"


@pytest.mark.parametrize("missing", ["AmiShareReconcilerAccountsGrant", "AmiShareReconcilerOrgs"])
def test_a_consumer_in_only_one_of_its_two_statements_gets_both_again(aws: Images,
                                                                       missing: str) -> None:
    """A hand edit (or another tool) left one of the tool's statements out: the consumer
    cannot launch (it needs kms:Decrypt and kms:CreateGrant), so the plan writes its access
    again instead of counting it as unchanged; the other statements stay as they are."""
    from reconciler.shell.aws import make_session

    key = make_key(FOREIGN)
    image, _ = encrypted_image(aws, "golden-1", key)
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod, ou]}\n')
    plan_and_apply(text)
    policy = policy_of(key)
    policy["Statement"] = [st for st in policy["Statement"] if st["Sid"] != missing]
    make_session(None).client("kms", region_name="us-east-1").put_key_policy(
        KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    who = {"UserId": PROD} if "Accounts" in missing else {"OrganizationalUnitArn": OU}
    plan = replan(text)
    assert [(o.action.value, o.principal.to_dict()) for o in plan.operations] == [("add", who)]
    plan_and_apply(text)
    assert set(owned(policy_of(key))) == set(kms.OWNED_SIDS)
    assert policy_of(key)["Statement"][:2] == [ROOT_STATEMENT, FOREIGN]
    assert replan(text).operations == ()


ORG_WIDE = {"Sid": "WholeOrgUsesKey", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
            "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}


@pytest.mark.parametrize("mode", ["check", "key-policy"])
def test_an_organization_served_by_someone_elses_statement_is_left_alone(aws: Images,
                                                                         mode: str) -> None:
    """README: a principal already allowed by a foreign statement is reported (info) and
    left alone. An organization condition serves the organization and its OUs: check mode
    called that missing access (an error, and no share); key-policy mode wrote a second
    statement for it."""
    key = make_key(ORG_WIDE)
    image, _ = encrypted_image(aws, "golden-1", key)
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [org, ou]}\n',
                        f", kms: {mode}")
    plan, report = plan_and_apply(text)
    assert plan.errors == () and not report.failed
    assert [o.kind.value for o in plan.operations] == ["launch_permission"] * 2
    said = [f.message for f in plan.findings if f.code == "kms-foreign-statement"]
    assert len(said) == 2 and any(m.startswith("organization o-a1b2c3d4e5") for m in said)
    assert owned(policy_of(key)) == {} and policy_of(key)["Statement"][1] == ORG_WIDE
    assert {"OrganizationArn": ORG} in aws.launch(image)
    assert replan(text).operations == ()


def test_two_images_share_a_key_union_and_targeted_removal(aws: Images) -> None:
    key = make_key()
    a, _ = encrypted_image(aws, "golden-a", key)
    b, _ = encrypted_image(aws, "golden-b", key)
    both = kms_manifest('  - {name: ra, select: {ids: [%s]}, launch: [prod]}\n'
                    '  - {name: rb, select: {ids: [%s]}, launch: [staging, org]}\n' % (a, b))
    plan, report = plan_and_apply(both)
    assert not report.failed
    ours = owned(policy_of(key))
    assert ours["AmiShareReconcilerAccounts"]["Principal"]["AWS"] == [
        f"arn:aws:iam::{PROD}:root", f"arn:aws:iam::{STAGING}:root"]
    assert ours["AmiShareReconcilerOrgs"]["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": ["o-a1b2c3d4e5"]}}

    # b no longer shared with staging: only staging leaves the key policy.
    less = kms_manifest('  - {name: ra, select: {ids: [%s]}, launch: [prod]}\n'
                    '  - {name: rb, select: {ids: [%s]}, launch: [org]}\n' % (a, b))
    plan, report = plan_and_apply(less)
    assert sorted((o.kind.value, o.action.value, o.principal.value) for o in plan.operations) == [
        ("kms_key_access", "remove", STAGING), ("launch_permission", "remove", STAGING)]
    ours = owned(policy_of(key))
    assert ours["AmiShareReconcilerAccounts"]["Principal"]["AWS"] == [f"arn:aws:iam::{PROD}:root"]
    assert aws.launch(a) == [{"UserId": PROD}]
    assert replan(less).operations == ()


def test_removed_ou_keeps_its_real_arn_in_the_key_access_removal(aws: Images) -> None:
    # A key policy records only the OU path, not the management account of the ARN: the
    # removal must name the same ARN as the launch-permission removal beside it.
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod, ou]}\n'))
    plan, report = plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, '
                                           'launch: [prod]}\n', ", prune: true"))
    assert not report.failed
    assert sorted((o.kind.value, o.action.value, o.principal.value) for o in plan.operations) == [
        ("kms_key_access", "remove", OU), ("launch_permission", "remove", OU)]
    assert "AmiShareReconcilerOrgs" not in owned(policy_of(key))
    assert aws.launch(image) == [{"UserId": PROD}]


def test_aws_managed_key_blocks_only_that_image(aws: Images) -> None:
    kms_client = boto3.client("kms", region_name="us-east-1")
    managed = kms_client.create_key()["KeyMetadata"]
    make_aws_managed(ACCOUNT, "us-east-1", managed["KeyId"])
    blocked, snap = encrypted_image(aws, "golden-blocked", managed["Arn"])
    fine = aws.create("golden-fine")
    plan, report = plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'))
    [finding] = plan.errors
    assert finding.code == "aws-managed-key" and finding.resource == blocked
    assert snap in finding.message and managed["Arn"] in finding.message
    # the fix is a command for this very image, ready to paste
    assert (f"aws ec2 copy-image --source-image-id {blocked} --source-region us-east-1 "
            f"--region us-east-1 --name golden-blocked-cmk --encrypted --kms-key-id "
            "<customer-key-arn>") in finding.message
    assert aws.launch(blocked) == []
    assert aws.launch(fine) == [{"UserId": PROD}], "the other image is still applied"
    assert not report.failed


def test_key_policy_read_denied_is_a_finding(aws: Images) -> None:
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    clients = session_with()

    def deny(**_: Any) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "GetKeyPolicy")

    clients.session.events.register("provide-client-params.kms.GetKeyPolicy", deny)
    plan, report = plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                                  clients)
    [finding] = plan.errors
    assert finding.code == "kms-access-denied"
    assert "kms:GetKeyPolicy" in finding.message
    assert plan.operations == () and aws.launch(image) == []


def test_copy_permissions_added_and_pruned(aws: Images) -> None:
    key = make_key()
    image, snap = encrypted_image(aws, "golden-1", key)
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                  OperationType="add", UserIds=[DEV])
    text = kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod, staging], copy: [prod]}\n')
    plan, report = plan_and_apply(text)
    copy_ops = [(o.action.value, o.resource, o.principal.value) for o in plan.operations
                if o.kind.value == "create_volume_permission"]
    assert copy_ops == [("add", snap, PROD), ("remove", snap, DEV)]
    perms = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    assert perms["CreateVolumePermissions"] == [{"UserId": PROD}]
    assert not report.failed and replan(text).operations == ()
    # DEV only had copy access: its key access is not needed and never was ours.
    assert owned(policy_of(key))["AmiShareReconcilerAccounts"]["Principal"]["AWS"] == [
        f"arn:aws:iam::{PROD}:root", f"arn:aws:iam::{STAGING}:root"]


def test_check_mode_reports_and_writes_nothing(aws: Images) -> None:
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    plain = aws.create("golden-plain")
    calls = Calls()
    text = kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n', ", kms: check")
    plan, report = plan_and_apply(text, session_with(calls))
    assert [(f.code, f.resource) for f in plan.errors] == [("kms-access-missing", key)]
    assert "PutKeyPolicy" not in calls.by_op
    assert aws.launch(image) == [], "no launch permission the consumer could not use"
    assert aws.launch(plain) == [{"UserId": PROD}]
    assert "AmiShareReconcilerAccounts" not in json.dumps(policy_of(key))


def test_off_mode_makes_no_kms_call(aws: Images) -> None:
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    calls = Calls()
    text = kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n', ", kms: 'off'")
    plan, _ = plan_and_apply(text, session_with(calls))
    assert not [op for op in calls.by_op if op in ("DescribeKey", "GetKeyPolicy", "ListAliases",
                                                   "PutKeyPolicy")]
    assert aws.launch(image) == [{"UserId": PROD}]


def test_key_read_once_however_many_images_use_it(aws: Images) -> None:
    key = make_key()
    for i in range(5):
        encrypted_image(aws, f"golden-{i}", key)
    calls = Calls()
    build_plan(parse_manifest(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                              "m.yaml"), Reader(session_with(calls), 4))
    assert calls.by_op["DescribeKey"] == 1 and calls.by_op["GetKeyPolicy"] == 1
    assert calls.by_op["ListAliases"] == 1 and calls.by_op["DescribeSnapshots"] == 1


def test_apply_order_key_first_on_add_last_on_remove(aws: Images) -> None:
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    calls = Calls()
    plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                   session_with(calls))
    writes = [op for op, _ in calls.params if op in ("PutKeyPolicy", "ModifyImageAttribute")]
    assert writes == ["PutKeyPolicy", "ModifyImageAttribute"]

    calls = Calls()
    plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: []}\n'),
                   session_with(calls))
    writes = [op for op, _ in calls.params if op in ("PutKeyPolicy", "ModifyImageAttribute")]
    assert writes == ["ModifyImageAttribute", "PutKeyPolicy"]
    assert aws.launch(image) == [] and owned(policy_of(key)) == {}


def test_failed_key_grant_means_no_launch_addition(aws: Images) -> None:
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    plain = aws.create("golden-plain")
    clients = session_with()

    def deny(**_: Any) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutKeyPolicy")

    clients.session.events.register("provide-client-params.kms.PutKeyPolicy", deny)
    plan, report = plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                                  clients)
    failed = {(o.operation.kind.value, o.operation.resource): o.error for o in report.failed}
    assert "kms:PutKeyPolicy" in failed[("kms_key_access", key)]
    assert failed[("launch_permission", image)].startswith("skipped: access to KMS key")
    assert aws.launch(image) == [], "a consumer must never get a share it cannot use"
    assert aws.launch(plain) == [{"UserId": PROD}]


def test_foreign_statement_already_allowing_an_account_is_left_alone(aws: Images) -> None:
    generous = {"Sid": "ProdFullUse", "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*",
                "Resource": "*"}
    key = make_key(generous)
    encrypted_image(aws, "golden-1", key)
    plan, report = plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod, staging]}\n'))
    infos = [f for f in plan.findings if f.code == "kms-foreign-statement"]
    assert len(infos) == 1 and PROD in infos[0].message
    assert owned(policy_of(key))["AmiShareReconcilerAccounts"]["Principal"]["AWS"] == [
        f"arn:aws:iam::{STAGING}:root"]
    assert policy_of(key)["Statement"][1] == generous


def test_policy_over_32kb_is_refused_before_writing(aws: Images) -> None:
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    accounts = ", ".join(f'"{700000000000 + i}"' for i in range(700))
    calls = Calls()
    plan, report = plan_and_apply(kms_manifest(
        '  - {name: g, select: {name: "golden-*"}, launch: [%s]}\n' % accounts), session_with(calls))
    assert [f.code for f in plan.errors] == ["key-policy-too-large"]
    assert "PutKeyPolicy" not in calls.by_op and aws.launch(image) == []


@pytest.mark.parametrize("principal,grantee", [
    (Principal.account(PROD), kms.Grantee(kms.GranteeKind.ACCOUNT, PROD)),
    (Principal.parse_literal(ORG), kms.Grantee(kms.GranteeKind.ORG, "o-a1b2c3d4e5")),
    (Principal.parse_literal(OU), kms.Grantee(kms.GranteeKind.OU, "o-a1b2c3d4e5/*/ou-ab12-cdef3456/*")),
    (Principal.public(), None),
], ids=["account", "org", "ou", "public"])
def test_grantee_of(principal: Principal | None, grantee: kms.Grantee | None) -> None:
    assert principal is not None
    assert kms.grantee_of(principal) == grantee


def test_unparseable_key_policy_is_never_written(aws: Images) -> None:
    # The tool's own Sid, edited by hand to name a role: it cannot be safely rewritten.
    tampered = {"Sid": "AmiShareReconcilerAccounts", "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{PROD}:role/admin"}, "Action": "kms:*",
                "Resource": "*"}
    policy = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT, tampered]}
    key = boto3.client("kms", region_name="us-east-1").create_key(
        Policy=json.dumps(policy))["KeyMetadata"]["Arn"]
    image, _ = encrypted_image(aws, "golden-1", key)
    calls = Calls()
    plan, report = plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                                  session_with(calls))
    [finding] = plan.errors
    assert finding.code == "key-policy-unparseable" and "refusing to edit" in finding.message
    assert "PutKeyPolicy" not in calls.by_op and aws.launch(image) == []
    assert policy_of(key) == policy


def test_put_key_policy_keeps_the_lockout_safety_check(aws: Images) -> None:
    key = make_key()
    encrypted_image(aws, "golden-1", key)
    calls = Calls()
    plan_and_apply(kms_manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                   session_with(calls))
    puts = [p for op, p in calls.params if op == "PutKeyPolicy"]
    assert len(puts) == 1
    assert puts[0]["BypassPolicyLockoutSafetyCheck"] is False
    assert puts[0]["PolicyName"] == "default"


@pytest.mark.parametrize(("pattern", "covers"), [
    ("o-a1b2c3d4e5/*/ou-ab12-cdef3456/*", True),  # the OU's own path, as the tool writes it
    ("o-a1b2c3d4e5/*", True),  # the whole organization
    ("o-a1b2c3d4e5/*/ou-ab12-cdef3456/?*", False),  # in IAM: only the OU's children
    ("o-a1b2c3d4e5/?", False),  # in IAM: nothing
    ("o-a1b2c3d4e5/*/ou-ab12-*", False),  # a wildcard the tool cannot weigh
])
def test_only_the_org_path_patterns_the_tool_writes_count_as_someone_elses_access(
        pattern: str, covers: bool) -> None:
    """A pattern that only looks like it covers the OU must not make the tool skip the key
    access the OU's consumers need."""
    st = {"Sid": "Theirs", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
          "Resource": "*",
          "Condition": {"ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [pattern]}}}
    policy = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT, st]}
    ou = kms.grantee_of(Principal.parse_literal(OU))
    assert ou is not None
    assert kms.foreign_allows_grantee(policy, ou) is covers


@pytest.mark.parametrize("condition", [["x"], {"StringEquals": 5}, "o-a1b2c3d4e5"])
def test_an_odd_condition_in_someone_elses_statement_serves_nobody(condition: Any) -> None:
    """Not a condition block IAM accepts: no traceback, and no access assumed from it."""
    st = {"Sid": "Odd", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
          "Condition": condition}
    ou = kms.grantee_of(Principal.parse_literal(OU))
    assert ou is not None
    assert kms.foreign_allows_grantee({"Statement": [ROOT_STATEMENT, st]}, ou) is False


# ------------------------------------------------------- the one reading of a key policy
# (kms.evaluate: what the planner and `explain` both ask of a key policy)

ORG_ID = "o-a1b2c3d4e5"
ACCOUNT_G = kms.Grantee(kms.GranteeKind.ACCOUNT, PROD)
ORG_G = kms.Grantee(kms.GranteeKind.ORG, ORG_ID)


def _statement(**kw: Any) -> dict[str, Any]:
    return {"Sid": "Theirs", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
            "Resource": "*", **kw}


def test_an_organization_condition_lets_an_account_in_only_as_a_member() -> None:
    st = _statement(Condition={"StringEquals": {"aws:PrincipalOrgID": ORG_ID}})
    acc = kms.access({"Statement": [ROOT_STATEMENT, st]}, ACCOUNT_G)
    assert not acc.served() and acc.memberships() == (ORG_G,)
    assert [a.sid for a in acc.serving(member_of=ORG_G)] == ["Theirs"]
    assert kms.access({"Statement": [ROOT_STATEMENT, st]}, ORG_G).served(foreign_only=True)


def test_grant_statements_of_either_shape_are_told_apart() -> None:
    aws_resource = _statement(Action=kms.GRANT_ACTIONS, Principal={"AWS": f"arn:aws:iam::{PROD}:root"},
                              Condition=kms.GRANT_CONDITION)
    use = _statement(Sid="Use", Action=kms.USE_ACTIONS, Principal={"AWS": PROD})
    acc = kms.access({"Statement": [use, aws_resource]}, ACCOUNT_G)
    assert acc.served(kms.GrantShape.AWS_RESOURCE)
    assert not acc.served(kms.GrantShape.ANY)  # a consumer cannot grant its own roles


@pytest.mark.parametrize("deny, definite, matches", [
    ({"Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}}, True, True),
    ({"Principal": "*"}, True, True),
    ({"Principal": "*", "Condition": {"Bool": {"aws:ViaAWSService": "false"}}}, False, True),
    ({"NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}, False, True),
    ({"Principal": {"AWS": "arn:aws:iam::999999999999:root"}}, True, False),
], ids=["names-it", "everyone", "conditional", "not-principal", "someone-else"])
def test_deny_statements_that_match_and_whether_they_surely_apply(
        deny: dict[str, Any], definite: bool, matches: bool) -> None:
    st = {"Sid": "NoUse", "Effect": "Deny", "Action": "kms:CreateGrant", "Resource": "*", **deny}
    refusals = kms.access({"Statement": [ROOT_STATEMENT, st]}, ACCOUNT_G).refusals
    assert [r.sid for r in refusals] == (["NoUse"] if matches else [])
    assert all(r.definite is definite and r.actions == ("kms:CreateGrant",) for r in refusals)
