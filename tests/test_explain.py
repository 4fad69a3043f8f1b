"""``reconcile explain`` (README, "Why can't they launch it?"): a verdict line first, then the evidence; exit 0 can
launch, 3 cannot, 1 error. Each verdict is run on a sandbox built for it, in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ACCOUNT, EXAMPLES, ORG, OU, Images, MotoServer, Runner, run_main

from reconciler.core import kms
from reconciler.shell.sandbox import encrypt_image

PROD, OTHER = "111122223333", "999988887777"
ROOT = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}


def _policy(*extra: dict[str, Any], grantees: tuple[str, ...] = (),
            orgs: tuple[str, ...] = ()) -> dict[str, Any]:
    base = {"Version": "2012-10-17", "Statement": [ROOT, *extra]}
    return kms.with_grantees(base, {kms.Grantee(kms.GranteeKind.ACCOUNT, g) for g in grantees}
                             | {kms.Grantee(kms.GranteeKind.ORG, o) for o in orgs}, "aws")


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
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> str:
    state = {"version": 1, "account": ACCOUNT, "keys": [
        {"name": "closed", "region": "us-east-1", "policy": _policy()},
        {"name": "open", "region": "us-east-1", "policy": _policy(grantees=(PROD,))},
        {"name": "denying", "region": "us-east-1", "policy": _policy(DENY, grantees=(PROD,))},
        {"name": "org-open", "region": "us-east-1", "policy": _policy(orgs=("o-a1b2c3d4e5",))}],
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
                                                   "Statement": [ROOT]}))["KeyMetadata"]
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
