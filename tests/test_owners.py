"""Several image-factory accounts in one manifest (owners: / settings.role_arn / --owner),
through moto's multi-account support, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import MotoServer, Runner
from sample_events import modify_image

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


def plan_role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/ami-share-plan"


class Assumed:
    """The roles reconcile assumes in the owner accounts (moto's STS records each)."""

    def __init__(self) -> None:
        self.seen = 0

    def since_last(self) -> list[str]:
        from moto.sts.models import sts_backends

        roles = [r for a in (A, B) for r in sts_backends[a]["aws"].assumed_roles
                 if r.session_name == "ami-share-reconciler"]
        roles.sort(key=lambda r: r.expiration)
        new, self.seen = roles[self.seen:], len(roles)
        return sorted(r.role_arn for r in new)


def test_commands_that_only_read_assume_the_plan_role(server: tuple[MotoServer, Any],
                                                      run_cli: Runner, tmp_path: Path) -> None:
    """A pull-request plan holds no write access where the manifest names a read-only plan
    role: plan and explain assume it; apply (of a saved plan too) the role that writes. An
    owner without a plan role is read with its role_arn."""
    srv, _ = server
    a_image, b_image = make_image(srv, A, "golden-a"), make_image(srv, B, "golden-b")
    m = write(tmp_path, f"""owners:
  - {{role_arn: "{role(A)}", plan_role_arn: "{plan_role(A)}", regions: [us-east-1]}}
  - {{role_arn: "{role(B)}", regions: [us-east-1]}}""")
    roles = Assumed()
    roles.since_last()

    saved = tmp_path / "plan.json"
    r = run_cli("plan", m, "--out", str(saved))
    assert r.code == 0 and a_image in r.out and b_image in r.out, r.err
    assert roles.since_last() == [plan_role(A), role(B)]
    r = run_cli("explain", PROD, m, "--rule", "golden")
    assert r.code == 3 and a_image in r.out, r.out + r.err  # not shared yet: it says why
    assert roles.since_last() == [plan_role(A), role(B)]
    r = run_cli("plan", m, "--owner", plan_role(A), "--format", "json")  # --owner by plan role
    assert {o["resource"] for o in json.loads(r.out)["operations"]} == {a_image}
    assert roles.since_last() == [plan_role(A)]

    r = run_cli("apply", m, "--plan", str(saved), "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert roles.since_last() == [role(A), role(B)]
    assert launch(srv, A, a_image) == [{"UserId": PROD}]
    assert launch(srv, B, b_image) == [{"UserId": PROD}]
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def settings_with_plan_role(tmp_path: Path) -> Path:
    """A manifest whose one owner (A) is reached through role_arn, read through its plan role."""
    path = tmp_path / "amis.yaml"
    path.write_text(f"""\
version: 1
settings: {{name: amis, regions: [us-east-1], role_arn: "{role(A)}", plan_role_arn: "{plan_role(A)}"}}
images:
  - {{name: golden, select: {{name: "golden-*"}}, launch: ["{PROD}"]}}
""")
    return path


def test_settings_plan_role_reads_and_role_arn_writes(server: tuple[MotoServer, Any],
                                                      run_cli: Runner, tmp_path: Path) -> None:
    srv, _ = server
    image = make_image(srv, A, "golden-a")
    path = settings_with_plan_role(tmp_path)
    roles = Assumed()
    roles.since_last()
    assert run_cli("plan", str(path), "--detailed-exitcode").code == 2
    assert roles.since_last() == [plan_role(A)]
    assert run_cli("usage-reports", str(path), "--dry-run").code == 0  # it only reads
    assert roles.since_last() == [plan_role(A)]
    r = run_cli("apply", str(path), "--auto-approve")
    assert r.code == 0 and launch(srv, A, image) == [{"UserId": PROD}], r.out + r.err
    assert roles.since_last() == [role(A)]


def test_an_event_detected_only_reads_through_the_plan_role(server: tuple[MotoServer, Any],
                                                           run_cli: Runner, tmp_path: Path) -> None:
    """`event --detect-only` reads (the plan role); `event` corrects (role_arn)."""
    srv, _ = server
    image = make_image(srv, A, "golden-a")
    hand = "999988887777"
    owner_client(srv, A).modify_image_attribute(
        ImageId=image, Attribute="launchPermission", LaunchPermission={"Add": [{"UserId": hand}]})
    path = settings_with_plan_role(tmp_path)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(modify_image(image, add=[{"UserId": hand}], account=A)))
    roles = Assumed()
    roles.since_last()
    r = run_cli("event", str(path), str(event), "--detect-only")
    assert r.code == 2 and hand in r.out, r.out + r.err
    assert roles.since_last() == [plan_role(A)]
    r = run_cli("event", str(path), str(event))
    assert r.code == 0, r.out + r.err
    assert roles.since_last() == [role(A)]
    assert launch(srv, A, image) == [{"UserId": PROD}]
