"""Faithful to real AWS where the emulator is not: Auto Scaling grants, key-policy capacity,
public-share rules, per-call limits. Refusals moto does not make are injected with a botocore
``before-send`` hook answering exactly as AWS documents them (each test cites the page)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from helpers import (
    ACCOUNT,
    OU,
    PROD,
    ROOT_STATEMENT,
    Images,
    counted_clients,
    encrypted_image,
    kms_manifest,
    make_key,
    owned,
    plan_and_apply,
    policy_of,
    replan,
)

from reconciler.core import kms
from reconciler.core.kms import Grantee, GranteeKind
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import OpKind
from reconciler.core.render import key_policy_details, text_lines
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader

# ----------------------------------------------------------------- 1. Auto Scaling consumers


def _grant_conditions(key: str) -> dict[str, Any]:
    return {sid: st.get("Condition") for sid, st in owned(policy_of(key)).items()
            if sid.endswith("Grant")}


def test_kms_grants_any_writes_grant_statements_auto_scaling_can_use(aws: Images) -> None:
    """EC2 Auto Scaling User Guide, "Required AWS KMS key policy for use with encrypted
    volumes": a consumer's service-linked role needs a grant the consumer creates itself
    (kms:CreateGrant without kms:GrantIsForAWSResource)."""
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    rules = '  - {name: golden, select: {name: "golden-*"}, launch: [prod, ou]}\n'
    text = kms_manifest(rules, ", kms_grants: any")
    plan, report = plan_and_apply(text)
    assert not report.failed and not plan.errors
    assert _grant_conditions(key) == {
        kms.SID_ACCOUNTS_GRANT: None,
        kms.SID_ORGS_GRANT: {"ForAnyValue:StringLike": {
            "aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/*/ou-ab12-cdef3456/*"]}}}
    assert replan(text).operations == ()

    # Back to the default: the tool recognises its own statements and narrows them again.
    default = kms_manifest(rules)
    migration = replan(default)
    kms_ops = [(o.action.value, o.principal.value) for o in migration.operations]
    assert kms_ops == [("add", PROD), ("add", OU)], "the grants that change, and nothing else"
    assert [f.code for f in migration.findings] == ["kms-grant-shape"]
    details = "".join(text_lines(migration, parse_manifest(default, "m.yaml"),
                                 details=key_policy_details(migration)))
    assert "kms:GrantIsForAWSResource" in details, "the statement change is shown with -v"
    plan, report = plan_and_apply(default)
    assert not report.failed
    assert _grant_conditions(key)[kms.SID_ACCOUNTS_GRANT] == {
        "Bool": {"kms:GrantIsForAWSResource": True}}
    assert replan(default).operations == ()
    assert aws.launch(image) == [{"OrganizationalUnitArn": OU}, {"UserId": PROD}]


# ----------------------------------------------------------------- 2. key-policy capacity


def _accounts(n: int) -> list[str]:
    return [f"{100000000000 + i:012d}" for i in range(n)]


def _size(n: int) -> int:
    base = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]}
    grantees = {Grantee(GranteeKind.ACCOUNT, a) for a in _accounts(n)}
    return len(kms.serialize(kms.with_grantees(base, grantees, "aws")).encode())


def test_compact_policy_holds_the_most_accounts_and_one_more_is_refused(aws: Images) -> None:
    """KMS API PutKeyPolicy: the policy document is at most 32 KB (32,768 bytes)."""
    fits = max(n for n in range(300, 700) if _size(n) <= kms.MAX_POLICY_BYTES)
    assert _size(fits) <= 32_768 < _size(fits + 1)
    pretty = len(json.dumps(kms.with_grantees(
        {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]},
        {Grantee(GranteeKind.ACCOUNT, a) for a in _accounts(fits)}, "aws"), indent=2).encode())
    assert fits >= 480 and pretty > 32_768, (fits, pretty)  # indent=2 held ~360

    key = make_key()
    encrypted_image(aws, "golden-1", key)
    launch = ", ".join(f'"{a}"' for a in _accounts(fits + 1))
    too_many = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [%s]}\n' % launch)
    plan = replan(too_many)
    [err] = [f for f in plan.errors if f.code == "key-policy-too-large"]
    assert f"at most {fits:,} accounts" in err.message and "Organization or OU" in err.message
    assert plan.operations == (), "nothing is shared through a key that cannot hold them"

    launch = ", ".join(f'"{a}"' for a in _accounts(fits))
    exact = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [%s]}\n' % launch)
    plan, report = plan_and_apply(exact)
    assert not report.failed and not plan.errors
    text = boto3.client("kms", region_name="us-east-1").get_key_policy(
        KeyId=key, PolicyName="default")["Policy"]
    assert len(text.encode()) == _size(fits) <= 32_768, "sent compact, measured as sent"
    assert len(owned(json.loads(text))[kms.SID_ACCOUNTS]["Principal"]["AWS"]) == fits


# ----------------------------------------------------------------- 4. public-share rules


def _public_manifest(rules: str, settings: str = "") -> bytes:
    return kms_manifest(rules, ", allow_public: true" + settings)


def _set_product_codes(image_id: str, *codes: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends[ACCOUNT]["us-east-1"].amis[image_id].product_codes = [
        {"ProductCodeId": c, "ProductCodeType": "marketplace"} for c in codes]


def test_marketplace_image_cannot_be_public_and_cannot_be_copied(aws: Images) -> None:
    """EC2 User Guide, "Make your AMI public": AMIs with product codes can't be made public;
    "Copy an AMI": an AMI derived from AWS Marketplace cannot be copied across accounts."""
    image = aws.create("golden-market")
    _set_product_codes(image, "8fd3k2dgc6qnd1b9lqd3j1g0z")
    plan = replan(_public_manifest(
        '  - {name: golden, select: {name: "golden-*"}, launch: [public, prod], copy: [prod]}\n'))
    by_code = {f.code: f for f in plan.findings}
    assert by_code["public-product-code"].severity.value == "error"
    assert "8fd3k2dgc6qnd1b9lqd3j1g0z" in by_code["public-product-code"].message
    assert by_code["copy-marketplace"].severity.value == "warning"
    assert plan.operations == (), "an image with an error finding gets no write at all"


def _public_image(aws: Images, name: str) -> str:
    return aws.create(name, launch=[{"Group": "all"}])


def test_public_ami_quota_counts_current_and_planned(aws: Images) -> None:
    """EC2 User Guide, "AMI quotas": Public AMIs, 5 per Region (adjustable, L-0E3CBAB9)."""
    for i in range(4):
        _public_image(aws, f"legacy-{i}")  # unmanaged, public: they count
    a = aws.create("golden-a")
    b = aws.create("golden-b")
    rules = '  - {name: golden, select: {name: "golden-*"}, launch: [public]}\n'
    plan = replan(_public_manifest(rules))
    errors = {f.resource: f.message for f in plan.errors if f.code == "public-quota"}
    assert set(errors) == {a, b}
    assert "6 public AMIs, over the quota of 5" in errors[a]
    assert not [o for o in plan.operations if o.principal.is_public]
    raised = replan(_public_manifest(rules, ", public_quota: 6"))
    assert not raised.errors
    assert sorted(o.resource for o in raised.operations if o.principal.is_public) == sorted([a, b])


def _in_recycle_bin(count: int, region: str = "us-east-1") -> None:
    """AMIs in the Recycle Bin as ListImagesInRecycleBin lists them (EC2 API reference,
    ImageRecycleBinInfo: no word on whether one was public)."""
    from reconciler.shell.sandbox import RECYCLE_BIN

    RECYCLE_BIN[(ACCOUNT, region)] = [
        {"ImageId": f"ami-{i:017x}", "Name": f"old-{i}", "Description": "",
         "RecycleBinEnterTime": "2026-11-01T00:00:00.000Z",
         "RecycleBinExitTime": "2026-12-31T00:00:00.000Z"} for i in range(count)]


@pytest.mark.parametrize("binned, warned", [(0, False), (1, False), (2, True), (1001, True)])
def test_public_amis_in_the_recycle_bin_may_hold_the_quota(aws: Images, binned: int,
                                                           warned: bool) -> None:
    """EC2 User Guide, "AMI quotas": Public AMIs "including public AMIs in the Recycle Bin"
    (5 per Region). ListImagesInRecycleBin does not say which were public: the count is an
    upper bound, so a share it may block is a warning, never a refusal."""
    for i in range(3):
        _public_image(aws, f"legacy-{i}")
    image = aws.create("golden-a")
    _in_recycle_bin(binned)
    clients, calls = counted_clients()
    plan = build_plan(parse_manifest(_public_manifest(
        '  - {name: golden, select: {name: "golden-*"}, launch: [public]}\n'), "m.yaml"),
        Reader(clients, 4))
    assert calls.by_op["ListImagesInRecycleBin"] == (2 if binned > 1000 else 1)  # 1,000 a page
    assert plan.errors == ()
    said = [f for f in plan.findings if f.code == "public-quota-recycle-bin"]
    assert bool(said) is warned, [f.code for f in plan.findings]
    if warned:
        [warning] = said
        assert warning.severity.value == "warning" and warning.resource == image
        assert "4 public AMIs of the quota of 5" in warning.message
        assert f"the Recycle Bin of us-east-1 holds {binned} AMIs" in warning.message
    # the share is planned either way: the count cannot say the quota is reached
    assert [o.resource for o in plan.operations if o.principal.is_public] == [image]


def test_the_recycle_bin_is_listed_only_where_a_public_share_is_added(aws: Images) -> None:
    image = aws.create("golden-a")
    _in_recycle_bin(5)
    clients, calls = counted_clients()
    plan = build_plan(parse_manifest(_public_manifest(
        '  - {name: golden, select: {ids: [%s]}, launch: [prod]}\n' % image), "m.yaml"),
        Reader(clients, 4))
    assert "ListImagesInRecycleBin" not in calls.by_op
    assert plan.findings == ()


def test_an_unreadable_recycle_bin_is_said_once_per_new_public_share(
        aws: Images, monkeypatch: pytest.MonkeyPatch) -> None:
    """EC2 API reference, Common client errors: UnauthorizedOperation, when the role's
    policy lacks ec2:ListImagesInRecycleBin."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses import EC2Response

    def refuse(self: object) -> None:
        raise EC2ClientError("UnauthorizedOperation", "You are not authorized to perform this "
                        "operation. User: x is not authorized to perform: "
                        "ec2:ListImagesInRecycleBin")

    monkeypatch.setattr(EC2Response, "list_images_in_recycle_bin", refuse, raising=False)
    image = aws.create("golden-a")
    plan = replan(_public_manifest(
        '  - {name: golden, select: {ids: [%s]}, launch: [public]}\n' % image))
    [warning] = plan.findings
    assert warning.code == "public-quota-recycle-bin" and warning.resource == image
    assert "could not be listed" in warning.message and "UnauthorizedOperation" in warning.message
    assert [o.resource for o in plan.operations if o.principal.is_public] == [image]


def test_block_public_access_set_by_a_declarative_policy(
        aws: Images, monkeypatch: pytest.MonkeyPatch) -> None:
    """EC2 API GetImageBlockPublicAccessState: ManagedBy declarative-policy means the state
    "is managed by a declarative policy and can't be modified by the account"."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    monkeypatch.setattr(EC2Response, "get_image_block_public_access_state", lambda self: ActionResult(
        {"ImageBlockPublicAccessState": "block-new-sharing", "ManagedBy": "declarative-policy"}),
        raising=False)
    image = aws.create("golden-1")
    plan = replan(_public_manifest('  - {name: golden, select: {ids: [%s]}, launch: [public]}\n'
                                   % image))
    [err] = plan.errors
    assert err.code == "public-access-blocked"
    assert "declarative policy" in err.message and "cannot be changed from this account" in err.message
    assert "disable-image-block-public-access" not in err.message
    assert plan.operations == ()


@pytest.mark.parametrize("state", ["block-all-sharing", "block-new-sharing"])
def test_public_copy_refused_when_snapshot_block_public_access_blocks_it(
        aws: Images, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """EC2 API GetSnapshotBlockPublicAccessState: block-all-sharing / block-new-sharing."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    monkeypatch.setattr(EC2Response, "get_snapshot_block_public_access_state",
                        lambda self: ActionResult({"State": state, "ManagedBy": "account"}),
                        raising=False)
    image = aws.create("golden-1")
    clients, calls = counted_clients()
    text = _public_manifest('  - {name: golden, select: {ids: [%s]}, launch: [prod], '
                            'copy: [public, prod]}\n' % image)
    plan = build_plan(parse_manifest(text, "m.yaml"), Reader(clients, 4))
    assert calls.by_op["GetSnapshotBlockPublicAccessState"] == 1
    assert [f.code for f in plan.errors] == ["snapshot-public-access-blocked"]
    assert state in plan.errors[0].message
    assert plan.operations == (), "an image with an error finding gets no write at all"


def test_encrypted_snapshots_are_never_made_public(aws: Images) -> None:
    """EC2 API ModifySnapshotAttribute: encrypted snapshots cannot be made public."""
    key = make_key()
    encrypted_image(aws, "golden-1", key)
    plan = replan(_public_manifest(
        '  - {name: golden, select: {name: "golden-*"}, launch: [prod], copy: [public]}\n'))
    assert [f.code for f in plan.errors] == ["encrypted-public"]
    assert not [o for o in plan.operations if o.principal.is_public]


# ----------------------------------------------------------------- 5. per-call limits


def test_share_quota_with_prune_off_counts_what_is_kept(aws: Images) -> None:
    kept = [{"UserId": f"70000000000{i}"} for i in range(3)]
    image = aws.create("golden-1", launch=kept)
    rules = '  - {name: golden, select: {name: "golden-*"}, launch: [prod, "444455556666"]}\n'
    plan = replan(kms_manifest(rules, ", prune: false, share_quota: 4"))
    [err] = plan.errors
    assert err.code == "share-quota" and err.resource == image
    assert "5 entities" in err.message and "prune: false keeps" in err.message
    assert not replan(kms_manifest(rules, ", share_quota: 4")).errors, "with prune, 2 entities"


def test_snapshot_copy_permissions_go_500_per_call(aws: Images) -> None:
    """EC2 API ModifySnapshotAttribute: "You can make up to 500 modifications to a snapshot
    in a single operation"."""
    aws.create("golden-1")
    many = _accounts(501)
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod], copy: [%s]}\n'
                    % ", ".join(f'"{a}"' for a in many), ", share_quota: 1000")
    clients, calls = counted_clients()
    plan, report = plan_and_apply(text, clients)
    assert not report.failed
    sizes = [len(params.get("UserIds", [])) for op, params in calls.params
             if op == "ModifySnapshotAttribute"]
    assert sorted(sizes) == [1, 500]
    [snap] = {o.resource for o in plan.operations if o.kind is OpKind.COPY}
    perms = boto3.client("ec2", region_name="us-east-1").describe_snapshot_attribute(
        SnapshotId=snap, Attribute="createVolumePermission")["CreateVolumePermissions"]
    assert sorted(p["UserId"] for p in perms) == many
    assert replan(text).operations == ()


# ----------------------------------------------------------------- 6. removals AWS accepts


def test_removing_an_account_from_an_image_shared_with_its_ou_is_said(aws: Images) -> None:
    image = aws.create("golden-1", launch=[{"UserId": "999988887777"}])
    plan = replan(kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [ou]}\n'))
    [info] = [f for f in plan.findings if f.code == "removal-kept-through-org"]
    assert info.resource == image and "999988887777" in info.message and OU in info.message
    plain = replan(kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    assert not [f for f in plain.findings if f.code == "removal-kept-through-org"]


# ----------------------------------------------------------------- 3, 7. refusals of one entry

BAD = "000000000001"  # an account AWS does not know


def _refusing(session: boto3.Session, event: str, needle: str, status: int, code: str,
              message: str) -> list[str]:
    """Answer the calls whose request mentions ``needle`` as AWS refuses them (error code,
    message, HTTP status), before they reach the emulator (which would accept them).
    Returns the list the refused calls are recorded in."""
    from botocore.awsrequest import AWSResponse

    refused: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if needle not in str(params.get("body")):
            return None
        refused.append(event)
        http = AWSResponse(params.get("url", ""), status, {}, None)
        return http, {"Error": {"Code": code, "Message": message},
                      "ResponseMetadata": {"HTTPStatusCode": status}}

    session.events.register_first(event, hook)
    return refused


def test_one_unknown_account_does_not_block_a_key(aws: Images) -> None:
    """KMS API PutKeyPolicy: MalformedPolicyDocumentException, "Policy contains a statement
    with one or more invalid principals." (HTTP 400) when a principal does not exist."""
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    clients, calls = counted_clients()
    refused = _refusing(clients.session, "before-call.kms.PutKeyPolicy", f"iam::{BAD}:root", 400,
              "MalformedPolicyDocumentException",
              "Policy contains a statement with one or more invalid principals.")
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod, "%s"]}\n' % BAD)
    plan, report = plan_and_apply(text, clients)
    failed = {(o.operation.kind.value, o.operation.principal.value): o.error for o in report.failed}
    assert set(failed) == {("kms_key_access", BAD), ("launch_permission", BAD)}
    assert "invalid principals" in failed[("kms_key_access", BAD)]
    assert "does not exist or is not visible to KMS" in failed[("kms_key_access", BAD)]
    assert "could not be granted" in failed[("launch_permission", BAD)]
    # the whole policy (refused), then one try per new account: prod (written), BAD (refused)
    assert len(refused) == 2 and calls.by_op["PutKeyPolicy"] == 1
    assert [a.split(":")[4] for a in owned(policy_of(key))[kms.SID_ACCOUNTS]["Principal"]["AWS"]] \
        == [PROD]
    assert aws.launch(image) == [{"UserId": PROD}], "no launch permission without key access"


def test_a_refused_add_does_not_cost_the_removals_of_the_same_call(aws: Images) -> None:
    """EC2 ModifyImageAttribute refuses the whole call for one bad entry:
    InvalidAMIAttributeItemValue, 'Invalid attribute item value "..." for userId item type.'"""
    image = aws.create("golden-1", launch=[{"UserId": "999988887777"}])
    clients, calls = counted_clients()
    refused = _refusing(clients.session, "before-call.ec2.ModifyImageAttribute", BAD, 400,
              "InvalidAMIAttributeItemValue",
              f'Invalid attribute item value "{BAD}" for userId item type.')
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: ["%s"]}\n' % BAD)
    plan, report = plan_and_apply(text, clients)
    assert [(o.operation.action.value, o.operation.principal.value) for o in report.failed] == [
        ("add", BAD)]
    assert "InvalidAMIAttributeItemValue" in report.failed[0].error
    assert [(o.operation.action.value, o.operation.principal.value) for o in report.applied] == [
        ("remove", "999988887777")]
    assert len(refused) == 1 and calls.by_op["ModifyImageAttribute"] == 1, "then Remove alone"
    assert aws.launch(image) == [], "the revocation went through"


def _snapshot_of(image_id: str) -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    [img] = ec2.describe_images(ImageIds=[image_id])["Images"]
    return str(img["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


@pytest.mark.parametrize("state, said", [("block-all-sharing", ["snapshot-public-not-in-effect"]),
                                         ("block-new-sharing", []), ("unblocked", [])])
def test_a_public_copy_permission_block_all_sharing_voids_is_not_called_granted(
        aws: Images, monkeypatch: pytest.MonkeyPatch, state: str, said: list[str]) -> None:
    """EC2 API Reference, EnableSnapshotBlockPublicAccess / DisableSnapshotBlockPublicAccess:
    in block-all-sharing mode "the attributes for these snapshots still indicate that they
    are publicly shared, even though they are not publicly available"; block-new-sharing
    leaves them publicly available."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    monkeypatch.setattr(EC2Response, "get_snapshot_block_public_access_state",
                        lambda self: ActionResult({"State": state, "ManagedBy": "account"}),
                        raising=False)
    image = aws.create("golden-1")
    boto3.client("ec2", region_name="us-east-1").modify_snapshot_attribute(
        SnapshotId=_snapshot_of(image), Attribute="createVolumePermission",
        OperationType="add", GroupNames=["all"])
    clients, calls = counted_clients()
    text = _public_manifest('  - {name: golden, select: {ids: [%s]}, launch: [prod], '
                            'copy: [public]}\n' % image)
    plan = build_plan(parse_manifest(text, "m.yaml"), Reader(clients, 4))
    assert calls.by_op["GetSnapshotBlockPublicAccessState"] == 1
    assert [f.code for f in plan.findings] == said
    assert plan.errors == ()
    if said:
        [warning] = plan.findings
        assert warning.severity.value == "warning" and warning.resource == image
        assert "not publicly available" in warning.message and state in warning.message
    # the launch share still goes ahead; nothing is written to the snapshot either way
    assert [(o.kind.value, o.action.value) for o in plan.operations] == [
        ("launch_permission", "add")]


@pytest.mark.parametrize("op", ["get_image_block_public_access_state",
                                "get_snapshot_block_public_access_state"])
def test_a_block_public_access_answer_without_its_state_is_unknown_not_a_crash(
        aws: Images, monkeypatch: pytest.MonkeyPatch, op: str) -> None:
    """EC2 API Reference, GetImageBlockPublicAccessState / GetSnapshotBlockPublicAccessState:
    the state field is documented as optional in the response ("Required: No"); an answer
    without it must read as unknown, said in words, not as a KeyError."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    monkeypatch.setattr(EC2Response, op, lambda self: ActionResult({"ManagedBy": "account"}),
                        raising=False)
    image = aws.create("golden-1")
    text = _public_manifest('  - {name: golden, select: {ids: [%s]}, launch: [public], '
                            'copy: [public]}\n' % image)
    plan = build_plan(parse_manifest(text, "m.yaml"), Reader(counted_clients()[0], 4))
    [unknown] = plan.findings
    assert unknown.code.value.endswith("public-access-unknown") and unknown.resource == image
    assert "the answer has no" in unknown.message and "KeyError" not in unknown.message


# --------------------------------------------------------------- 6. listing in pages


def test_the_listing_comes_in_growing_pages_each_image_once(aws: Images) -> None:
    """EC2 API reference, DescribeImages (MaxResults, NextToken) and the EC2 developer
    guide, "Pagination in the Amazon EC2 API" (a page's time grows with its items): a first
    page of 20, then 100, 500 ... every image once. moto answers one page whatever
    MaxResults says; the sandbox's extension pages as AWS does."""
    made = {aws.create(f"golden-{n}") for n in range(130)}
    clients, calls = counted_clients()
    pages = list(Reader(clients).image_pages("us-east-1"))
    assert [len(p) for p in pages] == [20, 100, 10]
    assert [p.get("MaxResults") for op, p in calls.params if op == "DescribeImages"] == [20, 100, 500]
    listed = [img.image_id for page in pages for img in page]
    assert len(listed) == len(set(listed)) and set(listed) == made


def test_an_image_listed_again_on_a_later_page_is_listed_once(aws: Images) -> None:
    """A listing that changes between pages (an image registered meanwhile) may show an
    image on two pages: the plan sees it once."""
    made = {aws.create(f"golden-{n}") for n in range(30)}
    clients, _ = counted_clients()
    first: list[dict[str, Any]] = []

    def repeat(parsed: dict[str, Any], **_: Any) -> None:
        if not first:
            first.extend(parsed["Images"][:1])
        else:
            parsed["Images"] = first + parsed["Images"]

    clients.get("ec2", "us-east-1").meta.events.register("after-call.ec2.DescribeImages", repeat)
    listed = [img.image_id for page in Reader(clients).image_pages("us-east-1") for img in page]
    assert sorted(listed) == sorted(made)


def test_a_listing_that_repeats_its_page_token_stops_with_one_line(aws: Images) -> None:
    """A NextToken answered twice would list the same page for ever (botocore's paginators
    refuse it too): one error line, no loop."""
    for n in range(30):
        aws.create(f"golden-{n}")
    clients, _ = counted_clients()

    def same_token(parsed: dict[str, Any], **_: Any) -> None:
        parsed["NextToken"] = "20"  # the first page's, answered again

    clients.get("ec2", "us-east-1").meta.events.register(
        "after-call.ec2.DescribeImages", same_token)
    with pytest.raises(Exception, match="DescribeImages in us-east-1 returned the same "
                                        "NextToken twice") as caught:
        list(Reader(clients).image_pages("us-east-1"))
    assert "\n" not in str(caught.value)


def test_the_emulated_pages_refuse_image_ids_with_max_results(aws: Images) -> None:
    """DescribeImages: ImageIds and MaxResults cannot be used in the same request."""
    image_id = aws.create("golden-1")
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with pytest.raises(ec2.exceptions.ClientError, match="InvalidParameterCombination"):
        ec2.describe_images(ImageIds=[image_id], MaxResults=5)
    assert [i["ImageId"] for i in ec2.describe_images(ImageIds=[image_id])["Images"]] == [image_id]
