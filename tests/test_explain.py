"""``reconcile explain`` (README, "Why can't they launch it?"): a verdict line first, then the evidence; exit 0 can
launch, 3 cannot, 1 error. Each verdict is run on a sandbox built for it, in-process."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from builders import (
    KEY,
    P_ORG,
    P_PROD,
    image,
    key_info,
    key_policy,
    plan_for,
    snapshot,
    state,
)
from helpers import (
    ACCOUNT,
    EXAMPLES,
    ORG,
    OU,
    PROD,
    ROOT_STATEMENT,
    US,
    Images,
    MotoServer,
    Runner,
    manifest_yaml,
    run_main,
)

from reconciler.core import kms
from reconciler.core.explain import ImageFacts, Verdict, explain
from reconciler.core.kms import KeyInfo
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Principal
from reconciler.core.plan import Plan
from reconciler.core.planning import PlanOptions
from reconciler.shell.sandbox import encrypt_image

OTHER = "999988887777"


DENY = {"Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
        "Resource": "*", "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}}
IMAGES = {
    "direct": {"launch": [PROD]},
    "through-ou": {"launch": [OU]},
    "public": {"launch": ["public"]},
    "unshared": {},
    "disabled": {"launch": [PROD], "state": "disabled"},
    "key-missing": {"launch": [PROD], "encrypted_with": "closed"},
    "key-ok": {"launch": [PROD], "encrypted_with": "open"},
    "key-deny": {"launch": [PROD], "encrypted_with": "denying"},
    "aws-ebs": {"launch": [PROD], "encrypted_with": "aws/ebs"},
    "org-key": {"launch": [ORG], "encrypted_with": "org-open"},
    "deprecated": {"launch": [PROD], "deprecated": "2026-01-05"},
    "released": {"launch": [PROD], "tags": {"reconciler:manifest": "m"}},
    "kept": {"launch": [PROD], "tags": {"reconciler:manifest": "keeper"}},
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> str:
    state = {"version": 1, "account": ACCOUNT, "keys": [
        {"name": "closed", "region": "us-east-1", "policy": key_policy()},
        {"name": "open", "region": "us-east-1", "policy": key_policy(P_PROD)},
        {"name": "denying", "region": "us-east-1", "policy": key_policy(P_PROD, foreign=[DENY])},
        {"name": "org-open", "region": "us-east-1", "policy": key_policy(P_ORG)}],
        "images": [{"region": "us-east-1", "name": name, "id": f"ami-{n + 1:017x}", **spec}
                   for n, spec in enumerate(IMAGES.values())
                   for name in [list(IMAGES)[n]]]}
    path = tmp_path_factory.mktemp("explain") / "state.yaml"
    path.write_text(yaml.safe_dump(state, sort_keys=False))
    return str(path)


def image_id(name: str) -> str:
    return f"ami-{list(IMAGES).index(name) + 1:017x}"


@pytest.mark.parametrize("who, name, code, said", [
    (PROD, "direct", 0, "launch permission: granted to 111122223333 directly"),
    (PROD, "through-ou", 0, f"can launch {image_id('through-ou')} (through-ou): if account "
                            f"{PROD} is in {OU}"),
    (OU, "through-ou", 0, "launch permission: granted to"),
    ("public", "public", 0, "launch permission: public"),
    (OTHER, "public", 0, "launch permission: the image is public"),
    (PROD, "unshared", 3, "no launch permission for 111122223333"),
    (PROD, "disabled", 3, "the image is disabled"),
    (PROD, "key-missing", 3, "key policy of alias/closed does not allow 111122223333"),
    (PROD, "key-ok", 0, "Auto Scaling / Spot launches need settings.kms_grants: any"),
    (PROD, "key-deny", 0, "Deny statement DenyOutsideOrg may refuse"),
    (PROD, "aws-ebs", 3, "encrypted with the AWS managed key aws/ebs"),
    # the usual organization share: launch and key access both through the organization
    (PROD, "org-key", 0, f"if account {PROD} is in {ORG}"),
    (ACCOUNT, "unshared", 0, f"launch permission: {ACCOUNT} owns the image"),
])
def test_each_verdict(sandbox: str, who: str, name: str, code: int, said: str) -> None:
    r = run_main("explain", who, "--image", image_id(name), "--sandbox", sandbox)
    assert r.code == code, r.out + r.err
    first = r.out.splitlines()[0]
    assert ("cannot launch" if code == 3 else "can launch") in first
    assert said in r.out, r.out


def test_json_and_a_rule_of_the_manifest(sandbox: str) -> None:
    r = run_main("explain", "prod", str(EXAMPLES / "manifest.yaml"), "--rule",
                 "golden-al2023-encrypted", "--sandbox", str(EXAMPLES / "sandbox.yaml"),
                 "--format", "json")
    assert r.code == 3, r.out + r.err
    doc = json.loads(r.out)
    assert doc["principal"] == {"UserId": PROD} and doc["can_launch"] is False
    [img] = doc["images"]
    assert "does not allow 111122223333" in img["verdict"]
    assert "manifest: declared by rule golden-al2023-encrypted" in img["evidence"]


@pytest.mark.parametrize("args, said", [
    (["explain", PROD], "give exactly one of --image AMI_ID or --rule NAME"),
    (["explain", PROD, "--rule", "x"], "--rule needs the MANIFEST"),
    (["explain", "nobody", "--image", "ami-00000000000000001"], "'nobody' is not an account ID"),
])
def test_usage_errors_exit_1(args: list[str], said: str, tmp_path: Path) -> None:
    r = run_main(*args)
    assert r.code == 1 and said in r.err, r.err


def test_a_rule_matching_nothing_is_an_error(sandbox: str, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text('version: 1\nsettings: {name: m}\nimages:\n  - {name: none, select: {name: "nothing-*"}, '
                 'launch: ["111122223333"]}\n')
    r = run_main("explain", PROD, str(m), "--rule", "none", "--sandbox", sandbox)
    assert r.code == 1 and "matches no image" in r.err, r.out + r.err


def test_an_image_the_caller_does_not_own(sandbox: str) -> None:
    r = run_main("explain", PROD, "--image", "ami-0123456789abcdef0", "--sandbox", sandbox)
    assert r.code == 1 and "is not an image the caller owns" in r.err


def test_explain_on_the_moto_server(server: tuple[MotoServer, Images], run_cli: Runner) -> None:
    """The same verdicts against a real endpoint, as a CI job or an engineer runs it."""
    srv, images = server
    direct = images.create("golden-direct", launch=[{"UserId": PROD}])
    via_ou = images.create("golden-ou", launch=[{"OrganizationalUnitArn": OU}])
    kms_client = srv.client("kms")
    key = kms_client.create_key(Policy=json.dumps({"Version": "2012-10-17",
                                                   "Statement": [ROOT_STATEMENT]}))["KeyMetadata"]
    kms_client.create_alias(AliasName="alias/closed", TargetKeyId=key["KeyId"])
    locked = images.create("golden-locked", launch=[{"UserId": PROD}])
    encrypt_image(ACCOUNT, "us-east-1", locked, key["Arn"])

    r = run_cli("explain", PROD, "--image", direct)
    assert r.code == 0 and "launch permission: granted to 111122223333 directly" in r.out, r.err
    r = run_cli("explain", PROD, "--image", via_ou)
    assert r.code == 0 and f"if account {PROD} is in {OU}" in r.out.splitlines()[0], r.out
    r = run_cli("explain", PROD, "--image", locked, "--format", "json")
    assert r.code == 3, r.err
    doc = json.loads(r.out)
    assert doc["can_launch"] is False and [i["image"] for i in doc["images"]] == [locked]
    assert doc["images"][0]["verdict"].endswith(
        ": key policy of alias/closed does not allow 111122223333")


def test_a_disabled_image_a_rule_matches_is_said_to_be_unmanaged_not_unmatched() -> None:
    r = run_main("explain", "prod", str(EXAMPLES / "manifest.yaml"), "--rule", "legacy-ubuntu",
                 "--sandbox", str(EXAMPLES / "sandbox.yaml"))
    assert r.code == 3, r.out + r.err
    assert "manifest: rule legacy-ubuntu matches it, but a disabled image is not managed" in r.out
    assert "no rule manages this image" not in r.out


# --------------------------------------------------------------------------- pure verdicts
# Built from hand-made facts: what the owner account shows about one image backed by one
# snapshot, encrypted (unless told otherwise) with a customer managed key.

IMG, SNAP = "ami-0123456789abcdef0", "snap-0123456789abcdef0"
ORG_ID = "o-a1b2c3d4e5"


def facts(policy: dict[str, Any] | None = None, *, launch: tuple[str, ...] = (PROD,),
          manager: str = "CUSTOMER", key_state: str = "Enabled", encrypted: bool = True,
          image_state: str = "available", deprecated: str = "", **more: Any) -> ImageFacts:
    img = image(IMG, name="golden", state=image_state, snapshots=(SNAP,), encrypted=encrypted,
                deprecation_time=deprecated)
    snap = snapshot(SNAP, key=KEY if encrypted else "")
    keys = ({KEY: key_info(policy=policy or key_policy(), manager=manager, state=key_state)}
            if encrypted else {})
    principals = frozenset(p for p in map(Principal.parse_literal, launch) if p is not None)
    return ImageFacts(img, principals, {SNAP: snap}, {}, keys, **more)


def account(a: str) -> Principal:
    return Principal.account(a)


def key_lines(v: Verdict) -> list[str]:
    return [e for e in v.evidence if e.startswith("key ")]


# 1. The owner launches its own images; only an unusable image or key stops it.

def test_the_owner_can_launch_its_own_image_encrypted_with_aws_ebs() -> None:
    v = explain(account(ACCOUNT), facts(manager="AWS", launch=()))
    assert v.can_launch, v
    assert any("aws/ebs" in e for e in key_lines(v)), v.evidence


@pytest.mark.parametrize("why, case", [
    ("the image is disabled", {"image_state": "disabled"}),
    ("key alias/golden is Disabled", {"key_state": "Disabled"}),
])
def test_what_still_stops_the_owner(why: str, case: dict[str, Any]) -> None:
    v = explain(account(ACCOUNT), facts(launch=(), **case))
    assert not v.can_launch and why in v.summary, v


def test_the_owner_on_its_own_aws_ebs_image_through_the_cli(sandbox: str) -> None:
    r = run_main("explain", ACCOUNT, "--image", image_id("aws-ebs"), "--sandbox", sandbox)
    assert r.code == 0, r.out + r.err
    assert r.out.startswith(f"{ACCOUNT} can launch {image_id('aws-ebs')}"), r.out


# 2. Someone else's organization statement lets member accounts in, on that condition.

@pytest.mark.parametrize("actions", ["kms:*", [*kms.USE_ACTIONS, *kms.GRANT_ACTIONS]],
                         ids=["kms:*", "action-list"])
@pytest.mark.parametrize("shared_with", [ORG, PROD])
def test_someone_elses_organization_statement_lets_member_accounts_in_on_condition(
        actions: Any, shared_with: str) -> None:
    theirs = {"Sid": "OrgUse", "Effect": "Allow", "Principal": "*", "Action": actions,
              "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}}
    v = explain(account(PROD), facts(key_policy(foreign=[theirs]), launch=(shared_with,)))
    assert v.can_launch, v
    assert v.summary.startswith(f"if account {PROD} is in "), v.summary
    assert ORG_ID in v.summary or ORG in v.summary
    [line] = key_lines(v)
    assert "OrgUse" in line and "Root" not in line, line  # only the statement that allows it
    # and the organization itself: no condition at all
    assert explain(Principal.parse_literal(ORG) or account(PROD),
                   facts(key_policy(foreign=[theirs]), launch=(ORG,))).condition == ""


# 3. An unconditional Deny is a definite "cannot"; a conditional one "may refuse".

DENY_PROD = {"Sid": "DenyProd", "Effect": "Deny",
             "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*", "Resource": "*"}


def test_an_unconditional_deny_of_the_account_is_a_definite_cannot() -> None:
    v = explain(account(PROD), facts(key_policy(P_PROD, foreign=[DENY_PROD])))
    assert not v.can_launch, v
    assert "DenyProd" in v.summary, v.summary
    said = [e for e in v.evidence if "DenyProd" in e]
    assert said and not any("condition" in e and "no condition" not in e for e in said), said


def test_a_conditional_deny_may_refuse_because_its_conditions_cannot_be_evaluated() -> None:
    v = explain(account(PROD), facts(key_policy(P_PROD, foreign=[DENY])))
    assert v.can_launch, v
    [said] = [e for e in v.evidence if "DenyOutsideOrg" in e]
    assert "may refuse" in said and "its conditions cannot be evaluated from the owner account" \
        in said, said


def test_plan_and_explain_read_a_deny_the_same_way() -> None:
    """The plan's warning says what explain says: no "conditions" for a Deny without any."""
    for deny, conditional in ((DENY_PROD, False), (DENY, True)):
        plan = _plan_on_key(key_info(P_PROD, foreign=[deny]), [PROD])
        [warning] = [f.message for f in plan.findings if f.code == "kms-deny-statement"]
        assert ("conditions are not evaluated" in warning) is conditional, warning
        assert explain(account(PROD), facts(key_policy(P_PROD, foreign=[deny]))).can_launch \
            is conditional


def _plan_on_key(info: KeyInfo, launch: list[str], kms_mode: str = "key-policy") -> Plan:
    m = parse_manifest(manifest_yaml(f"- {{name: g, select: {{ids: [{IMG}]}}, launch: "
                                     f"[{', '.join(repr(x) for x in launch)}]}}",
                                     settings=f"name: m\nkms: {kms_mode}").encode(), "m.yaml")
    img = image(IMG, name="golden", tags={"reconciler:manifest": "m"}, snapshots=(SNAP,),
                encrypted=True)
    current = frozenset(p for p in map(Principal.parse_literal, launch) if p is not None)
    st = state({img.key: current}, snapshots={(US, SNAP): snapshot(SNAP, key=KEY)},
               keys={(US, KEY): info})
    return plan_for(m, {US: [img]}, st, PlanOptions(now="2026-06-01T00:00:00+00:00"))


@pytest.mark.parametrize("statements, who", [
    (dict(grantees=(P_PROD,)), PROD),
    (dict(grantees=(P_ORG,)), ORG),
    (dict(), PROD),
    (dict(), ORG),
    ({"extra": {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
                "Action": "kms:*", "Resource": "*"}}, PROD),
    ({"extra": {"Sid": "TheirOrg", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
                "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}}},
     ORG),
    ({"extra": {"Sid": "TheirOrg", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
                "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": ORG_ID}}}},
     PROD),
    ({"extra": {"Sid": "Everyone", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
                "Resource": "*"}}, PROD),
    ({"extra": {"Sid": "Everyone", "Effect": "Allow", "Principal": {"AWS": "*"},
                "Action": "kms:*", "Resource": "*"}}, ORG),
    ({"extra": {"Sid": "Odd", "Effect": "Allow", "Principal": "*", "Action": "kms:*",
                "Resource": "*", "Condition": {"StringEquals": {"aws:SourceVpc": "vpc-1"}}}},
     PROD),
    (dict(grantees=(P_ORG,)), OU),
], ids=["tool-account", "tool-org", "closed-account", "closed-org", "their-account",
        "their-org", "their-org-for-a-member", "everyone-account", "everyone-org",
        "unknown-condition", "tool-org-for-its-ou"])
def test_a_verdict_never_contradicts_the_plan(statements: dict[str, Any], who: str) -> None:
    """kms: check reports missing key access exactly when explain cannot say, without a
    condition, that the key lets the principal in."""
    extra = statements.pop("extra", None)
    policy = key_policy(*statements.get("grantees", ()), foreign=[extra] if extra else [])
    plan = _plan_on_key(key_info(policy=policy), [who], "check")
    missing = any(f.code == "kms-access-missing" for f in plan.findings)
    p = Principal.parse_literal(who)
    assert p is not None
    v = explain(p, facts(policy, launch=(who,)))
    assert (v.can_launch and not v.condition) is not missing, (v, plan.findings)


# 4. What the owner account cannot see is said, with how to check it.

def test_every_verdict_lists_the_allowed_amis_setting_it_cannot_see() -> None:
    """EC2 User Guide, "Control the discovery and use of AMIs in Amazon EC2 with Allowed AMIs"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-allowed-amis.html): an account
    setting of the consumer; ImageAllowed in its DescribeImages. It never restricts the
    account's own AMIs."""
    for case in (facts(key_policy(P_PROD)), facts(encrypted=False),
                 facts(encrypted=False, launch=())):
        v = explain(account(PROD), case)
        [allowed] = [u for u in v.not_checked if u.check == "allowed-amis"]
        assert PROD in allowed.where
        assert "aws ec2 get-allowed-images-settings --region us-east-1" in allowed.commands
        assert any(c.startswith(f"aws ec2 describe-images --region us-east-1 --image-ids {IMG}")
                   and "ImageAllowed" in c for c in allowed.commands), allowed.commands
        if v.can_launch:
            assert "every check passed" not in v.summary and "not checked" in v.summary
    owner = explain(account(ACCOUNT), facts(encrypted=False, launch=()))
    assert not [u for u in owner.not_checked if u.check == "allowed-amis"]


def test_what_verify_checks_points_to_it() -> None:
    """``reconcile verify`` (SPEC §7e) asks the consumer account for its Allowed AMIs setting
    and (a dry run) whether the key lets it in; not for the Auto Scaling grant."""
    base = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]}
    policy = kms.with_grantees(base, {kms.Grantee(kms.GranteeKind.ACCOUNT, PROD)}, "aws",
                               kms.GrantShape.ANY)
    v = explain(account(PROD), facts(policy, manifest_path="my amis.yaml"))
    line = (f"reconcile verify 'my amis.yaml' --consumer-role "
            f"'arn:aws:iam::{{account}}:role/ami-share-verify' --account {PROD} --image {IMG}")
    commands = {u.check: u.commands for u in v.not_checked}
    assert set(commands) == {"allowed-amis", "autoscaling-grant", "consumer-key-access"}
    assert commands["allowed-amis"][-1] == line and commands["consumer-key-access"][-1] == line
    assert not any(c.startswith("reconcile") for c in commands["autoscaling-grant"])
    ou = explain(Principal.parse_literal(OU), facts(policy, launch=(OU,)))  # type: ignore[arg-type]
    assert ou.not_checked[0].commands[-1] == (
        "reconcile verify MANIFEST --consumer-role 'arn:aws:iam::{account}:role/"
        f"ami-share-verify' --account <account-id> --image {IMG}")


def test_grant_statements_without_condition_do_not_claim_auto_scaling_works() -> None:
    """EC2 Auto Scaling User Guide, "Required AWS KMS key policy for use with encrypted
    volumes" (https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html):
    the consumer account creates the grant for its service-linked role itself."""
    base = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]}
    policy = kms.with_grantees(base, {kms.Grantee(kms.GranteeKind.ACCOUNT, PROD)}, "aws",
                               kms.GrantShape.ANY)
    v = explain(account(PROD), facts(policy))
    assert v.can_launch, v
    assert not any("work too" in e for e in v.evidence), v.evidence
    [grant] = [u for u in v.not_checked if u.check == "autoscaling-grant"]
    slr = (f"arn:aws:iam::{PROD}:role/aws-service-role/autoscaling.amazonaws.com/"
           "AWSServiceRoleForAutoScaling")
    assert (f"aws kms list-grants --region us-east-1 --key-id {KEY} --grantee-principal {slr}"
            in grant.commands), grant.commands
    assert PROD in grant.where


def test_not_checked_through_the_cli_in_text_and_json(sandbox: str) -> None:
    r = run_main("explain", PROD, "--image", image_id("key-ok"), "--sandbox", sandbox)
    assert r.code == 0, r.out + r.err
    assert "  not checked: " in r.out and "aws ec2 get-allowed-images-settings" in r.out, r.out
    r = run_main("explain", PROD, "--image", image_id("key-ok"), "--sandbox", sandbox,
                 "--format", "json")
    [img] = json.loads(r.out)["images"]
    checks = {u["check"]: u for u in img["not_checked"]}
    assert "allowed-amis" in checks and checks["allowed-amis"]["commands"], img
    assert set(checks["allowed-amis"]) >= {"what", "why", "where", "commands"}


# 5. A deprecated image is found by its ID only.

def test_a_deprecated_image_is_launchable_by_its_id_only() -> None:
    """EC2 User Guide, "Deprecate an AMI"
    (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ami-deprecate.html)."""
    v = explain(account(PROD), facts(encrypted=False, deprecated="2026-01-05T00:00:00.000Z",
                                     now="2026-06-01T00:00:00+00:00"))
    assert v.can_launch, v
    assert "by its ID" in v.summary, v.summary
    [state] = [e for e in v.evidence if e.startswith("image state")]
    assert "--include-deprecated" in state and "launch templates" in state, state
    later = explain(account(PROD), facts(encrypted=False, deprecated="2027-01-05T00:00:00.000Z",
                                         now="2026-06-01T00:00:00+00:00"))
    assert "by its ID" not in later.summary
    assert any("will be deprecated" in e for e in later.evidence), later.evidence


def test_a_deprecated_image_through_the_cli(sandbox: str) -> None:
    r = run_main("explain", PROD, "--image", image_id("deprecated"), "--sandbox", sandbox)
    assert r.code == 0, r.out + r.err
    assert "by its ID" in r.out.splitlines()[0], r.out


# 6. Names: did you mean, a hint to pass the manifest, and released images.

def _manifest(tmp_path: Path, settings: str = "name: m") -> str:
    m = tmp_path / "amis.yaml"
    m.write_text(manifest_yaml('- {name: golden-direct, select: {name: "direct"}, launch: [prod]}',
                               settings=settings))
    return str(m)


def test_a_mistyped_principal_name_gets_a_did_you_mean(sandbox: str, tmp_path: Path) -> None:
    r = run_main("explain", "prdo", _manifest(tmp_path), "--image", image_id("direct"),
                 "--sandbox", sandbox)
    assert r.code == 1 and "did you mean 'prod'?" in r.err, r.err


def test_a_principal_name_without_a_manifest_says_to_pass_it() -> None:
    r = run_main("explain", "prod", "--image", "ami-00000000000000001")
    assert r.code == 1, r.err
    assert "pass the MANIFEST that names it" in r.err, r.err


def test_a_mistyped_rule_name_gets_a_did_you_mean(sandbox: str, tmp_path: Path) -> None:
    r = run_main("explain", "prod", _manifest(tmp_path), "--rule", "golden-direkt",
                 "--sandbox", sandbox)
    assert r.code == 1 and "did you mean 'golden-direct'?" in r.err, r.err


@pytest.mark.parametrize("settings, name, said", [
    ("name: m", "released", "the next apply revokes its shares"),
    ("name: keeper\non_release: keep", "kept", "on_release: keep"),
])
def test_an_image_the_manifest_released_says_what_the_next_apply_does(
        sandbox: str, tmp_path: Path, settings: str, name: str, said: str) -> None:
    r = run_main("explain", "prod", _manifest(tmp_path, settings), "--image", image_id(name),
                 "--sandbox", sandbox)
    assert r.code == 0, r.out + r.err
    [line] = [x for x in r.out.splitlines() if x.startswith("  manifest: ")]
    assert "released" in line and said in line, line


@pytest.mark.parametrize("block, said", [
    ("block-all-sharing", f"snapshot {SNAP}: copy (createVolumePermission) not in effect: it "
                          "shows public, but Snapshot Block Public Access is block-all-sharing "
                          "in us-east-1"),
    ("block-new-sharing", f"snapshot {SNAP}: copy (createVolumePermission) granted (public)"),
    ("", f"snapshot {SNAP}: copy (createVolumePermission) granted (public)")])
def test_a_public_copy_permission_block_all_sharing_voids_is_not_called_granted(
        block: str, said: str) -> None:
    """EC2 API Reference, DisableSnapshotBlockPublicAccess: under block-all-sharing the
    snapshots' attributes "still indicate that they are publicly shared, even though they
    are not publicly available"."""
    shown = replace(facts(encrypted=False, snapshot_block=block),
                    copy={SNAP: frozenset({Principal.public()})})
    v = explain(account(PROD), shown)
    assert said in v.evidence, v.evidence


def test_explain_reads_snapshot_block_public_access_where_a_snapshot_shows_public(
        server: tuple[MotoServer, Images], run_cli: Runner,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    monkeypatch.setattr(EC2Response, "get_snapshot_block_public_access_state",
                        lambda self: ActionResult({"State": "block-all-sharing",
                                                   "ManagedBy": "account"}), raising=False)
    srv, images = server
    image = images.create("golden-copy", launch=[{"UserId": PROD}])
    ec2 = srv.client("ec2")
    [shown] = ec2.describe_images(ImageIds=[image])["Images"]
    snap = shown["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                  OperationType="add", GroupNames=["all"])
    r = run_cli("explain", PROD, "--image", image)
    assert r.code == 0, r.err
    assert f"snapshot {snap}: copy (createVolumePermission) not in effect" in r.out, r.out
