"""Several image-factory accounts in one manifest (owners: / settings.role_arn / --owner),
through moto's multi-account support, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import MotoServer, Runner

pytestmark = pytest.mark.e2e

A, B = "111111111111", "222222222222"
PROD = "333333333333"


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/ami-share"


def owner_client(srv: MotoServer, account: str, region: str = "us-east-1") -> Any:
    import boto3

    creds = srv.client("sts").assume_role(RoleArn=role(account), RoleSessionName="setup")["Credentials"]
    return boto3.client("ec2", region_name=region, endpoint_url=srv.url,
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def make_image(srv: MotoServer, account: str, name: str, region: str = "us-east-1") -> str:
    return str(owner_client(srv, account, region).register_image(
        Name=name, RootDeviceName="/dev/xvda")["ImageId"])


def launch(srv: MotoServer, account: str, image: str, region: str = "us-east-1") -> list[dict[str, str]]:
    resp = owner_client(srv, account, region).describe_image_attribute(
        ImageId=image, Attribute="launchPermission")
    return list(resp["LaunchPermissions"])


def write(tmp_path: Path, owners: str) -> str:
    path = tmp_path / "amis.yaml"
    path.write_text(f"""\
version: 1
settings: {{name: amis, regions: [us-east-1, eu-west-1]}}
{owners}
images:
  - name: golden
    select: {{name: "golden-*"}}
    launch: ["{PROD}"]
""")
    return str(path)


def test_two_owner_accounts_in_one_manifest(server: tuple[MotoServer, Any], run_cli: Runner,
                                            tmp_path: Path) -> None:
    srv, _ = server
    a_east = make_image(srv, A, "golden-a")
    b_east = make_image(srv, B, "golden-b")
    b_west = make_image(srv, B, "golden-b", "eu-west-1")
    a_west = make_image(srv, A, "golden-a", "eu-west-1")  # A covers us-east-1 only
    m = write(tmp_path, f"""owners:
  - {{role_arn: "{role(A)}", regions: [us-east-1]}}
  - {{role_arn: "{role(B)}"}}""")

    r = run_cli("plan", m, "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert {(o["region"], o["resource"]) for o in doc["operations"]} == {
        ("us-east-1", a_east), ("us-east-1", b_east), ("eu-west-1", b_west)}

    r = run_cli("plan", m, "--format", "json", "--owner", B)
    assert {o["resource"] for o in json.loads(r.out)["operations"]} == {b_east, b_west}
    r = run_cli("plan", m, "--owner", "444444444444")
    assert r.code == 1 and "--owner 444444444444" in r.err

    log = tmp_path / "apply.jsonl"
    r = run_cli("apply", m, "--auto-approve", "--log-file", str(log))
    assert r.code == 0, r.out + r.err
    assert launch(srv, A, a_east) == [{"UserId": PROD}]
    assert launch(srv, B, b_east) == [{"UserId": PROD}]
    assert launch(srv, B, b_west, "eu-west-1") == [{"UserId": PROD}]
    assert launch(srv, A, a_west, "eu-west-1") == [], "outside owner A's Regions"
    owners = {r["resource"]: r["owner"] for r in map(json.loads, log.read_text().splitlines())
              if r["kind"] != "ownership_tag"}
    assert owners == {a_east: A, b_east: B, b_west: B}
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_settings_role_arn_acts_in_the_owner_account(server: tuple[MotoServer, Any],
                                                     run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    theirs = make_image(srv, A, "golden-a")
    mine = images.create("golden-caller")  # the caller's own image: not this manifest's owner
    m = write(tmp_path, "")
    path = Path(m)
    path.write_text(path.read_text().replace("settings: {name: amis, regions: [us-east-1, eu-west-1]}",
                                             f'settings: {{name: amis, regions: [us-east-1], role_arn: "{role(A)}"}}'))
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert launch(srv, A, theirs) == [{"UserId": PROD}]
    assert images.launch(mine) == []
    doc = json.loads(run_cli("plan", m, "--format", "json").out)
    assert doc["caller_account"] == A and doc["operations"] == []
