"""``reconcile verify``'s verdicts (SPEC §7e), from hand-made answers of a consumer account:
what it sees of the image, its Allowed AMIs setting, its keys; which account is asked about
which image; the role template. And the test layer's own reading of a key policy
(``consumer_view``), which the end-to-end tests in ``test_verify.py`` rely on."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from builders import KEY, P_PROD, P_STAGING, ami, image, listing
from consumer_view import VERIFY_ROLE, key_policy_decision
from helpers import (
    ACCOUNT,
    DEV,
    OU,
    PROD,
    STAGING,
    manifest_yaml,
)

from reconciler.core import allowed_amis
from reconciler.core.allowed_amis import AllowedSettings, Criterion
from reconciler.core.desired import select
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Principal
from reconciler.core.verify import (
    DRY_RUN_OK,
    Answer,
    KeySeen,
    RegionView,
    Seen,
    Status,
    Target,
    declares,
    judge,
    targets,
    template_problem,
)

ORG_ID = "o-a1b2c3d4e5"


NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
IMG = image(1, name="golden-al2023-2026.11.1", creation_date="2026-11-01T10:00:00.000Z")


def target(account: str = PROD, *, keys: tuple[str, ...] = (), unread: tuple[str, ...] = (),
           via: tuple[Principal, ...] | None = None) -> Target:
    return Target(account, IMG, via or (Principal.account(account),), ("golden",), keys, unread)


def seen(allowed: bool | None = None, state: str = "available") -> dict[str, Seen]:
    return {IMG.image_id: Seen(state, allowed)}


def denied(policy: str, action: str = "kms:DescribeKey") -> Answer:
    return Answer("AccessDeniedException", f"AccessDeniedException: User: arn:aws:sts::{PROD}:"
                  f"assumed-role/v/s is not authorized to perform: {action} on resource: {KEY} "
                  f"{policy}", failed=True)


@pytest.mark.parametrize(("view", "status", "said"), [
    (RegionView(images=seen()), Status.CAN, "it sees the image by ID"),
    (RegionView(images=seen(state="disabled")), Status.CANNOT, "the image is disabled"),
    (RegionView(), Status.CANNOT, "the image is not shared with it"),
    (RegionView(listing=Answer("UnauthorizedOperation", "UnauthorizedOperation: no", True)),
     Status.UNKNOWN, "DescribeImages in account 111122223333 failed: UnauthorizedOperation"),
    (RegionView(images=seen(False), allowed=AllowedSettings(
        "audit-mode", (Criterion(providers=("amazon",)),))),
     Status.CAN, f"would hide it once enabled (criterion 1: its ImageProviders (amazon) do not "
                 f"include the image's owner {ACCOUNT}; add {ACCOUNT} to ImageProviders"),
    (RegionView(allowed_answer=Answer("UnauthorizedOperation", "UnauthorizedOperation: no", True)),
     Status.CANNOT, "its Allowed AMIs setting could not be read (UnauthorizedOperation: no)"),
], ids=["seen", "disabled", "unseen", "listing-refused", "audit-mode", "settings-unread"])
def test_verdicts_from_what_the_account_sees(view: RegionView, status: Status,
                                            said: str) -> None:
    v = judge(target(), view, NOW)
    assert v.status is status and said in v.line({PROD: "prod"}), v.line({})


@pytest.mark.parametrize(("key", "status", "said"), [
    (KeySeen(Answer(), "Enabled", Answer(DRY_RUN_OK, "DryRunOperationException: ok", True)),
     Status.CAN, "lets it in (dry run)"),
    (KeySeen(Answer(), "PendingDeletion"), Status.CANNOT, "is PendingDeletion"),
    (KeySeen(Answer(), "Enabled", denied("because no resource-based policy allows the "
                                         "kms:GenerateDataKeyWithoutPlaintext action")),
     Status.CANNOT, "a dry run of kms:GenerateDataKeyWithoutPlaintext was refused "
                    "(AccessDeniedException: because no resource-based policy allows"),
    # the verifying role's own policy refused: nothing is known about the launching roles
    (KeySeen(denied("because no identity-based policy allows the kms:DescribeKey action")),
     Status.UNKNOWN, "the verifying role in 111122223333 may not call kms:DescribeKey itself"),
    (KeySeen(Answer("", "kms:DescribeKey failed: cannot reach the AWS endpoint", True)),
     Status.UNKNOWN, "kms:DescribeKey on key"),
], ids=["dry-run-ok", "pending-deletion", "dry-run-refused", "role-refused", "no-answer"])
def test_verdicts_from_the_key(key: KeySeen, status: Status, said: str) -> None:
    v = judge(target(keys=(KEY,)), RegionView(images=seen(), keys={KEY: key}), NOW)
    assert v.status is status and said in v.line({}), v.line({})


def test_a_cannot_outweighs_what_could_not_be_checked() -> None:
    v = judge(target(keys=(KEY,), unread=("snap-1",)), RegionView(keys={KEY: KeySeen(
        denied("because no identity-based policy allows the kms:DescribeKey action"))}), NOW)
    assert v.status is Status.CANNOT
    assert v.reasons[1:] == (
        "also not checked: the verifying role in 111122223333 may not call kms:DescribeKey "
        "itself (AccessDeniedException: User: arn:aws:sts::111122223333:assumed-role/v/s is "
        f"not authorized to perform: kms:DescribeKey on resource: {KEY} because no "
        "identity-based policy allows the kms:DescribeKey action); give it the policy in "
        "README, \"Check from the consumer's side\"",
        "also not checked: the owner cannot read snapshot snap-1, so its KMS key cannot be "
        "checked")


@pytest.mark.parametrize(("launch", "said"), [
    ({P_STAGING}, f"the image is not shared with it (the owner shares it with {STAGING}): a "
                  "share removed by hand? `reconcile apply` restores the declared share"),
    (set(), "the owner shares it with nobody"),
    ({P_PROD}, "the owner shares it with the account, yet the account does not see it"),
])
def test_an_unseen_image_is_explained_by_the_owners_launch_permissions(
        launch: set[Principal], said: str) -> None:
    v = judge(target(), RegionView(), NOW, frozenset(launch))
    assert said in v.reasons[0]


def test_an_unseen_image_names_every_cause() -> None:
    """Allowed AMIs (enabled) hides what it does not allow: with the share missing too, both
    are said; with the share in place, only the setting (which may depend on conditions only
    EC2 evaluates)."""
    hides = AllowedSettings("enabled", (Criterion(providers=("amazon",)),))
    v = judge(target(), RegionView(allowed=hides), NOW, frozenset())
    assert "its Allowed AMIs setting (enabled) does not allow it: criterion 1" in v.reasons[0]
    assert "; also the image is not shared with it (the owner shares it with nobody)" in \
        v.reasons[0]
    maybe = AllowedSettings("enabled", (Criterion(providers=(ACCOUNT,),
                                                  opaque=("ImageWatermarks",)),))
    v = judge(target(), RegionView(allowed=maybe), NOW, frozenset({P_PROD}))
    assert v.reasons == (f"account {PROD} does not see it (DescribeImages by ID): its Allowed "
                         "AMIs setting (enabled) may not allow it: criterion 1 depends on "
                         "ImageWatermarks, which only EC2 evaluates; change it with aws ec2 "
                         "replace-image-criteria-in-allowed-images-settings in that account",)


@pytest.mark.parametrize(("criteria", "managed_by", "said"), [
    ([Criterion(providers=("amazon",))], "account", f"add {ACCOUNT} to ImageProviders"),
    ([Criterion(names=("base-*",))], "account",
     "no ImageNames pattern (base-*) matches 'golden-al2023-2026.11.1'"),
    ([Criterion(names=("golden-al2023-2026.?1.1",))], "account", ""),  # ? is one character
    ([Criterion(names=("golden-[a]*",))], "account", "no ImageNames pattern"),  # [ is itself
    ([Criterion(max_days_created=7)], "account",
     "created 2026-11-01, more than 7 days ago (CreationDateCondition)"),
    ([Criterion(providers=("amazon",)), Criterion(providers=(ACCOUNT,), names=("x",))],
     "declarative-policy", "set by the organization's declarative policy"),
    ([Criterion(providers=(ACCOUNT,), opaque=("ScanResultCondition",))], "account",
     "criterion 1 depends on ScanResultCondition, which only EC2 evaluates"),
    ([], "account", "it has no criteria"),
], ids=["provider", "name", "wildcard", "no-classes", "created", "declarative", "opaque",
        "empty"])
def test_why_allowed_amis_does_not_allow_an_image(criteria: list[Criterion], managed_by: str,
                                                  said: str) -> None:
    why = allowed_amis.explain(AllowedSettings("enabled", tuple(criteria), managed_by), IMG, NOW)
    assert (why is not None and said in why.text) if said else why is None
    if why is not None:
        assert why.definite is (said != "criterion 1 depends on ScanResultCondition, which only "
                                "EC2 evaluates")


def test_allowed_settings_as_get_allowed_images_settings_answers() -> None:
    s = AllowedSettings.parse({"State": "enabled", "ManagedBy": "declarative-policy",
                               "ImageCriteria": [{"ImageProviders": ["amazon", ACCOUNT],
                                                  "CreationDateCondition": {
                                                      "MaximumDaysSinceCreated": 300},
                                                  "ImageWatermarks": [{"WatermarkKey": "k"}]}]})
    assert s.to_dict() == {"state": "enabled", "managed_by": "declarative-policy", "criteria": [
        {"providers": ["amazon", ACCOUNT], "max_days_since_created": 300,
         "evaluated_by_ec2_only": ["ImageWatermarks"]}]}
    assert AllowedSettings.parse({}).state == "disabled"


@pytest.mark.parametrize(("template", "ok"), [
    ("arn:aws:iam::{account}:role/ami-share-verify", True),
    ("arn:aws:iam::{account}:role/path/to/reader", True),
    ("arn:aws-us-gov:iam::{account}:role/r", True),
    ("arn:aws:iam::{account}:role/r{account}", False),
    ("arn:aws:iam::123456789012:role/{account}", False),
    ("arn:aws:iam::{account}:role/", False),
])
def test_the_role_template(template: str, ok: bool) -> None:
    assert (template_problem(template) is None) is ok


def test_what_is_checked_for_whom() -> None:
    m = parse_manifest(manifest_yaml("""\
- {name: a, select: {name: golden-1}, launch: [prod, staging]}
- {name: b, select: {name: golden-1}, launch: [ou, prod]}
- {name: c, select: {name: golden-2}, launch: [public]}
""", settings="allow_public: true").encode(), "m.yaml")
    managed = select(m, listing(image(1), image(2))).managed
    every = {(t.account, t.image.image_id, t.rules) for t in targets(managed)}
    assert every == {(PROD, ami(1), ("a", "b")), (STAGING, ami(1), ("a",))}
    named = {(t.account, t.image.image_id, t.direct) for t in targets(managed, [DEV, PROD])}
    assert named == {(PROD, ami(1), True), (DEV, ami(1), False), (DEV, ami(2), False),
                     (PROD, ami(2), False)}
    assert declares(m, DEV) and declares(m, PROD)


def test_the_emulated_key_policy_answers_as_kms_does() -> None:
    """The test layer's reading (``consumer_view``), independent of the product's: the key
    policy must allow the calling account, an explicit Deny wins, and
    kms:GrantIsForAWSResource is never true for a direct call."""
    caller = f"arn:aws:sts::{PROD}:assumed-role/{VERIFY_ROLE}/ami-share-reconciler"

    def decide(*statements: dict[str, Any], groups: tuple[str, ...] = ()) -> str:
        return key_policy_decision({"Statement": list(statements)}, PROD, caller,
                                   "kms:GenerateDataKeyWithoutPlaintext", groups)

    allow = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
             "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]}
    assert decide(allow) == "allow"
    assert decide({**allow, "Principal": {"AWS": f"arn:aws:iam::{STAGING}:root"}}) == "implicit"
    assert decide({**allow, "Condition": {"Bool": {"kms:GrantIsForAWSResource": True}}}) == \
        "implicit"
    deny = {"Effect": "Deny", "Principal": "*", "Action": "kms:*",
            "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": ORG_ID}}}
    assert decide(allow, deny) == "deny"  # not in the organization
    org = f"arn:aws:organizations::{ACCOUNT}:organization/{ORG_ID}"
    assert decide(allow, deny, groups=(org,)) == "allow"
    assert decide({**allow, "Principal": "*", "Condition": {
        "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": [f"{ORG_ID}/*/ou-ab12-cdef3456/*"]}}},
        groups=(OU,)) == "allow"
