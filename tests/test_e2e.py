"""End to end against a moto server on 127.0.0.1 reached only through ``AWS_ENDPOINT_URL``.

``run_cli`` runs ``reconcile`` in this process through ``main(argv)``; the smoke tests that
use ``run_script`` run the installed console script in a subprocess, as a CI job does
(drift → apply → converge, a saved plan, the sandbox example)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import (
    ACCOUNT,
    EXAMPLES,
    HAND,
    ORG,
    OU,
    PROD,
    STAGING,
    Images,
    MotoServer,
    Runner,
    manifest_yaml,
)

from reconciler.shell.sandbox import IMAGE_BLOCK_PUBLIC_ACCESS, RECYCLE_BIN

pytestmark = pytest.mark.e2e


def manifest_text(*, launch: str = "[prod, staging]", prune: str = "true",
                  allow_public: str = "false", max_removals: int = 25, extra: str = "") -> str:
    """One rule sharing golden-* in us-east-1; ``extra``: lines appended as they are (more
    keys of that rule, or more rules)."""
    return manifest_yaml(
        f'- name: golden\n  select: {{name: "golden-*"}}\n  launch: {launch}',
        settings=f"prune: {prune}\nallow_public: {allow_public}\nmax_removals: {max_removals}",
        principals={"prod": PROD, "staging": STAGING, "org": ORG, "ou": OU}) + extra


def manifest(tmp_path: Path, **kwargs: object) -> str:
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_text(**kwargs))  # type: ignore[arg-type]
    return str(path)


def acct(*ids: str) -> list[dict[str, str]]:
    return sorted(({"UserId": i} for i in ids), key=lambda d: sorted(d.items()))


def plan_json(run_cli: Runner, m: str, *extra: str) -> dict:
    r = run_cli("plan", m, "--format", "json", *extra)
    assert r.code in (0, 1), r.err
    return json.loads(r.out)


def test_prune_off_keeps_undeclared_permissions(server: tuple[MotoServer, Images],
                                                run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    m = manifest(tmp_path, prune="false")
    doc = plan_json(run_cli, m)
    assert [(o["action"], o["principal"]) for o in doc["operations"]] == [
        ("add", {"UserId": PROD}), ("add", {"UserId": STAGING})]
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert images.launch(golden) == acct(PROD, STAGING, HAND)
    assert plan_json(run_cli, m)["operations"] == []


def test_organization_and_ou_round_trip(server: tuple[MotoServer, Images], run_cli: Runner,
                                        tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path, launch=f'[org, "{OU}", prod, "{PROD}"]')
    doc = plan_json(run_cli, m)
    assert [o["principal"] for o in doc["operations"]] == [
        {"UserId": PROD}, {"OrganizationArn": ORG}, {"OrganizationalUnitArn": OU}]
    assert all(o["rules"] == ["golden"] for o in doc["operations"])
    assert run_cli("apply", m, "--auto-approve").code == 0
    got = images.launch(golden)
    assert {"OrganizationArn": ORG} in got and {"OrganizationalUnitArn": OU} in got
    assert {"UserId": PROD} in got and len(got) == 3
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, r.out


def test_public_needs_opt_in_and_makes_no_aws_call(run_cli: Runner, tmp_path: Path,
                                                   no_aws) -> None:
    m = manifest(tmp_path, launch="[prod, public]")
    r = run_cli("plan", m, endpoint=no_aws.url)
    assert r.code == 1
    assert "amis.yaml:16:" in r.err and "'public'" in r.err and "allow_public" in r.err
    assert no_aws.count == 0


def test_public_share_with_opt_in(server: tuple[MotoServer, Images], run_cli: Runner,
                                  tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path, launch="[public]", allow_public="true")
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert images.launch(golden) == [{"Group": "all"}]
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_public_share_blocked_by_image_block_public_access(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    IMAGE_BLOCK_PUBLIC_ACCESS[(ACCOUNT, "us-east-1")] = "block-new-sharing"
    m = manifest(tmp_path, launch="[public, prod]", allow_public="true")
    doc = plan_json(run_cli, m)
    assert [f["code"] for f in doc["findings"] if f["code"] != "unused-principal"] == [
        "public-access-blocked"]
    assert doc["operations"] == [], "an image with an error finding gets no write at all"
    assert doc["ownership"] == {"tag": [], "untag": []}, "not even its ownership tag"
    r = run_cli("plan", m, "--quiet")
    assert r.code == 1 and "error: [public-access-blocked]" in r.err, "errors reach stderr"
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 1, "an error finding must fail the run"
    assert "block-new-sharing" in r.out and "Left alone" in r.out
    assert images.launch(golden) == []
    tags = server[0].client("ec2").describe_images(ImageIds=[golden])["Images"][0].get("Tags")
    assert not tags


def test_a_full_recycle_bin_warns_and_the_public_share_still_applies(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """EC2 User Guide, "AMI quotas": public AMIs in the Recycle Bin count towards the Public
    AMIs quota; ListImagesInRecycleBin does not say which were public (a warning)."""
    _, images = server
    golden = images.create("golden-1")
    RECYCLE_BIN[(ACCOUNT, "us-east-1")] = [
        {"ImageId": f"ami-{i:017x}", "Name": f"old-{i}", "Description": ""}
        for i in range(5)]
    m = manifest(tmp_path, launch="[public]", allow_public="true")
    r = run_cli("plan", m)
    assert r.code == 0, r.out + r.err
    assert re.search(r"warning\[public-quota-recycle-bin\].*1 public AMI of the quota of 5.*"
                     r"the Recycle Bin of us-east-1 holds 5 AMIs", r.out), r.out
    r = run_cli("plan", m, "--strict")
    assert r.code == 1, "--strict fails on the warning"
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert images.launch(golden) == [{"Group": "all"}]


def test_stale_plan_is_refused_when_state_changed(server: tuple[MotoServer, Images],
                                                  run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path)
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", m, "--out", str(plan_file)).code == 0
    server[0].client("ec2").modify_image_attribute(
        ImageId=golden, Attribute="launchPermission", LaunchPermission={"Add": [{"UserId": HAND}]})
    r = run_cli("apply", m, "--plan", str(plan_file))
    assert r.code == 1
    assert "stale" in r.err
    assert images.launch(golden) == acct(HAND), "a stale plan must write nothing"


def test_stale_plan_is_refused_when_manifest_changed(server: tuple[MotoServer, Images],
                                                     run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path)
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", m, "--out", str(plan_file)).code == 0
    manifest(tmp_path, launch="[prod]")
    r = run_cli("apply", m, "--plan", str(plan_file))
    assert r.code == 1 and "manifest changed" in r.err
    assert images.launch(golden) == []


def test_a_saved_plan_follows_the_manifest_name_not_the_file_name(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """The tag apply writes is settings.name (SPEC §7a), never the file's stem: the same
    bytes in a file of another name are the plan that was reviewed; another name is not."""
    srv, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path)
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", m, "--out", str(plan_file)).code == 0
    other = tmp_path / "other.yaml"
    other.write_text(Path(m).read_text().replace("name: m\n", "name: other\n", 1))
    r = run_cli("apply", str(other), "--plan", str(plan_file))
    assert r.code == 1 and "manifest changed" in r.err, r.err
    assert images.launch(golden) == []
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(Path(m).read_text())
    assert run_cli("apply", str(renamed), "--plan", str(plan_file)).code == 0
    tags = srv.client("ec2").describe_images(ImageIds=[golden])["Images"][0]["Tags"]
    assert tags == [{"Key": "reconciler:manifest", "Value": "m"}]


def test_tampered_plan_is_refused(server: tuple[MotoServer, Images], run_cli: Runner,
                                  tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path)
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", m, "--out", str(plan_file)).code == 0
    doc = json.loads(plan_file.read_text())
    doc["operations"].append({"action": "add", "kind": "launch_permission", "region": "us-east-1",
                              "resource": golden, "principal": {"UserId": "666666666666"},
                              "rules": ["golden"]})
    plan_file.write_text(json.dumps(doc))
    r = run_cli("apply", m, "--plan", str(plan_file))
    assert r.code == 1 and "tampered" in r.err
    assert images.launch(golden) == []

    plan_file.write_text('{"format_version": 1, "operations": "all"}')
    r = run_cli("apply", m, "--plan", str(plan_file))
    assert r.code == 1 and "not a valid plan file" in r.err
    assert images.launch(golden) == []


def test_mass_removal_guard(server: tuple[MotoServer, Images], run_cli: Runner,
                            tmp_path: Path) -> None:
    _, images = server
    extra = [{"UserId": f"70000000000{i}"} for i in range(4)]
    golden = images.create("golden-1", launch=[{"UserId": PROD}, *extra])
    m = manifest(tmp_path, launch="[prod]", max_removals=3)
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 1
    assert "removes 4 permissions" in r.err and "--allow-mass-removal" in r.err
    assert len(images.launch(golden)) == 5, "the guard must refuse before any write"
    r = run_cli("apply", m, "--auto-approve", "--allow-mass-removal")
    assert r.code == 0, r.err
    assert images.launch(golden) == acct(PROD)


def test_apply_without_terminal_needs_auto_approve(run_cli: Runner, tmp_path: Path,
                                                   no_aws) -> None:
    m = manifest(tmp_path)
    r = run_cli("apply", m, endpoint=no_aws.url)
    assert r.code == 1
    assert "--auto-approve" in r.err
    assert no_aws.count == 0


def test_plan_output_is_deterministic(server: tuple[MotoServer, Images], run_cli: Runner,
                                      tmp_path: Path) -> None:
    _, images = server
    for i in range(6):
        images.create(f"golden-{i}", launch=[{"UserId": f"80000000000{i}"}])
    m = manifest(tmp_path, launch='[ou, org, staging, prod]')
    for fmt in ("json", "text", "markdown"):
        first = run_cli("plan", m, "--format", fmt, "--concurrency", "8")
        second = run_cli("plan", m, "--format", fmt, "--concurrency", "3")
        assert first.code == 0 and first.out == second.out, fmt
    doc = json.loads(run_cli("plan", m, "--format", "json").out)
    keys = [(o["region"], o["resource"], o["kind"], o["action"]) for o in doc["operations"]]
    assert keys == sorted(keys)


def test_missing_image_id_is_an_error_but_others_apply(server: tuple[MotoServer, Images],
                                                       run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1")
    m = manifest(tmp_path, extra="""\
  - name: pinned
    select: {ids: [ami-0123456789abcdef0]}
    launch: [prod]
""")
    doc = plan_json(run_cli, m)
    assert [(f["severity"], f["code"], f["resource"]) for f in doc["findings"]
            if f["code"] != "unused-principal"] == [
        ("error", "image-not-found", "ami-0123456789abcdef0")]
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 1
    assert images.launch(golden) == acct(PROD, STAGING)


def test_no_match_warning_and_strict(server: tuple[MotoServer, Images], run_cli: Runner,
                                     tmp_path: Path) -> None:
    m = manifest(tmp_path)
    r = run_cli("plan", m)
    assert r.code == 0 and "warning[no-match]" in r.out
    r = run_cli("plan", m, "--strict")
    assert r.code == 1 and "error[no-match]" in r.out


def test_region_restriction(server: tuple[MotoServer, Images], run_cli: Runner,
                            tmp_path: Path) -> None:
    _, images = server
    east = images.create("golden-1", region="us-east-1")
    west = images.create("golden-1", region="eu-west-1")
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_text(launch="[prod]").replace("[us-east-1]", "[us-east-1, eu-west-1]"))
    r = run_cli("apply", str(path), "--auto-approve", "--region", "eu-west-1")
    assert r.code == 0, r.err
    assert images.launch(west, "eu-west-1") == acct(PROD)
    assert images.launch(east) == []


def test_markdown_and_github_step_summary(server: tuple[MotoServer, Images], run_cli: Runner,
                                          tmp_path: Path) -> None:
    _, images = server
    images.create("golden-1", launch=[{"UserId": HAND}])
    m = manifest(tmp_path)
    summary = tmp_path / "summary.md"
    r = run_cli("plan", m, "--format", "markdown", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.code == 0
    assert "| us-east-1 | 2 | 1 | 0 |" in r.out
    assert "```diff" in r.out and f"-   launch {HAND}" in r.out
    assert summary.read_text() == r.out


@pytest.mark.parametrize("args", [
    ["plan"], ["plan", "m.yaml", "--format", "xml"], ["apply", "m.yaml", "--bogus"],
    ["frobnicate"], ["plan", "m.yaml", "--region", "mars"], ["plan", "m.yaml", "--concurrency", "0"],
], ids=["missing-arg", "bad-choice", "unknown-option", "unknown-command", "bad-region",
        "bad-concurrency"])
def test_usage_errors_exit_1_not_2(run_cli: Runner, tmp_path: Path, args: list[str], no_aws) -> None:
    (tmp_path / "m.yaml").write_text("version: 1\nsettings: {name: m}\nimages: []\n")
    r = run_cli(*args, endpoint=no_aws.url, cwd=tmp_path)
    assert r.code == 1, (r.out, r.err)
    assert r.err.strip()
    assert no_aws.count == 0


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_help_has_an_example(run_cli: Runner, command: str) -> None:
    r = run_cli(command, "--help")
    assert r.code == 0 and "Example" in r.out and f"reconcile {command}" in r.out


BAD_MANIFESTS = sorted((Path(__file__).parent / "bad_manifests").glob("*.yaml"))


def _expectation(path: Path) -> tuple[int, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    line, _, text = first.removeprefix("# expect: ").partition(" ")
    return int(line), text


def test_bad_manifest_corpus_is_big_enough() -> None:
    assert len(BAD_MANIFESTS) >= 15


@pytest.mark.parametrize("path", BAD_MANIFESTS, ids=[p.stem for p in BAD_MANIFESTS])
def test_bad_manifest_rejected_without_aws(run_cli: Runner, no_aws, path: Path) -> None:
    line, text = _expectation(path)
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        r = run_cli(command[0], str(path), *command[1:], endpoint=no_aws.url)
        assert r.code == 1, (command, r.out, r.err)
        assert r.out == ""
        errors = r.err.strip().splitlines()
        assert any(f"{path}:{line}:" in e and text in e for e in errors), (command, r.err)
        assert "Traceback" not in r.err
    assert no_aws.count == 0, "an invalid manifest must not cause any AWS request"


def test_encrypted_ami_end_to_end(server: tuple[MotoServer, Images], run_cli: Runner,
                                  tmp_path: Path) -> None:
    from reconciler.shell.sandbox import encrypt_image

    srv, images = server
    kms_client = srv.client("kms")
    foreign = {"Sid": "Admins", "Effect": "Allow",
               "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
               "Resource": "*"}
    key = kms_client.create_key(Policy=json.dumps({"Version": "2012-10-17",
                                                   "Statement": [foreign]}))["KeyMetadata"]["Arn"]
    kms_client.create_alias(AliasName="alias/golden", TargetKeyId=key)
    golden = images.create("golden-1")
    snap = encrypt_image(ACCOUNT, "us-east-1", golden, key)
    m = manifest(tmp_path, launch="[prod, ou]", extra="    copy: [prod]\n")

    r = run_cli("plan", m, "-v")
    assert r.code == 0, r.err
    assert f"~ {key} (alias/golden)" in r.out
    assert "+ kms    111122223333 (prod)" in r.out
    assert f"~ {snap} (snapshot of {golden})" in r.out
    assert "key policy statements owned by the tool (JSON, before -> after):" in r.out
    assert '+    "Sid": "AmiShareReconcilerOrgs",' in r.out
    md = run_cli("plan", m, "--format", "markdown").out
    assert "<details><summary>Key policy change: " in md and '"AmiShareReconcilerOrgs"' in md

    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    policy = json.loads(kms_client.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    assert policy["Statement"][0] == foreign
    assert [s["Sid"] for s in policy["Statement"][1:]] == [
        "AmiShareReconcilerAccounts", "AmiShareReconcilerAccountsGrant",
        "AmiShareReconcilerOrgs", "AmiShareReconcilerOrgsGrant"]
    assert images.launch(golden) == [{"OrganizationalUnitArn": OU}, {"UserId": PROD}]
    perms = srv.client("ec2").describe_snapshot_attribute(SnapshotId=snap,
                                                          Attribute="createVolumePermission")
    assert perms["CreateVolumePermissions"] == [{"UserId": PROD}]
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, r.out


def test_sandbox_blocker_example(run_cli: Runner, no_aws) -> None:
    r = run_cli("plan", str(EXAMPLES / "encrypted-blocker.yaml"), "--sandbox",
                str(EXAMPLES / "sandbox.yaml"), "--format", "json", endpoint=no_aws.url)
    assert r.code == 1, "a blocking finding fails the plan"
    doc = json.loads(r.out)
    [blocker] = [f for f in doc["findings"] if f["severity"] == "error"]
    assert blocker["code"] == "aws-managed-key" and blocker["resource"] == "ami-0a3eb5000000c0de1"
    assert "copy-image" in blocker["message"]
    assert {o["resource"] for o in doc["operations"]} == {"ami-0a11c0de000000002"}, \
        "the other image is still planned"
    assert no_aws.count == 0


def test_missing_credentials_say_what_to_do(run_cli: Runner, tmp_path: Path) -> None:
    m = manifest(tmp_path)
    r = run_cli("plan", m, env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert r.code == 1
    assert "no AWS credentials found" in r.err and "--profile" in r.err and "--sandbox" in r.err
    assert "Traceback" not in r.err


def test_sandbox_state_errors_are_located(run_cli: Runner, tmp_path: Path, no_aws) -> None:
    state = tmp_path / "state.yaml"
    state.write_text('version: 1\naccount: 123456789012\nimages:\n  - {region: mars, name: x1}\n')
    r = run_cli("plan", str(EXAMPLES / "manifest.yaml"), "--sandbox", str(state),
                endpoint=no_aws.url)
    assert r.code == 1
    assert f"{state}:2:10:" in r.err and 'quote it: "123456789012"' in r.err
    assert f"{state}:4:" in r.err and '"mars"' in r.err
    assert no_aws.count == 0


def test_manifest_hygiene(server: tuple[MotoServer, Images], run_cli: Runner,
                          tmp_path: Path) -> None:
    """Unused principals are a warning (an error with --strict); an option a command would
    ignore is refused; no-match is said once per rule."""
    _, images = server
    images.create("golden-1")
    m = manifest(tmp_path)  # names org and ou, which no rule uses
    r = run_cli("validate", m)
    assert r.code == 0 and "warning:" in r.err and "'org' is named" in r.err
    r = run_cli("validate", m, "--strict")
    assert r.code == 1 and "error:" in r.err and "'ou' is named" in r.err
    doc = plan_json(run_cli, m)
    assert sorted(f["resource"] for f in doc["findings"] if f["code"] == "unused-principal") == [
        "org", "ou"]
    assert run_cli("plan", m, "--strict").code == 1
    r = run_cli("validate", m, "--sandbox", str(tmp_path / "missing.yaml"))
    assert r.code == 1 and "--sandbox would be ignored" in r.err
    r = run_cli("validate", m, "--region", "eu-west-1")
    assert r.code == 1 and "--region would be ignored" in r.err


def test_validate_offers_only_what_it_uses_and_counts_in_words(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """validate makes no AWS call: its help does not offer the options that reach AWS, which
    it refuses; one rule is "1 rule"; -V is --version."""
    r = run_cli("validate", "--help")
    assert r.code == 0 and "--strict" in r.out and "--format [text|sarif]" in r.out
    for option in ("--region", "--profile", "--concurrency", "--api-rate-share", "--sandbox"):
        assert option not in r.out, option
        assert option in run_cli("plan", "--help").out, option
    m = manifest(tmp_path)
    r = run_cli("validate", m, "--api-rate-share", "0.5")
    assert r.code == 1 and "--api-rate-share would be ignored; leave it out" in r.err
    r = run_cli("validate", m)
    assert r.code == 0 and "valid (1 rule, 4 named principals" in r.out
    _, images = server
    images.create("golden-1")
    assert "Reading current state for 1 rule...\n" in run_cli("plan", m).err
    version = run_cli("-V")
    assert version.code == 0 and version.out == run_cli("--version").out != ""


@pytest.mark.parametrize("fmt, golden", [("text", "example-plan.txt"),
                                         ("markdown", "example-plan.md"),
                                         ("json", "example-plan.json")])
def test_rendered_plans_match_the_reviewed_files(run_cli: Runner, no_aws, fmt: str,
                                                 golden: str) -> None:
    """The whole rendered plan of the sandbox example, compared with reviewed files
    (tests/golden/). After an intended change, regenerate them with
    `reconcile plan examples/manifest.yaml --sandbox examples/sandbox.yaml --format F -v
    --no-color` and review the diff."""
    r = run_cli("plan", str(EXAMPLES / "manifest.yaml"), "--sandbox",
                str(EXAMPLES / "sandbox.yaml"), "--format", fmt, "-v", "--no-color",
                endpoint=no_aws.url)
    assert r.code == 0, r.err
    expected = (Path(__file__).parent / "golden" / golden).read_text()
    assert r.out == expected
