"""Never disagree with the sweep (issue: event-driven correction): random drift on random
managed images, each change followed by its EventBridge event (``sample_events``) through
``reconcile event``, and then a whole ``plan`` shows no changes.

One estate for every example (set up once, against the moto server): each example starts
from the state the one before left, which the property says is the manifest's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import (
    ACCOUNT,
    DEV,
    HAND,
    PROD,
    STAGING,
    US,
    Images,
    MotoServer,
    Runner,
    cli_env,
    manifest_yaml,
    run_main,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sample_events import (
    dump,
    modify_image,
    modify_snapshot,
    put_key_policy,
    reset_image,
    reset_snapshot,
    tags,
)

from reconciler.shell.sandbox import encrypt_image

RULES = """\
- name: golden-a
  select: {name: "golden-a-*"}
  launch: [prod, staging]
  copy: [prod]
- name: golden-b
  select: {name: "golden-b-*"}
  launch: [dev]
"""
ROOT = {"Sid": "EnableRoot", "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*", "Resource": "*"}
DRIFTS = ("add-launch", "remove-launch", "reset-launch", "add-copy", "remove-copy",
          "reset-copy", "key-policy", "untag")


def _drift(kind: str, image: str, who: str, srv: MotoServer, key: str) -> dict[str, Any]:
    """Make one change by hand, and return the event AWS would deliver for it."""
    from moto.ec2.models import ec2_backends

    ec2 = srv.client("ec2")
    snap = ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"][0]["Ebs"][
        "SnapshotId"]
    if kind in ("add-launch", "remove-launch"):
        change = "Add" if kind == "add-launch" else "Remove"
        ec2.modify_image_attribute(ImageId=image, Attribute="launchPermission",
                                   LaunchPermission={change: [{"UserId": who}]})
        return modify_image(image, **{change.lower(): [{"UserId": who}]})
    if kind == "reset-launch":  # moto lacks ResetImageAttribute: its effect (MOTO-NOTES)
        ec2_backends[ACCOUNT][US].amis[image].launch_permissions = []
        return reset_image(image)
    if kind in ("add-copy", "remove-copy"):
        op = "add" if kind == "add-copy" else "remove"
        ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                      OperationType=op, UserIds=[who])
        return modify_snapshot(snap, **{op: [who]})
    if kind == "reset-copy":  # moto lacks ResetSnapshotAttribute: its effect on AWS, every
        # createVolumePermission removed (EC2 API reference, ResetSnapshotAttribute)
        found = ec2_backends[ACCOUNT][US].snapshots[snap]
        found.create_volume_permission_userids.clear()
        found.create_volume_permission_groups.clear()
        return reset_snapshot(snap)
    if kind == "key-policy":  # the tool's statements deleted by hand
        policy = json.dumps({"Version": "2012-10-17", "Statement": [ROOT]})
        srv.client("kms").put_key_policy(KeyId=key, PolicyName="default", Policy=policy)
        return put_key_policy(key, policy)
    ec2.delete_tags(Resources=[image], Tags=[{"Key": "reconciler:manifest"}])
    return tags("DeleteTags", [image], {"reconciler:manifest": "m"})


@settings(max_examples=6, deadline=None, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(drifts=st.lists(st.tuples(st.sampled_from(DRIFTS), st.integers(0, 3),
                                 st.sampled_from([HAND, PROD, STAGING, DEV])),
                       min_size=1, max_size=3))
def test_events_after_random_drift_leave_nothing_for_the_sweep(
        estate: dict[str, Any], run_cli: Runner, drifts: list[tuple[str, int, str]]) -> None:
    for kind, which, who in drifts:
        event = _drift(kind, estate["images"][which], who, estate["srv"], estate["key"])
        r = run_cli("event", estate["m"], "-", input=dump(event))
        assert r.code == 0, (kind, r.out, r.err)
    r = run_cli("plan", estate["m"], "--format", "json", "--detailed-exitcode")
    assert r.code == 0, (drifts, r.out, r.err)
    assert json.loads(r.out)["ownership"] == {"tag": [], "untag": []}


# --------------------------------------------------------------------------- the estate


@pytest.fixture(scope="module")
def estate(moto_server_session: MotoServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Any]]:
    """Four managed images of two rules, three of them encrypted with one key, in step with
    the manifest after one apply."""
    srv = moto_server_session
    srv.reset()
    aws = Images(lambda region: srv.client("ec2", region))
    key = srv.client("kms").create_key(Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [ROOT]}))["KeyMetadata"]["Arn"]
    images = [aws.create(name) for name in ("golden-a-1", "golden-a-2", "golden-b-1",
                                            "golden-b-2")]
    for image in images[1:]:
        encrypt_image(ACCOUNT, US, image, key)
    manifest = tmp_path_factory.mktemp("event-properties") / "m.yaml"
    manifest.write_text(manifest_yaml(RULES))
    r = run_main("apply", str(manifest), "--auto-approve", env=dict(cli_env(srv.url)))
    assert r.code == 0, r.err
    yield {"srv": srv, "images": images, "key": key, "m": str(manifest)}
    srv.reset()
