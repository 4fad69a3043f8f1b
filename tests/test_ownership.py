"""Ownership that survives a deleted rule or Region (README, "Ownership: deleting a rule revokes its shares"), and the guards a pull-request
check sees before merge. ``reconcile`` runs in-process against the moto server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import PROD, STAGING, Images, MotoServer, Runner

TAG = "reconciler:manifest"


def write(tmp_path: Path, rules: str, settings: str = "") -> str:
    path = tmp_path / "golden-amis.yaml"
    name = "" if "name:" in settings else ", name: golden-amis"
    path.write_text(f"""\
version: 1
settings: {{regions: [us-east-1, eu-west-1]{name}{settings}}}
principals: {{prod: "{PROD}", staging: "{STAGING}"}}
images:
{rules}""")
    return str(path)


STABLE = '  - {name: stable, select: {name: "golden-*"}, launch: [prod, staging]}\n'
CANDIDATES = '  - {name: candidates, select: {name: "rc-*"}, launch: [staging]}\n'


def tags_of(srv: MotoServer, image: str, region: str = "us-east-1") -> dict[str, str]:
    raw = srv.client("ec2", region).describe_images(ImageIds=[image])["Images"][0]
    return {t["Key"]: t["Value"] for t in raw.get("Tags") or []}


def plan_doc(run_cli: Runner, m: str, *extra: str) -> dict[str, Any]:
    r = run_cli("plan", m, "--format", "json", *extra)
    assert r.code in (0, 1), r.err
    return dict(json.loads(r.out))


def test_deleting_a_rule_revokes_its_shares(server: tuple[MotoServer, Images], run_cli: Runner,
                                            tmp_path: Path) -> None:
    srv, images = server
    golden = images.create("golden-1")
    rc = images.create("rc-1")
    m = write(tmp_path, STABLE + CANDIDATES)
    first = plan_doc(run_cli, m)
    assert first["ownership"] == {"tag": sorted([golden, rc]), "untag": []}
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert "Ownership tags: 2 written, 0 removed." in r.out
    assert tags_of(srv, rc) == {TAG: "golden-amis"}
    assert images.launch(rc) == [{"UserId": STAGING}]

    write(tmp_path, STABLE)  # the candidates rule is deleted
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 2, r.out + r.err
    # the reason names the tag the release relies on: a reviewer can check it is theirs
    assert (f"- launch {STAGING} (staging)  no longer matched by any rule; it carries "
            f"{TAG}=golden-amis") in r.out
    assert f"release 1 image no longer matched by any rule (its shares are revoked above): {rc}" \
        in r.out
    doc = plan_doc(run_cli, m)
    assert doc["ownership"] == {"tag": [], "untag": [rc]}
    assert [(o["action"], o["resource"], o["rules"]) for o in doc["operations"]] == [
        ("remove", rc, [])]
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert images.launch(rc) == [] and TAG not in tags_of(srv, rc)
    assert images.launch(golden) == [{"UserId": PROD}, {"UserId": STAGING}]
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0 and "Ownership" not in r.out, r.out


def test_dropping_a_region_releases_its_images(server: tuple[MotoServer, Images],
                                               run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    east = images.create("golden-1")
    west = images.create("golden-1", region="eu-west-1")
    m = write(tmp_path, STABLE)
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert tags_of(srv, west, "eu-west-1") == {TAG: "golden-amis"}

    path = Path(m)
    path.write_text(path.read_text().replace("regions: [us-east-1, eu-west-1]",
                                             "regions: [us-east-1]"))
    doc = plan_doc(run_cli, m)
    assert doc["regions"] == ["us-east-1"]
    assert doc["ownership"]["untag"] == [west]
    assert {(o["region"], o["resource"]) for o in doc["operations"]} == {("eu-west-1", west)}
    # --region restricts the run: the dropped Region is not scanned, nothing is released
    assert plan_doc(run_cli, m, "--region", "us-east-1")["ownership"]["untag"] == []
    # ... but a job for that Region (a CI matrix sharded by Region) releases its images
    sharded = plan_doc(run_cli, m, "--region", "eu-west-1")
    assert sharded["ownership"]["untag"] == [west]
    assert {(o["region"], o["resource"]) for o in sharded["operations"]} == {("eu-west-1", west)}
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert images.launch(west, "eu-west-1") == []
    assert images.launch(east) == [{"UserId": PROD}, {"UserId": STAGING}]


def test_dropping_copy_from_a_rule_hands_the_snapshot_back(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """The snapshot's tag says the manifest manages its copy permissions. Once the rule has
    no `copy:`, the tag goes, so a later release never revokes copy permissions someone
    granted meanwhile."""
    from helpers import HAND

    srv, images = server
    rc = images.create("rc-1")
    ec2 = srv.client("ec2")
    snap = str(ec2.describe_images(ImageIds=[rc])["Images"][0]["BlockDeviceMappings"][0][
        "Ebs"]["SnapshotId"])
    with_copy = '  - {name: rc, select: {name: "rc-*"}, launch: [staging], copy: [staging]}\n'
    m = write(tmp_path, STABLE + with_copy)
    assert run_cli("apply", m, "--auto-approve").code == 0
    write(tmp_path, STABLE + with_copy.replace(", copy: [staging]", ""))
    r = run_cli("plan", m)
    assert f"untag 1 snapshot whose copy permissions the manifest no longer manages: {snap}" \
        in r.out, r.out
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert TAG not in {t["Key"] for t in ec2.describe_snapshots(SnapshotIds=[snap])[
        "Snapshots"][0].get("Tags") or []}
    ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                  OperationType="add", UserIds=[HAND])
    write(tmp_path, STABLE)  # the rule goes: rc is released
    assert run_cli("apply", m, "--auto-approve").code == 0
    perms = ec2.describe_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission")
    assert {p["UserId"] for p in perms["CreateVolumePermissions"]} == {STAGING, HAND}, \
        "copy permissions the manifest no longer managed are left alone"
    assert images.launch(rc) == []


def test_on_release_keep_only_removes_the_tag(server: tuple[MotoServer, Images],
                                              run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    rc = images.create("rc-1")
    m = write(tmp_path, STABLE + CANDIDATES, ", on_release: keep")
    assert run_cli("apply", m, "--auto-approve").code == 0
    write(tmp_path, STABLE, ", on_release: keep")
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, "pending tag writes alone are not changes"
    assert "shares kept (on_release: keep)" in r.out and "info[released-kept]" in r.out
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0 and "Ownership tags: 0 written, 1 removed." in r.out, r.out
    assert images.launch(rc) == [{"UserId": STAGING}] and TAG not in tags_of(srv, rc)


def test_copy_permissions_are_released_only_where_the_tool_managed_them(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    rc = images.create("rc-1")
    hand = images.create("rc-2")
    ec2 = srv.client("ec2")

    def snapshot(image: str) -> str:
        return str(ec2.describe_images(ImageIds=[image])["Images"][0]["BlockDeviceMappings"][0][
            "Ebs"]["SnapshotId"])

    def copies(image: str) -> list[str]:
        return [p["UserId"] for p in ec2.describe_snapshot_attribute(
            SnapshotId=snapshot(image), Attribute="createVolumePermission")[
            "CreateVolumePermissions"]]

    # rc-2's snapshot grants copy by hand; its rule does not manage copy permissions
    ec2.modify_snapshot_attribute(SnapshotId=snapshot(hand), Attribute="createVolumePermission",
                                  OperationType="add", UserIds=[PROD])
    m = write(tmp_path, STABLE + '  - {name: rc1, select: {name: "rc-1"}, launch: [staging], '
                                 'copy: [staging]}\n'
                                 '  - {name: rc2, select: {name: "rc-2"}, launch: [staging]}\n')
    doc = plan_doc(run_cli, m)
    assert doc["ownership"]["tag_snapshots"] == [snapshot(rc)]
    assert run_cli("apply", m, "--auto-approve").code == 0
    write(tmp_path, STABLE)
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert copies(rc) == [], "the tool managed rc-1's copy permissions: revoked"
    assert copies(hand) == [PROD], "rc-2's were never the tool's: left alone"
    assert images.launch(rc) == [] and images.launch(hand) == []


def test_ownership_none_records_nothing(server: tuple[MotoServer, Images], run_cli: Runner,
                                        tmp_path: Path) -> None:
    srv, images = server
    rc = images.create("rc-1")
    m = write(tmp_path, STABLE + CANDIDATES, ", ownership: none")
    assert "ownership" not in plan_doc(run_cli, m)
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert tags_of(srv, rc) == {}
    write(tmp_path, STABLE, ", ownership: none")
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, "without ownership a deleted rule leaves its shares"
    assert images.launch(rc) == [{"UserId": STAGING}]


def test_the_removal_guard_fails_the_pull_request_check(server: tuple[MotoServer, Images],
                                                        run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": f"70000000000{i}"} for i in range(4)])
    m = write(tmp_path, STABLE, ", max_removals: 3")
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 1, "a plan the scheduled apply would refuse fails at plan time"
    assert "error[max-removals]" in r.out
    assert "removes 4 permissions, more than settings.max_removals (3)" in r.out
    assert "--allow-mass-removal" in r.out and "raise settings.max_removals" in r.out
    r = run_cli("plan", m, "--detailed-exitcode", "--allow-mass-removal")
    assert r.code == 2, r.out
    assert run_cli("apply", m, "--auto-approve").code == 1
    assert len(images.launch(golden)) == 4, "refused before any write"


def test_default_region_is_said(server: tuple[MotoServer, Images], run_cli: Runner,
                                tmp_path: Path) -> None:
    _, images = server
    images.create("golden-1")
    path = tmp_path / "m.yaml"
    path.write_text(f'version: 1\nsettings: {{name: m}}\nimages:\n'
                    f'  - {{name: g, select: {{name: "golden-*"}}, launch: ["{PROD}"]}}\n')
    r = run_cli("plan", str(path))
    assert "Regions: us-east-1 (a rule names no Region, so the default us-east-1 is used" in r.out
    r = run_cli("plan", str(path), "--format", "markdown")
    assert "the default us-east-1 is used" in r.out
    assert json.loads(run_cli("plan", str(path), "--format", "json").out)["regions"] == [
        "us-east-1"]


@pytest.mark.parametrize("name", ["golden amis ok", "x" * 256])
def test_settings_name_is_the_tag_value(server: tuple[MotoServer, Images], run_cli: Runner,
                                        tmp_path: Path, name: str) -> None:
    srv, images = server
    golden = images.create("golden-1")
    m = write(tmp_path, STABLE, f", name: '{name}'")
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert tags_of(srv, golden) == {TAG: name}


def test_a_disabled_image_its_rule_still_matches_is_not_released(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from helpers import ACCOUNT

    from reconciler.shell.sandbox import set_image_state

    srv, images = server
    rc = images.create("rc-1")
    m = write(tmp_path, STABLE + CANDIDATES)
    assert run_cli("apply", m, "--auto-approve").code == 0
    set_image_state(ACCOUNT, "us-east-1", rc, "disabled")
    doc = plan_doc(run_cli, m)
    assert doc["ownership"]["untag"] == [] and doc["operations"] == []
    assert "image-disabled" in {f["code"] for f in doc["findings"]}
    assert tags_of(srv, rc) == {TAG: "golden-amis"}


def test_a_released_encrypted_image_gives_up_its_key_access_in_the_same_run(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from helpers import ACCOUNT

    from reconciler.shell.sandbox import encrypt_image

    srv, images = server
    root = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    key = srv.client("kms").create_key(Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [root]}))["KeyMetadata"]["Arn"]
    golden, rc = images.create("golden-1"), images.create("rc-1")
    encrypt_image(ACCOUNT, "us-east-1", golden, key)
    encrypt_image(ACCOUNT, "us-east-1", rc, key)
    m = write(tmp_path, STABLE.replace("[prod, staging]", "[prod]") + CANDIDATES)
    assert run_cli("apply", m, "--auto-approve").code == 0
    write(tmp_path, STABLE.replace("[prod, staging]", "[prod]"))
    doc = plan_doc(run_cli, m)
    assert sorted((o["kind"], o["principal"]["UserId"]) for o in doc["operations"]) == [
        ("kms_key_access", STAGING), ("launch_permission", STAGING)]
    assert run_cli("apply", m, "--auto-approve").code == 0
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, "converged: " + r.out


@pytest.mark.parametrize("settings", ["", ", prune: false"])
def test_a_released_image_alone_on_its_key_gives_up_its_key_access(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path,
        settings: str) -> None:
    """No managed image uses the released image's key: the key is read for the release,
    and the tool's statements drop the consumers (other statements stay as they are). A
    release revokes with `prune: false` too, and the key access goes with the launch."""
    from helpers import ACCOUNT, HAND

    from reconciler.shell.sandbox import encrypt_image

    srv, images = server
    root = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    theirs = {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HAND}:root"},
              "Action": "kms:Decrypt", "Resource": "*"}
    kms = srv.client("kms")
    key = kms.create_key(Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [root, theirs]}))["KeyMetadata"]["Arn"]
    images.create("golden-1")
    rc = images.create("rc-1")
    encrypt_image(ACCOUNT, "us-east-1", rc, key)
    m = write(tmp_path, STABLE + CANDIDATES.replace("[staging]", "[prod, staging]"), settings)
    assert run_cli("apply", m, "--auto-approve").code == 0
    granted = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert any(st["Sid"] == "AmiShareReconcilerAccounts" for st in granted["Statement"])

    write(tmp_path, STABLE, settings)  # the candidates rule is deleted: rc is released
    doc = plan_doc(run_cli, m)
    assert sorted((o["kind"], o["action"], o["principal"]["UserId"]) for o in doc["operations"]
                  if o["resource"] in (rc, key)) == [
        ("kms_key_access", "remove", PROD), ("kms_key_access", "remove", STAGING),
        ("launch_permission", "remove", PROD), ("launch_permission", "remove", STAGING)]
    assert run_cli("apply", m, "--auto-approve").code == 0
    after = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert after["Statement"] == [root, theirs], "only the tool's statements were removed"
    assert images.launch(rc) == [] and TAG not in tags_of(srv, rc)
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, "converged: " + r.out


def _released_on_its_own_key(srv: MotoServer, images: Images, run_cli: Runner,
                             tmp_path: Path) -> tuple[str, str, str]:
    """rc (prod, staging) applied and then released; its key backs no managed image.
    Returns the manifest, rc and the key."""
    from helpers import ACCOUNT

    from reconciler.shell.sandbox import encrypt_image

    key = srv.client("kms").create_key()["KeyMetadata"]["Arn"]
    images.create("golden-1")
    rc = images.create("rc-1")
    encrypt_image(ACCOUNT, "us-east-1", rc, key)
    m = write(tmp_path, STABLE + CANDIDATES.replace("[staging]", "[prod, staging]"))
    assert run_cli("apply", m, "--auto-approve").code == 0
    write(tmp_path, STABLE)
    return m, rc, key


def key_grantees(srv: MotoServer, key: str, region: str = "us-east-1") -> list[str]:
    policy = json.loads(srv.client("kms", region).get_key_policy(KeyId=key,
                                                                 PolicyName="default")["Policy"])
    return sorted(a for st in policy["Statement"] if st.get("Sid") == "AmiShareReconcilerAccounts"
                  for a in ([st["Principal"]["AWS"]] if isinstance(st["Principal"]["AWS"], str)
                            else st["Principal"]["AWS"]))


def test_a_released_images_key_keeps_a_consumer_an_unmanaged_image_still_shares_with(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from helpers import ACCOUNT

    from reconciler.shell.sandbox import encrypt_image

    srv, images = server
    m, rc, key = _released_on_its_own_key(srv, images, run_cli, tmp_path)
    by_hand = images.create("scratch-1", launch=[{"UserId": PROD}])  # no rule matches it
    encrypt_image(ACCOUNT, "us-east-1", by_hand, key)
    doc = plan_doc(run_cli, m)
    assert sorted((o["kind"], o["principal"]["UserId"]) for o in doc["operations"]
                  if o["resource"] == key) == [("kms_key_access", STAGING)]
    kept = [f for f in doc["findings"] if f["code"] == "kms-principal-still-used"]
    assert len(kept) == 1 and by_hand in kept[0]["message"]
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert key_grantees(srv, key) == [f"arn:aws:iam::{PROD}:root"]
    assert images.launch(by_hand) == [{"UserId": PROD}], "the unmanaged image is untouched"
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_a_failed_release_keeps_the_key_access_it_relies_on(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from faultproxy import FaultProxy

    srv, images = server
    m, rc, key = _released_on_its_own_key(srv, images, run_cli, tmp_path)
    with FaultProxy(srv.url, fail_resource=rc) as proxy:
        r = run_cli("apply", m, "--auto-approve", endpoint=proxy.url)
    assert r.code == 1 and rc in r.err
    assert "the launch/copy permission it backs was not removed" in r.err
    assert key_grantees(srv, key) == sorted(f"arn:aws:iam::{a}:root" for a in (PROD, STAGING))
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert key_grantees(srv, key) == [] and images.launch(rc) == []
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_a_release_in_a_dropped_region_keeps_key_access_an_unmanaged_image_there_needs(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """The run no longer lists the released image's Region: the key uses are found by
    listing the owner's images there once."""
    from helpers import ACCOUNT, EU

    from reconciler.shell.sandbox import encrypt_image

    srv, images = server
    key = srv.client("kms", EU).create_key()["KeyMetadata"]["Arn"]
    golden = images.create("golden-1", region=EU)
    encrypt_image(ACCOUNT, EU, golden, key)
    m = write(tmp_path, STABLE)
    assert run_cli("apply", m, "--auto-approve").code == 0
    by_hand = images.create("scratch-1", region=EU, launch=[{"UserId": PROD}])
    encrypt_image(ACCOUNT, EU, by_hand, key)
    Path(m).write_text(Path(m).read_text().replace("[us-east-1, eu-west-1]", "[us-east-1]"))
    doc = plan_doc(run_cli, m)
    assert sorted((o["kind"], o["principal"]["UserId"]) for o in doc["operations"]
                  if o["resource"] == key) == [("kms_key_access", STAGING)]
    assert any(f["code"] == "kms-principal-still-used" and by_hand in f["message"]
               for f in doc["findings"])
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert key_grantees(srv, key, EU) == [f"arn:aws:iam::{PROD}:root"]
    assert images.launch(golden, EU) == [] and images.launch(by_hand, EU) == [{"UserId": PROD}]
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_with_prune_false_a_release_takes_copy_only_consumers_out_of_the_key(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from helpers import ACCOUNT

    from reconciler.shell.sandbox import encrypt_image

    srv, images = server
    key = srv.client("kms").create_key()["KeyMetadata"]["Arn"]
    images.create("golden-1")
    rc = images.create("rc-1")
    encrypt_image(ACCOUNT, "us-east-1", rc, key)
    m = write(tmp_path, STABLE + CANDIDATES.replace("launch: [staging]",
                                                    "launch: [staging], copy: [prod]"),
              ", prune: false")
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert key_grantees(srv, key) == sorted(f"arn:aws:iam::{a}:root" for a in (PROD, STAGING))
    write(tmp_path, STABLE, ", prune: false")
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert key_grantees(srv, key) == []
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_a_failed_snapshot_revocation_keeps_the_release_for_the_next_run(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from faultproxy import FaultProxy

    srv, images = server
    rc = images.create("rc-1")
    snap = str(srv.client("ec2").describe_images(ImageIds=[rc])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])
    m = write(tmp_path, STABLE + '  - {name: rc, select: {name: "rc-*"}, launch: [staging], '
                                 'copy: [staging]}\n')
    assert run_cli("apply", m, "--auto-approve").code == 0
    write(tmp_path, STABLE)
    with FaultProxy(srv.url, fail_resource=snap) as proxy:
        r = run_cli("apply", m, "--auto-approve", endpoint=proxy.url)
    assert r.code == 1 and snap in r.err
    assert TAG in tags_of(srv, rc), "its snapshot still grants copy: the image stays ours"
    assert plan_doc(run_cli, m)["ownership"]["untag"] == [rc]
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert TAG not in tags_of(srv, rc)


def test_an_image_another_manifest_manages_is_a_warning_and_strict_leaves_it_alone(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """Two manifests that match one image would undo each other's changes on every run;
    a renamed manifest keeps its images by setting the old name."""
    srv, images = server
    golden = images.create("golden-1")
    first = write(tmp_path, STABLE)  # golden-amis.yaml
    assert run_cli("apply", first, "--auto-approve").code == 0
    assert tags_of(srv, golden) == {TAG: "golden-amis"}
    other = tmp_path / "team-b.yaml"
    other.write_text(Path(first).read_text().replace("[prod, staging]", "[prod]")
                     .replace("name: golden-amis", "name: team-b"))
    doc = plan_doc(run_cli, str(other))
    [warning] = [f for f in doc["findings"] if f["code"] == "other-manifest"]
    assert warning["severity"] == "warning" and warning["resource"] == golden
    assert "reconciler:manifest=golden-amis: a manifest named 'golden-amis' manages it too" \
           in warning["message"] and "Apply retags it 'team-b'" in warning["message"]
    strict = plan_doc(run_cli, str(other), "--strict")
    assert strict["operations"] == [] and strict["ownership"]["tag"] == [], \
        "with --strict the image is left alone: no removal, no retag"
    assert run_cli("apply", str(other), "--auto-approve", "--strict").code == 1
    assert images.launch(golden) == [{"UserId": PROD}, {"UserId": STAGING}]
    assert tags_of(srv, golden) == {TAG: "golden-amis"}
    # renamed: the old name keeps the images, without a warning or a change
    other.write_text(Path(first).read_text())  # team-b.yaml, named golden-amis
    r = run_cli("plan", str(other), "--detailed-exitcode")
    assert r.code == 0 and "other-manifest" not in r.out + r.err, r.out + r.err
