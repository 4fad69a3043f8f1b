"""Production trust: the tool never takes access it does not own, a saved plan applies
exactly or is refused, and nothing AWS, a proxy, the environment or a file sends ends in a
traceback. One test (at least) per defect found by trying it adversarially.

CLI behaviour runs in-process through ``reconciler.cli.main`` (``helpers.run_main``), against
in-process moto (``aws`` fixture) or the moto server behind ``tests/faultproxy.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from faultproxy import FAULT_KINDS, FaultProxy
from helpers import (
    ACCOUNT,
    DEV,
    EXAMPLES,
    OU,
    PROD,
    ROOT_STATEMENT,
    Images,
    MotoServer,
    counted_clients,
    encrypted_image,
    kms_manifest,
    make_key,
    owned,
    plan_and_apply,
    policy_of,
    replan,
    run_main,
)

from reconciler.core import kms
from reconciler.core.kms import Grantee, GranteeKind
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Action, OpKind
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader
from reconciler.shell.sandbox import ENABLED_REGIONS, encrypt_image

OTHER, COPIER = "999999999999", "888888888888"
# tag-filtered DescribeImages in the emulated account's other enabled Regions (ownership)
SCANS = len(ENABLED_REGIONS - {"us-east-1"})


def _accounts(*ids: str) -> set[Grantee]:
    return {Grantee(GranteeKind.ACCOUNT, i) for i in ids}


def _owned_accounts(key: str) -> list[str]:
    stmt = owned(policy_of(key)).get(kms.SID_ACCOUNTS)
    return [] if stmt is None else [a.split(":")[4] for a in stmt["Principal"]["AWS"]]


def _key_with_grantees(*accounts: str, extra: tuple[dict[str, Any], ...] = ()) -> str:
    base = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT, *extra]}
    statements = kms.with_grantees(base, _accounts(*accounts), "aws")["Statement"]
    return make_key(*statements[1:])


# ----------------------------------------------------------------- 1. keys back every image


def test_key_principal_is_kept_while_an_unmanaged_image_or_a_snapshot_still_needs_it(
        aws: Images) -> None:
    """Defect 1: `b` (no rule) is shared with OTHER and `a`'s snapshot grants copy to COPIER;
    the key's own statements hold both. Removing them would strand those permissions."""
    key = _key_with_grantees(PROD, COPIER, OTHER, DEV)
    a, snap_a = encrypted_image(aws, "golden-a", key)
    b, snap_b = encrypted_image(aws, "legacy-b", key, launch=[{"UserId": OTHER}])
    ec2 = boto3.client("ec2", region_name="us-east-1")
    ec2.modify_snapshot_attribute(SnapshotId=snap_a, Attribute="createVolumePermission",
                                  OperationType="add", UserIds=[COPIER])
    text = kms_manifest("  - {name: golden, select: {ids: [%s]}, launch: [prod]}\n" % a)

    plan, report = plan_and_apply(text)
    assert not report.failed and not plan.errors
    removes = [o.principal.value for o in plan.operations
               if o.kind is OpKind.KMS and o.action is Action.REMOVE]
    assert removes == [DEV], "only the principal nothing uses any more may lose key access"
    still = {f.message.split()[1]: f.message for f in plan.findings
             if f.code == "kms-principal-still-used"}
    assert set(still) == {COPIER, OTHER}
    assert snap_a in still[COPIER] and "copy" in still[COPIER]
    assert b in still[OTHER] and "launch" in still[OTHER]
    assert sorted(_owned_accounts(key)) == sorted([PROD, COPIER, OTHER])
    assert aws.launch(b) == [{"UserId": OTHER}], "the unmanaged image is never written"
    assert ec2.describe_snapshot_attribute(SnapshotId=snap_a, Attribute="createVolumePermission")[
        "CreateVolumePermissions"] == [{"UserId": COPIER}]
    assert snap_b
    assert replan(text).operations == (), "plan after apply must be empty"


def test_key_usage_is_read_only_for_keys_with_removals(aws: Images) -> None:
    """The extra reads cost nothing when no key loses a principal, and are exactly the
    README's formula when one does."""
    key = _key_with_grantees(PROD)
    a, _ = encrypted_image(aws, "golden-a", key)
    encrypted_image(aws, "legacy-b", key, launch=[{"UserId": OTHER}])
    aws.create("plain-c")
    text = kms_manifest("  - {name: golden, select: {ids: [%s]}, launch: [prod]}\n" % a)
    clients, calls = counted_clients()
    build_plan(parse_manifest(text, "m.yaml"), Reader(clients, 4))
    assert calls.by_op == {"GetCallerIdentity": 1, "DescribeImages": 1 + SCANS,
                           "DescribeRegions": 1, "DescribeImageAttribute": 1,
                           "DescribeSnapshots": 1, "DescribeKey": 1, "GetKeyPolicy": 1,
                           "ListAliases": 1}

    key2 = _key_with_grantees(PROD, DEV)
    a2, _ = encrypted_image(aws, "golden-a2", key2)
    text = kms_manifest("  - {name: golden, select: {ids: [%s]}, launch: [prod]}\n" % a2)
    clients, calls = counted_clients()
    plan = build_plan(parse_manifest(text, "m.yaml"), Reader(clients, 4))
    assert [o.principal.value for o in plan.operations if o.action is Action.REMOVE] == [DEV]
    # + the owner's encrypted snapshots in that Region (one listing), the copy permissions of
    # each snapshot encrypted with the key, the launch permissions of each unmanaged image
    # it backs (none here: legacy-b uses the other key)
    assert calls.by_op == {"GetCallerIdentity": 1, "DescribeImages": 1 + SCANS,
                           "DescribeRegions": 1, "DescribeImageAttribute": 1,
                           "DescribeSnapshots": 2,
                           "DescribeSnapshotAttribute": 1,
                           "DescribeKey": 1, "GetKeyPolicy": 1, "ListAliases": 1}


# ----------------------------------------------------------------- 2, 3, 8. saved plans


def _write(tmp_path: Path, text: bytes | str, name: str = "amis.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def test_saved_plan_is_refused_after_the_key_access_it_relied_on_was_removed(
        aws: Images, tmp_path: Path) -> None:
    """Defect 2: a foreign statement made the key add unnecessary; it is deleted later."""
    prod_admin = {"Sid": "ProdAdmin", "Effect": "Allow",
                  "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*",
                  "Resource": "*"}
    key = make_key(prod_admin)
    image, _ = encrypted_image(aws, "golden-1", key)
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    plan_file = tmp_path / "plan.json"
    r = run_main("plan", m, "--out", str(plan_file), "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(plan_file.read_text())
    assert [o["kind"] for o in doc["operations"]] == ["launch_permission"]
    assert [f["code"] for f in doc["findings"] if f["code"] != "unused-principal"] == [
        "kms-foreign-statement"]

    boto3.client("kms", region_name="us-east-1").put_key_policy(
        KeyId=key, PolicyName="default",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]}))
    r = run_main("apply", m, "--plan", str(plan_file))
    assert r.code == 1
    assert "stale" in r.err
    assert aws.launch(image) == [], "no launch permission without key access"


def _plan_file(tmp_path: Path, m: str) -> Path:
    plan_file = tmp_path / "plan.json"
    r = run_main("plan", m, "--out", str(plan_file), "--allow-mass-removal")
    assert r.code == 0, r.err
    return plan_file


def test_saved_plan_summary_is_never_trusted(aws: Images, tmp_path: Path) -> None:
    """Defect 3a: editing summary.remove to 0 bypassed the max_removals guard. An edited
    summary is refused as an edit, and the guard counts the operations, not the summary."""
    hands = [{"UserId": f"70000000000{i}"} for i in range(3)]
    image = aws.create("golden-1", launch=hands)
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n',
                                  ", max_removals: 2"))
    plan_file = _plan_file(tmp_path, m)
    honest = plan_file.read_text()
    doc = json.loads(honest)
    assert doc["summary"]["remove"] == 3
    doc["summary"] = {"add": 0, "remove": 0, "images": 1, "unchanged": 0}
    plan_file.write_text(json.dumps(doc, indent=2))
    for extra in ((), ("--allow-mass-removal",)):
        r = run_main("apply", m, "--plan", str(plan_file), *extra)
        assert r.code == 1
        assert "saved plan was edited (tampered): its summary says 0 to add, 0 to remove" in r.err
        assert len(aws.launch(image)) == 3, "refused before any write"
    plan_file.write_text(honest)
    r = run_main("apply", m, "--plan", str(plan_file))
    assert r.code == 1
    assert "removes 3 permissions" in r.err and "--allow-mass-removal" in r.err
    assert "1 permission to add, 3 to remove" in r.out, "the summary shown is computed, not read"
    assert len(aws.launch(image)) == 3, "refused before any write"
    r = run_main("apply", m, "--plan", str(plan_file), "--allow-mass-removal")
    assert r.code == 0, r.err
    assert aws.launch(image) == [{"UserId": PROD}]


def test_saved_plan_with_a_dropped_key_access_add_is_refused(aws: Images, tmp_path: Path) -> None:
    """Defect 3b: deleting the OU's kms_key_access add left the OU launch without key access."""
    key = make_key()
    image, _ = encrypted_image(aws, "golden-1", key)
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [ou]}\n'))
    plan_file = _plan_file(tmp_path, m)
    doc = json.loads(plan_file.read_text())
    assert sorted(o["kind"] for o in doc["operations"]) == ["kms_key_access", "launch_permission"]
    doc["operations"] = [o for o in doc["operations"] if o["kind"] != "kms_key_access"]
    plan_file.write_text(json.dumps(doc, indent=2))
    r = run_main("apply", m, "--plan", str(plan_file))
    assert r.code == 1
    assert "add kms_key_access" in r.err and OU in r.err and "missing" in r.err, r.err
    assert aws.launch(image) == []
    assert owned(policy_of(key)) == {}


def test_saved_plan_with_duplicated_operations_is_refused(aws: Images, tmp_path: Path) -> None:
    """Defect 3c: every operation duplicated was accepted and reported double."""
    image = aws.create("golden-1")
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    plan_file = _plan_file(tmp_path, m)
    doc = json.loads(plan_file.read_text())
    doc["operations"] = doc["operations"] * 2
    plan_file.write_text(json.dumps(doc, indent=2))
    r = run_main("apply", m, "--plan", str(plan_file))
    assert r.code == 1
    assert "twice" in r.err, r.err
    assert aws.launch(image) == []


def test_saved_plan_for_other_regions_says_so(aws: Images, tmp_path: Path) -> None:
    """Defect 8c: a plan saved without --region, applied with --region us-east-1, was
    refused as "current state differs" although nothing had changed."""
    aws.create("golden-1")
    aws.create("golden-1", region="eu-west-1")
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, '
                                  'regions: [us-east-1, eu-west-1], launch: [prod]}\n'))
    plan_file = _plan_file(tmp_path, m)
    r = run_main("apply", m, "--plan", str(plan_file), "--region", "us-east-1")
    assert r.code == 1
    assert "Regions eu-west-1, us-east-1" in r.err and "--region" in r.err, r.err
    assert "differs" not in r.err and "stale" not in r.err
    r = run_main("apply", m, "--plan", str(plan_file))
    assert r.code == 0, r.err


# ----------------------------------------------------------------- 4. no traceback, ever

READS = ("GetCallerIdentity", "DescribeRegions", "DescribeImages", "DescribeImageAttribute",
         "GetImageBlockPublicAccessState", "DescribeSnapshots", "DescribeSnapshotAttribute",
         "DescribeKey", "GetKeyPolicy", "ListAliases")
WRITES = ("PutKeyPolicy", "ModifyImageAttribute", "ModifySnapshotAttribute")
# Reads whose failure the README documents as a degradation, not an error.
DEGRADED = {"GetImageBlockPublicAccessState": "public-access-unknown", "ListAliases": ""}
FAST_FAIL = {"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}


def _seed_estate(srv: MotoServer, folder: Path) -> str:
    """An encrypted image (launch + copy + key access to add) and a public one."""
    images = Images(lambda region: srv.client("ec2", region))
    kms_client = srv.client("kms")
    key = kms_client.create_key(Policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]}))["KeyMetadata"]["Arn"]
    kms_client.create_alias(AliasName="alias/golden", TargetKeyId=key)
    encrypt_image(ACCOUNT, "us-east-1", images.create("golden-enc"), key)
    images.create("golden-pub")
    return _write(folder, kms_manifest(
        '  - {name: enc, select: {name: "golden-enc"}, launch: [prod], copy: [prod]}\n'
        '  - {name: pub, select: {name: "golden-pub"}, launch: [public]}\n',
        ", allow_public: true"))


@pytest.fixture(scope="module")
def read_estate(moto_server_session: MotoServer,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoServer, str]]:
    """One estate for every read fault: a plan writes nothing, so they can share it."""
    moto_server_session.reset()
    yield moto_server_session, _seed_estate(moto_server_session, tmp_path_factory.mktemp("reads"))
    moto_server_session.reset()


@pytest.fixture
def estate(server: tuple[MotoServer, Images], tmp_path: Path) -> tuple[MotoServer, str]:
    return server[0], _seed_estate(server[0], tmp_path)


def _no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t and 'File "' not in t, t


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("action", READS)
def test_any_answer_to_a_read_is_one_line_never_a_traceback(
        read_estate: tuple[MotoServer, str], action: str, kind: str) -> None:
    srv, m = read_estate
    with FaultProxy(srv.url, faults={action: kind}) as proxy:
        r = run_main("plan", m, "--quiet", env={"AWS_ENDPOINT_URL": proxy.url, **FAST_FAIL})
    assert proxy.counts["faulted"] >= 1
    _no_traceback(r.out, r.err)
    if action in DEGRADED:
        assert r.code == 0, (r.out, r.err)
        assert DEGRADED[action] in r.out
        return
    assert r.code == 1, (r.out, r.err)
    err = r.err.strip().splitlines()
    assert len(err) <= 1, err
    assert action in r.out + r.err, (r.out, r.err)


@pytest.mark.parametrize("action", ["GetCallerIdentity", "DescribeImages",
                                    "DescribeImageAttribute"])
def test_export_read_failures_are_one_line(read_estate: tuple[MotoServer, str],
                                           tmp_path: Path, action: str) -> None:
    srv, _ = read_estate
    out = tmp_path / "exported.yaml"
    with FaultProxy(srv.url, faults={action: "html500"}) as proxy:
        r = run_main("export", "--region", "us-east-1", "--out", str(out), "--quiet",
                     env={"AWS_ENDPOINT_URL": proxy.url, **FAST_FAIL})
    assert proxy.counts["faulted"] >= 1
    _no_traceback(r.out, r.err)
    assert r.code == 1, (r.out, r.err)
    assert r.err.count("\n") == 1 and action in r.err and "not an AWS response" in r.err, r.err
    assert not out.exists(), "nothing half-written"


@pytest.mark.parametrize("kind", FAULT_KINDS)
@pytest.mark.parametrize("action", WRITES)
def test_any_answer_to_a_write_is_a_failed_operation_with_summary_and_log(
        estate: tuple[MotoServer, str], tmp_path: Path, action: str, kind: str) -> None:
    srv, m = estate
    log = tmp_path / "apply.jsonl"
    with FaultProxy(srv.url, faults={action: kind}) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy.url, **FAST_FAIL}
        planned = json.loads(run_main("plan", m, "--format", "json", env=env).out)
        r = run_main("apply", m, "--auto-approve", "--quiet", "--log-file", str(log), env=env)
    _no_traceback(r.out, r.err)
    if (action, kind) == ("PutKeyPolicy", "garbage200"):
        # PutKeyPolicy answers nothing but its status: a 200 is indistinguishable from
        # success. The policy was not written, so the next plan asks for the key access again.
        assert r.code == 0 and "0 failed" in r.out
        again = json.loads(run_main("plan", m, "--format", "json",
                                    env={"AWS_ENDPOINT_URL": srv.url}).out)["operations"]
        assert [o["kind"] for o in again] == ["kms_key_access"]
        return
    assert r.code == 1, (r.out, r.err)
    assert "Apply complete:" in r.out and "failed" in r.out
    records = [r for r in map(json.loads, log.read_text().splitlines())
               if r["kind"] != "ownership_tag"]
    assert len(records) == len(planned["operations"]), "every operation is logged"
    failed = [rec for rec in records if rec["result"] != "applied"]
    assert failed and all(rec["error"] for rec in failed)
    assert any(rec["api"] == action and rec["result"] == "failed" for rec in records)
    errors = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(errors) == len(failed) and all(action in e or "skipped" in e for e in errors), errors


def test_an_endpoint_that_is_not_a_url_is_one_line(tmp_path: Path) -> None:
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    r = run_main("plan", m, env={"AWS_ENDPOINT_URL": "not-a-url"})
    assert r.code == 1
    _no_traceback(r.out, r.err)
    # the status line, then the error in one line (the caller's identity is asked while the
    # listing starts, so after the status line)
    said = [line for line in r.err.splitlines() if not line.startswith("Reading current state")]
    assert len(said) == 1 and said[0].startswith("error:") and "not-a-url" in said[0], r.err


def test_internal_error_is_one_line_and_verbose_shows_the_traceback(
        aws: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    aws.create("golden-1")
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("reconciler.shell.gather.compute_plan", boom)
    r = run_main("plan", m, "--quiet")
    assert r.code == 1
    assert r.err == "internal error: RuntimeError: boom; rerun with -v for details\n"
    r = run_main("plan", m, "--quiet", "-v")
    assert r.code == 1
    assert "Traceback" in r.err and "RuntimeError: boom" in r.err


def test_internal_error_during_apply_still_flushes_the_log(
        aws: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = aws.create("golden-1")
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    log = tmp_path / "apply.jsonl"
    from reconciler import cli

    real = cli.click.echo
    calls = {"n": 0}

    def echo(message: Any = None, *args: Any, **kw: Any) -> None:
        if isinstance(message, str) and message.startswith("Apply complete"):
            raise RuntimeError("terminal went away")
        calls["n"] += 1
        real(message, *args, **kw)

    monkeypatch.setattr(cli.click, "echo", echo)
    r = run_main("apply", m, "--auto-approve", "--log-file", str(log))
    assert r.code == 1
    assert "internal error: RuntimeError: terminal went away" in r.err
    records = [r for r in map(json.loads, log.read_text().splitlines())
               if r["kind"] != "ownership_tag"]
    assert [rec["result"] for rec in records] == ["applied"]
    assert aws.launch(image) == [{"UserId": PROD}]


# ----------------------------------------------------------------- 5. bounded input


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail (instead of hanging the suite) if reading an input blocks."""

    def expired(*_: Any) -> None:
        raise TimeoutError("reading the input blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _commands(path: str, tmp_path: Path) -> dict[str, list[str]]:
    good = str(EXAMPLES / "manifest.yaml")
    sandbox = str(EXAMPLES / "sandbox.yaml")
    return {
        "manifest": ["validate", path],
        "sandbox": ["plan", good, "--sandbox", path],
        "names": ["export", "--sandbox", sandbox, "--names", path],
        "plan": ["apply", good, "--sandbox", sandbox, "--plan", path],
    }


@pytest.mark.parametrize("which", ["manifest", "sandbox", "names", "plan"])
@pytest.mark.parametrize("shape", ["fifo", "dev-zero", "directory", "sparse-600MB"])
def test_input_files_are_checked_before_they_are_read(
        tmp_path: Path, deadline: None, which: str, shape: str) -> None:
    path = tmp_path / f"input-{shape}"
    if shape == "fifo":
        os.mkfifo(path)
    elif shape == "dev-zero":
        path.symlink_to("/dev/zero")
    elif shape == "directory":
        path.mkdir()
    else:
        with open(path, "wb") as fh:
            fh.truncate(600 * 1024 * 1024)
    r = run_main(*_commands(str(path), tmp_path)[which])
    assert r.code == 1
    _no_traceback(r.out, r.err)
    assert r.err.startswith(f"error: {path}:1:1: ") and r.err.count("\n") == 1, r.err
    expected = "larger than" if shape == "sparse-600MB" else "not a regular file"
    assert expected in r.err, r.err


# ----------------------------------------------------------------- 6. Deny statements


def test_foreign_deny_statement_is_a_warning_on_every_image_sharing_the_key(aws: Images) -> None:
    deny = {"Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*",
            "Action": ["kms:Decrypt", "kms:CreateGrant"], "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": "o-zzzzzzzzzz"}}}
    key = make_key(deny)
    a, _ = encrypted_image(aws, "golden-a", key)
    b, _ = encrypted_image(aws, "golden-b", key)
    other = make_key({"Sid": "DenyDelete", "Effect": "Deny", "Principal": "*",
                      "Action": "kms:ScheduleKeyDeletion", "Resource": "*"})
    c, _ = encrypted_image(aws, "golden-c", other)
    text = kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n')
    plan = replan(text)
    warnings = {f.resource: f.message for f in plan.findings if f.code == "kms-deny-statement"}
    assert set(warnings) == {a, b}, "a Deny of an action consumers do not use is no warning"
    assert all("DenyOutsideOrg" in msg and key in msg for msg in warnings.values())
    assert c not in warnings


# ----------------------------------------------------------------- 7, 8. messages


def test_user_info_in_an_endpoint_url_is_masked(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: a connection error that quotes the URL
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    log = tmp_path / "log.jsonl"
    r = run_main("apply", m, "--auto-approve", "-v", "--log-file", str(log),
                 env={"AWS_ENDPOINT_URL": f"http://admin:s3cr3t-pw@127.0.0.1:{port}",
                      **FAST_FAIL})
    assert r.code == 1
    assert "s3cr3t-pw" not in r.out + r.err and "admin" not in r.out + r.err
    assert f"http://***:***@127.0.0.1:{port}" in r.err, r.err


def test_profile_errors_name_the_profile(tmp_path: Path) -> None:
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    r = run_main("plan", m, env={"AWS_PROFILE": "nosuch", "AWS_CONFIG_FILE": "/nonexistent",
                                 "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    assert r.code == 1
    assert "'nosuch'" in r.err and "None" not in r.err, r.err


def test_non_ascii_digits_are_said_as_such(tmp_path: Path) -> None:
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, '
                                  'launch: ["１１１１２２２２３３３３"]}\n'))
    r = run_main("validate", m)
    assert r.code == 1
    assert "non-ASCII digits" in r.err and "it has 12" not in r.err, r.err


# ----------------------------------------------------------------- 9. sandbox


SANDBOX_KEY = """\
version: 1
account: "123456789012"
keys:
  - name: k
    region: us-east-1
    policy:
      Version: "2012-10-17"
      Statement: @statement@
images:
  - {region: us-east-1, name: golden-1, encrypted_with: k}
"""
ROOT_YAML = '{Sid: Root, Effect: Allow, Principal: {AWS: "arn:aws:iam::123456789012:root"}, ' \
            'Action: "kms:*", Resource: "*"}'


def test_sandbox_key_policy_with_a_single_statement_object_is_a_located_error(
        tmp_path: Path) -> None:
    state = _write(tmp_path, SANDBOX_KEY.replace("@statement@", ROOT_YAML), "state.yaml")
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    r = run_main("plan", m, "--sandbox", state)
    assert r.code == 1
    _no_traceback(r.out, r.err)
    assert r.err.startswith(f"error: {state}:8:") and "Statement" in r.err and "list" in r.err, r.err


def test_sandbox_key_policy_with_a_deny_applies_and_saves(tmp_path: Path) -> None:
    # moto evaluates a Deny without its Condition: this one refused even DescribeKey.
    deny = ('{Sid: DenyOutsideOrg, Effect: Deny, Principal: "*", Action: "kms:*", Resource: "*", '
            'Condition: {StringNotEquals: {"aws:PrincipalOrgID": o-a1b2c3d4e5}}}')
    state = _write(tmp_path, SANDBOX_KEY.replace("@statement@", f"[{ROOT_YAML}, {deny}]"),
                   "state.yaml")
    m = _write(tmp_path, kms_manifest('  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n'))
    after = tmp_path / "after.yaml"
    r = run_main("apply", m, "--sandbox", state, "--auto-approve", "--sandbox-save", str(after))
    assert r.code == 0, r.out + r.err
    assert "Apply complete: 2 added" in r.out
    saved = after.read_text()
    assert "DenyOutsideOrg" in saved and "AmiShareReconcilerAccounts" in saved and PROD in saved
    r = run_main("plan", m, "--sandbox", str(after), "--detailed-exitcode")
    assert r.code == 0, r.out + r.err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
def test_a_log_that_cannot_be_written_stops_apply_cleanly(tmp_path: Path) -> None:
    """A full disk under --log-file: no traceback, no write started after the failed line,
    a clear error and exit 1; the next run applies the rest and converges."""
    m, state = str(EXAMPLES / "manifest.yaml"), str(EXAMPLES / "sandbox.yaml")
    after = str(tmp_path / "after.yaml")
    r = run_main("apply", m, "--sandbox", state, "--auto-approve", "--concurrency", "1",
                 "--log-file", "/dev/full", "--sandbox-save", after)
    assert r.code == 1, r.out + r.err
    assert "internal error" not in r.err and "Traceback" not in r.err
    assert "error: cannot write log file /dev/full: No space left on device; no write was " \
           "started after that" in r.err
    import re

    applied, left = map(int, re.search(r"Interrupted: (\d+) operations? applied, (\d+) not "
                                       r"applied", r.err).groups())
    assert applied + left == 13 and 0 < applied <= 2, "the first write (one key), then nothing"
    log = tmp_path / "apply.jsonl"
    r = run_main("apply", m, "--sandbox", after, "--auto-approve", "--log-file", str(log),
                 "--sandbox-save", after)
    assert r.code == 0, r.out + r.err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(rec["kind"] != "ownership_tag" for rec in records) == left, \
        "the operations the first run left"
    assert run_main("plan", m, "--sandbox", after, "--detailed-exitcode").code == 0


def test_a_log_failure_while_tagging_starts_no_further_tag_write(
        server: tuple[MotoServer, Images], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ownership tags are written in batches per Region: once a log line fails, no
    further batch starts."""
    import errno

    from helpers import EU, US, cli_env

    from reconciler.shell import applier

    srv, images = server
    ours = [images.create("golden-1", region=US), images.create("golden-2", region=EU)]
    m = tmp_path / "amis.yaml"
    m.write_text(f'version: 1\nsettings: {{name: amis, regions: [{US}, {EU}]}}\nimages:\n'
                 f'  - {{name: golden, select: {{name: "golden-*"}}, launch: ["{PROD}"]}}\n')

    class FullOnTags:
        """A log file whose disk fills up at the first ownership-tag record."""

        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def write(self, text: str) -> int:
            if "ownership_tag" in text:
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.fh.write(text))

        def flush(self) -> None:
            self.fh.flush()

        def close(self) -> None:
            self.fh.close()

    opened = applier.JsonLog.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        opened(self, *args, **kwargs)
        self.fh = FullOnTags(self.fh)

    monkeypatch.setattr(applier.JsonLog, "__init__", init)
    r = run_main("apply", str(m), "--auto-approve", "--log-file", str(tmp_path / "log.jsonl"),
                 env=dict(cli_env(srv.url, None)))
    assert r.code == 1 and "no write was started after that" in r.err, r.out + r.err
    tagged = [i for i, region in zip(ours, (US, EU), strict=True)
              if srv.client("ec2", region).describe_images(ImageIds=[i])["Images"][0].get("Tags")]
    assert len(tagged) == 1, "the first batch was written, the second never started"


@pytest.mark.parametrize(("images", "line", "expected"), [
    # a Region of the right shape that does not exist ended in a KeyError from the emulator
    ('  - {region: us-east-9, name: golden-1}\n', 4, "images[0].region: 'us-east-9' is not an "
                                                     "AWS Region"),
    # two images with one ID: the emulator silently kept one of them
    ('  - {region: us-east-1, name: golden-1, id: ami-00000000000000001}\n'
     '  - {region: us-east-1, name: golden-2, id: ami-00000000000000001}\n', 5,
     "images[1].id: ami-00000000000000001 is already images[0].id"),
])
def test_sandbox_states_the_emulator_cannot_hold_are_located_errors(
        images: str, line: int, expected: str, tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text('version: 1\naccount: "123456789012"\nimages:\n' + images)
    r = run_main("plan", str(EXAMPLES / "manifest.yaml"), "--sandbox", str(state))
    assert r.code == 1 and r.out == "" and "internal error" not in r.err, r.err
    assert f"error: {state}:{line}:" in r.err and expected in r.err, r.err


@pytest.mark.parametrize(("env", "expected"), [
    ({"AWS_MAX_ATTEMPTS": "abc"}, "error: AWS_MAX_ATTEMPTS must be a whole number"),
    ({"AWS_MAX_ATTEMPTS": ""}, "error: AWS_MAX_ATTEMPTS must be a whole number"),
    ({"AWS_RETRY_MODE": "bogus"}, "error: AWS_RETRY_MODE='bogus' is not one of"),
])
def test_bad_retry_settings_are_refused_in_the_sandbox_too(env: dict[str, str | None],
                                                          expected: str) -> None:
    """The sandbox's own clients read them too: they ended in an internal error there."""
    r = run_main("plan", str(EXAMPLES / "manifest.yaml"), "--sandbox",
                 str(EXAMPLES / "sandbox.yaml"), env=env)
    assert r.code == 1 and expected in r.err and "internal error" not in r.err, r.err
