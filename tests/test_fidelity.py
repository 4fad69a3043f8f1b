"""Faithful to real AWS where the emulator is not: Auto Scaling grants, key-policy capacity,
public-share rules, per-call limits. Refusals moto does not make are injected with a botocore
``before-send`` hook answering exactly as AWS documents them (each test cites the page)."""

from __future__ import annotations

import json
from typing import Any

import boto3
from helpers import Images
from test_kms import (
    OU,
    PROD,
    ROOT_STATEMENT,
    encrypted_image,
    make_key,
    manifest,
    owned,
    plan_and_apply,
    policy_of,
    replan,
)

from reconciler import kms
from reconciler.kms import Grantee, GranteeKind
from reconciler.manifest import parse_manifest
from reconciler.render import key_policy_details, text_lines

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
    text = manifest(rules, ", kms_grants: any")
    plan, report = plan_and_apply(text)
    assert not report.failed and not plan.errors
    assert _grant_conditions(key) == {
        kms.SID_ACCOUNTS_GRANT: None,
        kms.SID_ORGS_GRANT: {"ForAnyValue:StringLike": {
            "aws:PrincipalOrgPaths": ["o-a1b2c3d4e5/*/ou-ab12-cdef3456/*"]}}}
    assert replan(text).operations == ()

    # Back to the default: the tool recognises its own statements and narrows them again.
    default = manifest(rules)
    migration = replan(default)
    kms_ops = [(o.action.value, o.principal.value) for o in migration.operations]
    assert kms_ops == [("add", PROD), ("add", OU)], "the grants that change, and nothing else"
    assert [f.code for f in migration.findings] == ["kms-grant-shape"]
    details = "".join(text_lines(migration, parse_manifest(default, "m.yaml"), color=False,
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
    too_many = manifest('  - {name: golden, select: {name: "golden-*"}, launch: [%s]}\n' % launch)
    plan = replan(too_many)
    [err] = [f for f in plan.errors if f.code == "key-policy-too-large"]
    assert f"at most {fits:,} accounts" in err.message and "Organization or OU" in err.message
    assert plan.operations == (), "nothing is shared through a key that cannot hold them"

    launch = ", ".join(f'"{a}"' for a in _accounts(fits))
    exact = manifest('  - {name: golden, select: {name: "golden-*"}, launch: [%s]}\n' % launch)
    plan, report = plan_and_apply(exact)
    assert not report.failed and not plan.errors
    text = boto3.client("kms", region_name="us-east-1").get_key_policy(
        KeyId=key, PolicyName="default")["Policy"]
    assert len(text.encode()) == _size(fits) <= 32_768, "sent compact, measured as sent"
    assert len(owned(json.loads(text))[kms.SID_ACCOUNTS]["Principal"]["AWS"]) == fits
