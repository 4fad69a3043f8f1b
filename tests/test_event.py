"""``reconcile event`` (SPEC §7c): one EventBridge event, shaped as AWS delivers it
(``sample_events``, which cites the AWS pages), drives the manifest onto exactly the managed
images it concerns, against the moto server; and ``plan``/``apply --image``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from helpers import ACCOUNT, HAND, PROD, STAGING, US, Images, MotoServer, Runner, manifest_yaml
from sample_events import (
    ALICE,
    ami_state,
    assumed_role,
    cloudtrail,
    dump,
    modify_image,
    modify_snapshot,
    put_key_policy,
    reset_image,
    reset_snapshot,
    tags,
)

from reconciler.core import kms
from reconciler.shell.sandbox import encrypt_image

GOLDEN = """\
- name: golden
  select: {name: "golden-*"}
  launch: [prod, staging]
  copy: [prod]
"""
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ami-share"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture
def bare(server: tuple[MotoServer, Images], tmp_path: Path) -> dict[str, Any]:
    """Three images the manifest manages, never applied, and one unmanaged image."""
    srv, aws = server
    manifest = _write(tmp_path, "m.yaml", manifest_yaml(GOLDEN))
    images = [aws.create(f"golden-{i}") for i in range(3)]
    other = aws.create("other", launch=[{"UserId": HAND}])
    return {"srv": srv, "aws": aws, "m": manifest, "images": images, "other": other,
            "tmp": tmp_path}


@pytest.fixture
def estate(bare: dict[str, Any], run_cli: Runner) -> dict[str, Any]:
    """:func:`bare`, in step with the manifest after one apply."""
    r = run_cli("apply", bare["m"], "--auto-approve")
    assert r.code == 0, r.err
    return bare


def _event(run_cli: Runner, estate: dict[str, Any], event: dict[str, Any], *args: str,
           endpoint: str | None = None) -> Any:
    path = _write(estate["tmp"], "event.json", dump(event))
    return run_cli("event", estate["m"], path, *args, endpoint=endpoint)


def _snapshot(srv: MotoServer, image: str) -> str:
    ami = srv.client("ec2").describe_images(ImageIds=[image])["Images"][0]
    return str(ami["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


def _copy(srv: MotoServer, snap: str) -> list[str]:
    resp = srv.client("ec2").describe_snapshot_attribute(SnapshotId=snap,
                                                         Attribute="createVolumePermission")
    return sorted(p["UserId"] for p in resp["CreateVolumePermissions"])


def _launch(aws: Images, image: str) -> list[str]:
    return sorted(p.get("UserId") or p.get("Group", "") for p in aws.launch(image))


def test_a_hand_made_share_is_removed_on_its_event_with_a_handful_of_requests(
        estate: dict[str, Any], run_cli: Runner) -> None:
    aws, (a, b, _), srv = estate["aws"], estate["images"], estate["srv"]
    for image in (a, b):  # drift on two images; the event is about one
        aws.client(US).modify_image_attribute(ImageId=image, Attribute="launchPermission",
                                              LaunchPermission={"Add": [{"UserId": HAND}]})
    with FaultProxy(srv.url) as proxy:
        r = _event(run_cli, estate, modify_image(a, add=[{"UserId": HAND}]), endpoint=proxy.url)
    assert r.code == 0, r.err
    assert "- launch 999988887777" in r.out and "Apply complete: 0 added, 1 removed" in r.out
    assert _launch(aws, a) == [PROD, STAGING]
    assert _launch(aws, b) == sorted([HAND, PROD, STAGING])  # not this event's image
    # O(1): identity, the image, its launch permissions, its snapshot and copy permissions,
    # the write
    assert sum(proxy.forwarded.values()) <= 8, proxy.forwarded
    assert proxy.forwarded["DescribeImageAttribute"] == 1 and proxy.forwarded["DescribeImages"] == 2
    assert proxy.forwarded["ModifyImageAttribute"] == 1


def test_detect_only_names_the_actor_and_the_drift_and_writes_nothing(
        estate: dict[str, Any], run_cli: Runner) -> None:
    aws, a = estate["aws"], estate["images"][0]
    aws.client(US).modify_image_attribute(ImageId=a, Attribute="launchPermission",
                                          LaunchPermission={"Remove": [{"UserId": STAGING}]})
    r = _event(run_cli, estate, modify_image(a, remove=[{"UserId": STAGING}]), "--detect-only")
    assert r.code == 2, r.err
    first = r.out.splitlines()[0]
    assert first.startswith(f"drift: ModifyImageAttribute on {a} in us-east-1 by {ALICE} at "
                            "2026-12-01T10:00:00Z: ")
    assert first.endswith(f"{a}: launch {STAGING} missing"), first
    assert _launch(aws, a) == [PROD]
    # no drift: exit 0
    aws.client(US).modify_image_attribute(ImageId=a, Attribute="launchPermission",
                                          LaunchPermission={"Add": [{"UserId": STAGING}]})
    r = _event(run_cli, estate, modify_image(a, add=[{"UserId": STAGING}]), "--detect-only")
    assert r.code == 0 and "drift" not in r.out, r.out


def test_a_reset_image_is_shared_again(estate: dict[str, Any], run_cli: Runner) -> None:
    from moto.ec2.models import ec2_backends

    aws, a = estate["aws"], estate["images"][0]
    # moto lacks ResetImageAttribute (MOTO-NOTES): its effect on AWS, every explicit launch
    # permission removed (EC2 API reference, ResetImageAttribute), done in the backend
    ec2_backends[ACCOUNT][US].amis[a].launch_permissions = []
    r = _event(run_cli, estate, reset_image(a))
    assert r.code == 0, r.err
    assert _launch(aws, a) == [PROD, STAGING]


def test_snapshot_events_correct_the_copy_permissions_of_the_images_it_backs(
        estate: dict[str, Any], run_cli: Runner) -> None:
    srv, a = estate["srv"], estate["images"][1]
    snap = _snapshot(srv, a)
    srv.client("ec2").modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                                OperationType="add", UserIds=[HAND])
    r = _event(run_cli, estate, modify_snapshot(snap, add=[HAND]))
    assert r.code == 0, r.err
    assert _copy(srv, snap) == [PROD]
    srv.client("ec2").modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                                OperationType="remove", UserIds=[PROD])
    r = _event(run_cli, estate, reset_snapshot(snap))
    assert r.code == 0, r.err
    assert _copy(srv, snap) == [PROD]


def test_a_key_policy_edited_by_hand_gets_the_tools_statements_back(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    srv, aws = server
    kms_client = srv.client("kms")
    root = {"Sid": "EnableRoot", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    key = kms_client.create_key(Policy=json.dumps({"Version": "2012-10-17",
                                                   "Statement": [root]}))["KeyMetadata"]["Arn"]
    images = [aws.create(f"golden-{i}") for i in range(2)]
    for image in images:
        encrypt_image(ACCOUNT, US, image, key)
    manifest = _write(tmp_path, "m.yaml", manifest_yaml(GOLDEN))
    assert run_cli("apply", manifest, "--auto-approve").code == 0
    before = kms_client.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    assert set(kms.OWNED_SIDS) & {s["Sid"] for s in json.loads(before)["Statement"]}
    hand = json.dumps({"Version": "2012-10-17", "Statement": [root]})
    kms_client.put_key_policy(KeyId=key, PolicyName="default", Policy=hand)
    estate = {"m": manifest, "tmp": tmp_path}
    r = _event(run_cli, estate, put_key_policy(key, hand))
    assert r.code == 0, r.err
    assert ", ".join(sorted(images)) in r.err  # the images encrypted with the key
    after = json.loads(kms_client.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert {s["Sid"] for s in after["Statement"]} >= {"AmiShareReconcilerAccounts",
                                                      "AmiShareReconcilerAccountsGrant"}
    assert run_cli("plan", manifest, "--detailed-exitcode").code == 0


def test_tag_events_retag_a_managed_image_and_release_a_tagged_one(
        estate: dict[str, Any], run_cli: Runner) -> None:
    aws, a, other = estate["aws"], estate["images"][0], estate["other"]
    ec2 = aws.client(US)
    ec2.delete_tags(Resources=[a], Tags=[{"Key": "reconciler:manifest"}])
    r = _event(run_cli, estate, tags("DeleteTags", [a], {"reconciler:manifest": "m"}))
    assert r.code == 0, r.err
    assert "Ownership tags: 1 written" in r.out
    # someone marks an unmanaged image as this manifest's: it is released, as a sweep does
    ec2.create_tags(Resources=[other], Tags=[{"Key": "reconciler:manifest", "Value": "m"}])
    r = _event(run_cli, estate, tags("CreateTags", [other], {"reconciler:manifest": "m"}))
    assert r.code == 0, r.err
    assert _launch(aws, other) == []
    assert run_cli("plan", estate["m"], "--detailed-exitcode").code == 0


def test_a_new_build_is_shared_at_once_and_the_one_it_displaces_unshared(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from reconciler.shell.sandbox import set_image_dates

    srv, aws = server
    rule = """\
- name: golden
  select: {name: "golden-*", latest: 2}
  launch: [prod]
"""
    manifest = _write(tmp_path, "m.yaml", manifest_yaml(rule))
    builds = [aws.create(f"golden-{i}") for i in range(3)]
    for i, image in enumerate(builds):
        set_image_dates(ACCOUNT, US, image, f"2026-11-0{i + 1}T00:00:00Z", None)
    assert run_cli("apply", manifest, "--auto-approve").code == 0
    new = aws.create("golden-3")
    set_image_dates(ACCOUNT, US, new, "2026-11-04T00:00:00Z", None)
    r = run_cli("event", manifest, "-", input=dump(ami_state(new)))
    assert r.code == 0, r.err
    assert _launch(aws, new) == [PROD]
    assert _launch(aws, builds[1]) == []  # no longer among the newest 2
    assert _launch(aws, builds[2]) == [PROD]
    assert run_cli("plan", manifest, "--detailed-exitcode").code == 0


@pytest.mark.parametrize("make, why", [
    (lambda e: {**ami_state(e["images"][0]), "detail-type": "EC2 Instance State-change Notification"},
     "is not one reconcile acts on"),
    (lambda e: modify_image(e["other"], add=[{"UserId": PROD}]),
     "concerns no image the manifest manages"),
    (lambda e: modify_image(e["images"][0], add=[{"UserId": HAND}], account="210987654321"),
     "not an owner account of the manifest"),
    (lambda e: modify_image(e["images"][0], add=[{"UserId": HAND}],
                            error="Client.UnauthorizedOperation"),
     "the call failed (Client.UnauthorizedOperation)"),
    (lambda e: cloudtrail("ModifyImageAttribute", {"imageId": e["images"][0],
                                                  "description": {"value": "x"},
                                                  "attributeType": "description"}),
     "changes the description attribute"),
    (lambda e: tags("CreateTags", ["i-0123456789abcdef0"], {"Name": "web"}), "names no image"),
    (lambda e: ami_state(e["images"][0], "failed"), "is failed: there is nothing to share"),
    (lambda e: modify_image(e["images"][0], add=[{"UserId": HAND}],
                            identity=assumed_role(ROLE, "ami-share-reconciler")),
     "it is reconcile's own write (session ami-share-reconciler of"),
], ids=["other-kind", "unmanaged", "other-account", "failed-call", "other-attribute",
        "not-an-image", "failed-build", "own-session"])
def test_events_about_nothing_managed_are_ignored_in_one_line(
        bare: dict[str, Any], run_cli: Runner, make: Any, why: str) -> None:
    if "reconcile's own" in why:
        Path(bare["m"]).write_text(manifest_yaml(GOLDEN, settings=f'role_arn: "{ROLE}"'))
    r = _event(run_cli, bare, make(bare))
    assert r.code == 0, r.err
    assert len(r.out.splitlines()) == 1 and r.out.startswith("ignored: ") and why in r.out, r.out


def test_a_session_of_another_role_named_like_the_tools_is_not_trusted(
        estate: dict[str, Any], run_cli: Runner) -> None:
    a = estate["images"][0]
    estate["aws"].client(US).modify_image_attribute(
        ImageId=a, Attribute="launchPermission", LaunchPermission={"Add": [{"UserId": HAND}]})
    spoof = assumed_role(f"arn:aws:iam::{ACCOUNT}:role/intruder", "ami-share-reconciler")
    r = _event(run_cli, estate, modify_image(a, add=[{"UserId": HAND}], identity=spoof))
    assert r.code == 0 and "1 removed" in r.out, r.out
    # a configured actor of the tool's own is ignored
    r = _event(run_cli, estate, modify_image(a, add=[{"UserId": HAND}]), "--own-actor", ALICE)
    assert r.code == 0 and r.out.startswith("ignored:") and "reconcile's own actor" in r.out


def test_a_duplicate_delivery_changes_nothing(estate: dict[str, Any], run_cli: Runner) -> None:
    a = estate["images"][0]
    estate["aws"].client(US).modify_image_attribute(
        ImageId=a, Attribute="launchPermission", LaunchPermission={"Add": [{"UserId": HAND}]})
    event = modify_image(a, add=[{"UserId": HAND}])
    assert _event(run_cli, estate, event).code == 0
    again = _event(run_cli, estate, event)
    assert again.code == 0 and "No changes" in again.out and "Apply complete" not in again.out


@pytest.mark.parametrize("body, message", [
    ("{not json", "not an EventBridge event: it is not valid JSON (line 1, column 2)"),
    ("[1, 2]", "not an EventBridge event: it is not a JSON object"),
    (json.dumps({"detail-type": "EC2 AMI State Change", "account": ACCOUNT, "region": US}),
     "not an EventBridge event: it has no detail object"),
    (dump(modify_image("ami-12345")), "detail.requestParameters.imageId is missing or not an AMI ID"),
    (dump({**ami_state("ami-0123456789abcdef0"), "region": "moon-1"}), "region 'moon-1' is not"),
    # `resources` that is not a list ended as "internal error: TypeError"
    (dump({**(ev := put_key_policy("1234abcd-12ab-34cd-56ef-1234567890ab", "{}")),
           "detail": {**ev["detail"], "resources": 5, "requestParameters": {}}}),
     "detail.requestParameters.keyId is missing"),
], ids=["not-json", "not-object", "no-detail", "bad-image", "bad-region", "bad-resources"])
def test_a_malformed_event_is_one_line_and_exit_1(run_cli: Runner, tmp_path: Path,
                                                  body: str, message: str) -> None:
    path = _write(tmp_path, "bad.json", body)
    r = run_cli("event", _write(tmp_path, "m.yaml", manifest_yaml(GOLDEN)), path)
    assert r.code == 1 and r.out == ""
    assert r.err.strip().count("\n") == 0 and message in r.err and path in r.err, r.err


def test_plan_image_reads_and_plans_only_that_image(estate: dict[str, Any],
                                                   run_cli: Runner) -> None:
    aws, (a, b, _), srv = estate["aws"], estate["images"], estate["srv"]
    for image in (a, b):
        aws.client(US).modify_image_attribute(ImageId=image, Attribute="launchPermission",
                                              LaunchPermission={"Add": [{"UserId": HAND}]})
    rule = GOLDEN + '- name: nothing\n  select: {name: "absent-*"}\n  launch: [prod]\n'
    Path(estate["m"]).write_text(manifest_yaml(rule))
    with FaultProxy(srv.url) as proxy:
        r = run_cli("plan", estate["m"], "--image", a, "--format", "json", endpoint=proxy.url)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["images"] == [a] and doc["summary"]["images"] == 1
    assert {op["resource"] for op in doc["operations"]} == {a}
    assert "no-match" not in {f["code"] for f in doc["findings"]}  # not knowable from one image
    assert proxy.forwarded["DescribeImageAttribute"] == 1
    # a saved plan applies only in a run restricted to the same images
    out = _write(estate["tmp"], "p.json", r.out)
    r = run_cli("apply", estate["m"], "--plan", out)
    assert r.code == 1 and f"saved plan covers images {a}, but this apply covers every" in r.err
    r = run_cli("apply", estate["m"], "--plan", out, "--image", a)
    assert r.code == 0, r.err
    assert _launch(aws, a) == [PROD, STAGING] and HAND in _launch(aws, b)


def test_plan_image_refuses_an_image_no_owner_has(estate: dict[str, Any], run_cli: Runner) -> None:
    r = run_cli("plan", estate["m"], "--image", "ami-0123456789abcdef0")
    assert r.code == 1 and "--image ami-0123456789abcdef0: no owner account" in r.err
    r = run_cli("plan", estate["m"], "--image", "ami-xyz")
    assert r.code == 1 and "--image 'ami-xyz' is not an AMI ID" in r.err


def test_plan_image_counts_every_public_image_of_the_region(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    srv, aws = server
    for i in range(2):
        aws.create(f"old-public-{i}", launch=[{"Group": "all"}])
    image = aws.create("golden-new")
    text = manifest_yaml('- name: golden\n  select: {name: "golden-*"}\n  launch: [public]\n',
                         settings="allow_public: true\npublic_quota: 2")
    manifest = _write(tmp_path, "m.yaml", text)
    with FaultProxy(srv.url) as proxy:
        r = run_cli("plan", manifest, "--image", image, "--region", US, "--format", "json",
                    endpoint=proxy.url)
    assert r.code == 1
    assert "public-quota" in {f["code"] for f in json.loads(r.out)["findings"]}
    assert proxy.forwarded["DescribeImages"] == 2  # the image, and the Region's public ones


def test_the_lambda_handler_runs_the_same_command_and_logs_json_lines(
        estate: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.cli import aws_lambda

    aws, a = estate["aws"], estate["images"][0]
    aws.client(US).modify_image_attribute(ImageId=a, Attribute="launchPermission",
                                          LaunchPermission={"Add": [{"UserId": HAND}]})
    monkeypatch.setenv("AWS_ENDPOINT_URL", estate["srv"].url)
    monkeypatch.setenv("RECONCILE_MANIFEST", estate["m"])
    good = modify_image(a, add=[{"UserId": HAND}])
    # as examples/event-driven delivers them: an SQS batch, a body per event
    batch = {"Records": [{"messageId": "m-1", "eventSource": "aws:sqs", "body": dump(good)},
                         {"messageId": "m-2", "eventSource": "aws:sqs", "body": "{not json"}]}
    result = aws_lambda.handler(batch, type("Context", (), {"aws_request_id": "r-1"})())
    # a malformed event fails the same way every time: logged, not handed back to retry
    assert result == {"batchItemFailures": []}
    assert _launch(aws, a) == [PROD, STAGING]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ends = [line for line in lines if line["stream"] == "result"]
    assert [e["exit_code"] for e in ends] == [0, 1]
    assert ends[0]["event_id"] == good["id"] and ends[0]["aws_request_id"] == "r-1"
    assert any("Apply complete: 0 added, 1 removed" in line["message"] for line in lines)
    assert any(line["level"] == "error" and "not an EventBridge event" in line["message"]
               for line in lines)
    # a direct invocation, and the unforeseen: one JSON line, never a traceback
    monkeypatch.setattr("reconciler.cli.event.affected",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom\nagain")))
    assert aws_lambda.handler(good) == {"exit_code": 1}
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert [json.loads(line)["level"] for line in out.splitlines()] == ["error", "error"]
    assert "internal error: RuntimeError: boom again" in out
    # a readable event whose run failed is handed back, so SQS retries it
    again = {"Records": [{"messageId": "m-3", "eventSource": "aws:sqs", "body": dump(good)}]}
    assert aws_lambda.handler(again) == {"batchItemFailures": [{"itemIdentifier": "m-3"}]}


def test_an_event_keeps_the_key_access_other_managed_images_declare_without_reading_them(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    srv, aws = server
    root = {"Sid": "EnableRoot", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
            "Resource": "*"}
    key = srv.client("kms").create_key(Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [root]}))["KeyMetadata"]["Arn"]
    a, *others = [aws.create(name) for name in ("golden-a-1", "golden-b-1", "golden-b-2")]
    for image in (a, *others):
        encrypt_image(ACCOUNT, US, image, key)
    rules = """\
- name: a
  select: {name: "golden-a-*"}
  launch: [prod]
- name: b
  select: {name: "golden-b-*"}
  launch: [staging]
"""
    manifest = _write(tmp_path, "m.yaml", manifest_yaml(rules))
    assert run_cli("apply", manifest, "--auto-approve").code == 0
    aws.client(US).modify_image_attribute(ImageId=a, Attribute="launchPermission",
                                          LaunchPermission={"Add": [{"UserId": HAND}]})
    with FaultProxy(srv.url) as proxy:
        r = _event(run_cli, {"m": manifest, "tmp": tmp_path},
                   modify_image(a, add=[{"UserId": HAND}]), endpoint=proxy.url)
    assert r.code == 0, r.err
    assert "kms" not in r.out and "still grant" not in r.out  # staging stays, silently
    assert _launch(aws, a) == [PROD]
    # the other images on the key are listed, not read
    assert proxy.forwarded["DescribeImageAttribute"] == 1
    assert proxy.forwarded["DescribeSnapshotAttribute"] == 0
    assert proxy.forwarded["PutKeyPolicy"] == 0
    assert sum(proxy.forwarded.values()) <= 12, proxy.forwarded
    assert run_cli("plan", manifest, "--detailed-exitcode").code == 0


def test_values_from_the_event_are_printed_inert(run_cli: Runner, tmp_path: Path) -> None:
    """SPEC §7d: the actor, the call and the time come from whoever wrote the event."""
    event = modify_image("ami-0123456789abcdef0", add=[{"UserId": HAND}],
                         identity={"arn": "arn:aws:iam::123456789012:user/x\n::error::pwned\x1b[31m"},
                         error="Denied\n::warning::x")
    r = run_cli("event", _write(tmp_path, "m.yaml", manifest_yaml(GOLDEN)), "-",
                input=dump(event))
    assert r.code == 0 and len(r.out.splitlines()) == 1, r.out
    assert "\\n::error::pwned\\x1b[31m" in r.out and "\x1b" not in r.out
    assert not any(line.startswith("::") for line in r.out.splitlines())
