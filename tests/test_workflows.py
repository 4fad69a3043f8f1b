"""The GitHub Actions workflows in examples/github-actions/: a few steps that use this
repository's action (action.yml, tested by test_action.py).

- Security review: zizmor (``--persona pedantic``) and the GitHub workflow JSON Schema
  (check-jsonschema's vendored ``vendor.github-workflows``) report nothing; actions are
  pinned to commit SHAs; no job has a permission it does not use.
- Each job hands the action inputs it has, and the jobs fit together: the comment and drift
  report read the artifact the plan and apply jobs upload.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLES, ROOT, cli_env, run_main

import reconciler

WORKFLOWS = EXAMPLES / "github-actions"
PLAN_YML = WORKFLOWS / "plan.yml"
APPLY_YML = WORKFLOWS / "apply.yml"
BOTH = pytest.mark.parametrize("path", [PLAN_YML, APPLY_YML], ids=["plan", "apply"])
MANIFEST = "amis.yaml"
SARIF = "reconcile-out/reconcile.sarif"
# This repository's action, as the examples name it: the user puts in where the repository
# lives and the commit of the release they reviewed.
OURS = "OWNER/REPOSITORY"
OURS_PIN = f"{OURS}@COMMIT_SHA # v{reconciler.__version__}"
BIN = Path(sys.executable).parent

# The release each action is pinned to: the commit its tag points to, read from the
# action's own repository (git rev-parse 'vX.Y.Z^{commit}') on 2026-12-01.
PINNED = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c",
                                              "v6.2.3"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    # read from github/codeql-action on 2026-12-04
    "github/codeql-action/upload-sarif": ("8aad20d150bbac5944a9f9d289da16a4b0d87c1e", "v4.36.2"),
}


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True; GitHub reads "on".
    on = doc.get("on", doc.get(True))
    assert isinstance(on, dict), on
    return on


def all_steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in doc["jobs"].values() for s in job["steps"]]


def uses(steps: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in steps if str(s.get("uses", "")).split("@")[0] == action]


def ours(job: dict[str, Any]) -> dict[str, str]:
    """The inputs a job gives this repository's action (one step per job)."""
    (step,) = uses(job["steps"], OURS)
    return dict(step.get("with", {}))


@cache
def help_text(command: str) -> str:
    r = run_main(command, "--help", env=dict(cli_env(None)))
    assert r.code == 0, r.err
    return r.out


def filled_in(tmp_path: Path) -> list[Path]:
    """The examples as a user has them: our action's placeholder replaced by a commit."""
    out = []
    for path in (PLAN_YML, APPLY_YML):
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace(
            f"{OURS}@COMMIT_SHA", "acme/ami-share-reconciler@" + "0123456789abcdef" * 2 + "01234567"))
        out.append(copy)
    return out


# --------------------------------------------------------------------------- security review


@pytest.mark.skipif(shutil.which("zizmor", path=str(BIN)) is None,
                    reason="zizmor is installed by the test extra")
def test_zizmor_pedantic_finds_nothing(tmp_path: Path) -> None:
    proc = subprocess.run([str(BIN / "zizmor"), "--persona", "pedantic", "--offline",
                           "--no-progress", *map(str, filled_in(tmp_path))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


def test_workflows_match_the_github_workflow_schema() -> None:
    proc = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", str(PLAN_YML), str(APPLY_YML)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@BOTH
def test_actions_are_pinned_to_the_commit_of_a_release(path: Path) -> None:
    lines = [line.strip() for line in path.read_text().splitlines() if "uses:" in line
             and not line.lstrip().startswith("#")]
    assert lines
    for line in lines:
        if OURS in line:  # the user's pin of this repository, at the version it documents
            assert line.removeprefix("- ") == f"uses: {OURS_PIN}", line
            continue
        # owner/repository, or owner/repository/path for an action in a subfolder
        m = re.fullmatch(r"(?:- )?uses: ([\w.-]+/[\w.-]+(?:/[\w.-]+)*)@([0-9a-f]{40}) "
                         r"# (v\d+\.\d+\.\d+)", line)
        assert m, line
        assert PINNED[m[1]] == (m[2], m[3]), line


@BOTH
def test_checkout_never_persists_the_token(path: Path) -> None:
    for s in uses(all_steps(load(path)), "actions/checkout"):
        assert s["with"]["persist-credentials"] is False


@pytest.mark.parametrize(("path", "expected"), [
    (PLAN_YML, {"plan": {"contents": "read", "id-token": "write"},
                "comment": {"pull-requests": "write"},
                "code-scanning": {"contents": "read", "security-events": "write"}}),
    (APPLY_YML, {"apply": {"contents": "read", "id-token": "write"},
                 "verify": {"contents": "read", "id-token": "write"},
                 "report": {"issues": "write"}}),
], ids=["plan", "apply"])
def test_permissions_are_per_job_and_least(path: Path, expected: dict[str, Any]) -> None:
    doc = load(path)
    assert doc["permissions"] == {}  # nothing by default
    assert {name: job["permissions"] for name, job in doc["jobs"].items()} == expected
    for job in doc["jobs"].values():  # the OIDC token only where the role is assumed
        assumes = bool(uses(job["steps"], OURS)) and "role-to-assume" in ours(job)
        assert ("id-token" in job["permissions"]) is assumes
        # GitHub write access only where the action writes to GitHub, never beside AWS
        writes = "pull-requests" in job["permissions"] or "issues" in job["permissions"]
        if writes:
            assert ours(job)["command"] in ("comment", "report") and not assumes


@BOTH
def test_workflow_uses_oidc_and_no_stored_keys(path: Path) -> None:
    doc = load(path)
    text = path.read_text()
    for job in doc["jobs"].values():
        if uses(job["steps"], OURS) and "role-to-assume" in ours(job):
            assert re.fullmatch(r"\$\{\{ vars\.[A-Z_]+_ROLE_ARN \}\}", ours(job)["role-to-assume"])
            assert ours(job)["aws-region"] == "${{ vars.AWS_REGION || 'us-east-1' }}"
    for secret in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "secrets."):
        assert secret not in text


@BOTH
def test_every_input_given_exists_and_no_script_is_left(path: Path) -> None:
    action = load(ROOT / "action.yml")
    for job in load(path)["jobs"].values():
        if uses(job["steps"], OURS):
            assert set(ours(job)) <= set(action["inputs"]), ours(job)
        for s in job["steps"]:  # the scripts live in the action, tested there
            assert "run" not in s, s.get("name")
    flags = [a for job in load(path)["jobs"].values() if uses(job["steps"], OURS)
             for a in re.findall(r"'(--[a-z-]+)'", ours(job).get("args", ""))]
    for flag in flags:
        assert re.search(rf"(^|\s){re.escape(flag)}(\s|,|$)", help_text("apply"), re.M), flag


def test_the_jobs_fit_together() -> None:
    plan, apply = load(PLAN_YML), load(APPLY_YML)
    action = load(ROOT / "action.yml")
    out = action["inputs"]["output-dir"]["default"]
    assert f"{out}/reconcile.sarif" == SARIF
    assert ours(plan["jobs"]["plan"]) == {
        "command": "plan", "manifest": MANIFEST,
        "role-to-assume": "${{ vars.AMI_RECONCILER_PLAN_ROLE_ARN }}",
        "aws-region": "${{ vars.AWS_REGION || 'us-east-1' }}"}
    assert ours(plan["jobs"]["comment"]) == {"command": "comment"}
    # code scanning reads what the plan job's action uploaded (artifact reconcile-plan)
    scanning = plan["jobs"]["code-scanning"]
    (download,) = uses(scanning["steps"], "actions/download-artifact")
    assert download["with"] == {"name": "reconcile-plan", "path": out}
    assert download["continue-on-error"] is True  # a job that failed early uploaded nothing
    (upload,) = uses(scanning["steps"], "github/codeql-action/upload-sarif")
    assert upload["with"]["sarif_file"] == SARIF
    assert upload["if"] == f"${{{{ hashFiles('{SARIF}') != '' }}}}"
    for name in ("comment", "code-scanning"):
        assert plan["jobs"][name]["needs"] == "plan"
        assert plan["jobs"][name]["if"] == "${{ !cancelled() }}"
    assert ours(apply["jobs"]["apply"]) == {
        "command": "apply", "manifest": MANIFEST,
        "role-to-assume": "${{ vars.AMI_RECONCILER_APPLY_ROLE_ARN }}",
        "aws-region": "${{ vars.AWS_REGION || 'us-east-1' }}",
        # only a manual run with the box ticked acknowledges a mass removal
        "args": "${{ github.event_name == 'workflow_dispatch' && inputs.allow_mass_removal "
                "&& '--allow-mass-removal' || '' }}"}
    assert ours(apply["jobs"]["verify"])["consumer-role"] == \
        "${{ vars.AMI_RECONCILER_CONSUMER_ROLE }}"
    assert apply["jobs"]["verify"]["if"] == \
        ("${{ !cancelled() && vars.AMI_RECONCILER_CONSUMER_ROLE != '' "
         "&& vars.AMI_RECONCILER_VERIFY_ROLE_ARN != '' }}")
    assert ours(apply["jobs"]["report"]) == {"command": "report"}


def test_triggers_and_concurrency() -> None:
    plan, apply = load(PLAN_YML), load(APPLY_YML)
    # never pull_request_target: it runs fork code with the base repository's permissions
    assert set(triggers(plan)) == {"pull_request"}
    assert MANIFEST in triggers(plan)["pull_request"]["paths"]
    assert plan["concurrency"]["cancel-in-progress"] is True
    on = triggers(apply)
    assert on["push"]["branches"] == ["main"] and MANIFEST in on["push"]["paths"]
    (schedule,) = on["schedule"]
    assert len(schedule["cron"].split()) == 5
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["allow_mass_removal"]["type"] == "boolean"
    assert inputs["allow_mass_removal"]["default"] is False
    assert apply["concurrency"] == {"group": "reconcile-apply", "cancel-in-progress": False}
    # the comment and the drift report run after a failure too, never after a cancel
    assert plan["jobs"]["comment"]["if"] == "${{ !cancelled() }}"
    assert apply["jobs"]["report"]["if"] == \
        "${{ !cancelled() && github.event_name == 'schedule' }}"
