"""Smoke tests: the installed ``reconcile`` console script in a subprocess, as a CI job
runs it (``run_script``), against a moto server reached only through ``AWS_ENDPOINT_URL``:
drift -> apply -> converge, a saved plan, the sandbox example, the progress bar on a
terminal, and the README's first command (``examples/demo.sh``). The in-process end-to-end
tests are ``test_e2e.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ACCOUNT, EXAMPLES, HAND, PROD, STAGING, Images, MotoServer, Runner
from test_e2e import acct, manifest

pytestmark = pytest.mark.e2e


def test_drift_is_found_fixed_and_converges(server: tuple[MotoServer, Images], run_script: Runner,
                                            tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": HAND}])
    scratch = images.create("scratch-1", launch=[{"UserId": HAND}])
    m = manifest(tmp_path)

    r = run_script("plan", m, "--detailed-exitcode")
    assert r.code == 2, r.err
    assert f"+ launch {STAGING} (staging)" in r.out
    assert f"- launch {HAND}" in r.out
    assert "Plan: 1 permission to add, 1 to remove, 1 unchanged, on 1 managed image." in r.out
    assert scratch not in r.out

    log = tmp_path / "apply.jsonl"
    r = run_script("apply", m, "--auto-approve", "--log-file", str(log))
    assert r.code == 0, r.err
    assert "Apply complete: 1 added, 1 removed, 0 failed." in r.out
    assert images.launch(golden) == acct(PROD, STAGING)
    assert images.launch(scratch) == acct(HAND), "an unmanaged image was touched"

    records = [r for r in map(json.loads, log.read_text().splitlines())
               if r["kind"] != "ownership_tag"]
    assert [(x["action"], x["principal"], x["result"]) for x in records] == [
        ("add", {"UserId": STAGING}, "applied"), ("remove", {"UserId": HAND}, "applied")]
    assert all(x["caller"].startswith(f"arn:aws:sts::{ACCOUNT}:") and x["time"] for x in records)

    r = run_script("plan", m, "--detailed-exitcode")
    assert r.code == 0, r.out + r.err
    assert "No changes: 2 permissions as declared on 1 managed image." in r.out


def test_saved_plan_applies_exactly(server: tuple[MotoServer, Images], run_script: Runner,
                                    tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    m = manifest(tmp_path)
    plan_file = tmp_path / "plan.json"
    r = run_script("plan", m, "--out", str(plan_file), "--detailed-exitcode")
    assert r.code == 2
    assert json.loads(plan_file.read_text())["summary"] == {
        "add": 2, "remove": 1, "images": 1, "unchanged": 0}
    r = run_script("apply", m, "--plan", str(plan_file))
    assert r.code == 0, r.err
    assert images.launch(golden) == acct(PROD, STAGING)
    assert run_script("plan", m, "--detailed-exitcode").code == 0


def test_sandbox_example_plans_and_applies(run_script: Runner, run_cli: Runner, no_aws,
                                           tmp_path: Path) -> None:
    m, state = str(EXAMPLES / "manifest.yaml"), str(EXAMPLES / "sandbox.yaml")
    plan_file = tmp_path / "plan.json"
    # AWS_ENDPOINT_URL points at a counter: the sandbox must never leave the process.
    r = run_script("plan", m, "--sandbox", state, "--format", "json", "--out", str(plan_file),
                endpoint=no_aws.url)
    assert r.code == 0, r.err
    # Each run starts a fresh emulator: generated IDs (keys, snapshots) must be the same in
    # every run, or plans differ and a saved plan is always "stale".
    again = run_cli("plan", m, "--sandbox", state, "--format", "json", endpoint=no_aws.url)
    assert again.out == r.out == plan_file.read_text()
    doc = json.loads(r.out)
    removes = [(o["resource"], o["principal"]) for o in doc["operations"] if o["action"] == "remove"]
    # the two kinds of drift in the example: an account added by hand, a stale public share
    assert removes == [("ami-0a11c0de000000001", {"UserId": "999988887777"}),
                       ("ami-0a11c0de000000002", {"Group": "all"})]
    assert "ami-0b0bde0000000c0de" not in r.out  # unmanaged scratch image
    assert {f["code"] for f in doc["findings"]} == {"image-disabled", "removal-kept-through-org"}
    kinds = {o["kind"] for o in doc["operations"]}
    assert kinds == {"launch_permission", "create_volume_permission", "kms_key_access"}
    # (the subprocess above is the smoke test; applying the plan in-process is enough here)
    r = run_cli("apply", m, "--sandbox", state, "--plan", str(plan_file), endpoint=no_aws.url)
    assert r.code == 0, r.err
    assert "Apply complete: 11 added, 2 removed, 0 failed." in r.out
    assert no_aws.count == 0


def test_progress_bar_only_on_a_terminal(server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    import os
    import pty
    import subprocess

    from helpers import cli_env, reconcile_executable

    srv, images = server
    for i in range(60):
        images.create(f"golden-{i:02d}")
    m = manifest(tmp_path)

    def run(tty: bool, *extra: str) -> tuple[str, str]:
        master, slave = pty.openpty()
        proc = subprocess.Popen([*reconcile_executable(), "plan", m, *extra],
                                env=cli_env(srv.url), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=slave if tty else subprocess.PIPE)
        os.close(slave)
        out, err = proc.communicate(timeout=120)
        chunks = []
        if tty:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
        os.close(master)
        assert proc.returncode == 0
        return out.decode(), (b"".join(chunks) if tty else err).decode()

    _, err = run(True)
    assert "Reading launch permissions" in err and "60/60" in err
    _, err = run(False)
    assert "Reading launch permissions" not in err
    _, err = run(True, "--quiet")
    assert "Reading launch permissions" not in err


def test_demo_runs_every_command_it_prints(tmp_path: Path) -> None:
    """The README's first command: each printed command runs exactly as printed, in a kept
    folder, with no terminal escapes when the output is not a terminal."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "demo"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.run(["sh", str(EXAMPLES / "demo.sh"), str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\033" not in proc.stdout
    commands = [line[2:] for line in proc.stdout.splitlines() if line.startswith("$ ")]
    assert len(commands) == 6 and all(f"(in {folder})" in proc.stdout for _ in commands)
    assert {p.name for p in folder.iterdir()} >= {"manifest.yaml", "sandbox.yaml", "after.yaml",
                                                  "apply.jsonl", "drifted.yaml"}
    assert "No changes: 14 permissions as declared on 5 managed images." in proc.stdout
    # a printed command, copied, runs as printed in the kept folder (the first, offline one:
    # every command above already ran through the same printing)
    again = subprocess.run(commands[0], shell=True, cwd=folder, env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith("manifest.yaml: valid"), \
        again.stdout + again.stderr
