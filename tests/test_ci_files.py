"""The CI integration files: the GitHub Actions examples and the pre-commit hook.

Their shape is asserted, every ``reconcile`` command and flag they use is checked against the
installed CLI's ``--help``, and the shell steps that handle exit codes are executed with a
stub ``reconcile`` that exits 0, 1 or 2.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLES, ROOT, cli_env, reconcile_executable

WORKFLOWS = EXAMPLES / "github-actions"
PLAN_YML = WORKFLOWS / "plan.yml"
APPLY_YML = WORKFLOWS / "apply.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
MANIFEST = "amis.yaml"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True; GitHub reads "on".
    on = doc.get("on", doc.get(True))
    assert isinstance(on, dict), on
    return on


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = doc["jobs"].values()
    return job["steps"]


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in steps(doc) if s.get("name") == name]
    assert len(found) == 1, [s.get("name") for s in steps(doc)]
    return found[0]


def uses(doc: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(doc) if str(s.get("uses", "")).split("@")[0] == action]


def reconcile_commands(doc: dict[str, Any]) -> list[list[str]]:
    """Every `reconcile ...` command line in the workflow's run scripts, as argv lists."""
    out = []
    for s in steps(doc):
        for line in str(s.get("run", "")).splitlines():
            line = line.strip()
            if not line.startswith("reconcile "):
                continue
            argv = shlex.split(line, comments=True)
            # drop shell redirections (>file, 2>file, 2>&1)
            out.append([a for a in argv if not re.match(r"^\d*>", a)])
    return out


@cache
def help_text(command: str) -> str:
    proc = subprocess.run([*reconcile_executable(), command, "--help"], capture_output=True,
                          text=True, env=cli_env(None), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_step_script(script: str, tmp_path: Path, stub_code: int,
                    env: dict[str, str] | None = None) -> tuple[int, str, dict[str, str], Path]:
    """Run a `run:` script the way GitHub does (bash -eo pipefail) with a stub `reconcile`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "reconcile"
    stub.write_text("#!/bin/sh\n"
                    'echo "reconcile $*" >> "$STUB_LOG"\n'
                    'echo "## plan output"\n'
                    'echo "error: amis.yaml:4:7: images[0].launch[0]: unknown principal name" >&2\n'
                    'echo \'{"format_version": 1}\' > plan.json\n'
                    'exit "$STUB_CODE"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    script_file = tmp_path / "step.sh"
    script_file.write_text(script)
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_CODE": str(stub_code),
             "STUB_LOG": str(tmp_path / "calls.log"), "GITHUB_OUTPUT": str(outputs),
             **(env or {})})
    pairs = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    return proc.returncode, proc.stdout + proc.stderr, pairs, tmp_path / "calls.log"


# --------------------------------------------------------------------------- both workflows


@pytest.mark.parametrize("path", [PLAN_YML, APPLY_YML], ids=["plan", "apply"])
def test_workflow_uses_oidc_and_no_stored_keys(path: Path) -> None:
    doc = load(path)
    text = path.read_text()
    assert doc["permissions"]["id-token"] == "write"
    assert doc["permissions"]["contents"] == "read"
    (creds,) = uses(doc, "aws-actions/configure-aws-credentials")
    assert creds["uses"].endswith("@v4")
    assert re.fullmatch(r"\$\{\{ vars\.[A-Z_]+_ROLE_ARN \}\}", creds["with"]["role-to-assume"])
    assert "aws-region" in creds["with"]
    for secret in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "secrets."):
        assert secret not in text
    # credentials come before the first command that reads AWS, after offline validation
    names = [s.get("name", s.get("uses")) for s in steps(doc)]
    assert names.index("Validate the manifest (offline)") < names.index(
        "Configure AWS credentials (OIDC)")


@pytest.mark.parametrize("path", [PLAN_YML, APPLY_YML], ids=["plan", "apply"])
def test_every_reconcile_flag_used_exists_in_the_cli(path: Path) -> None:
    commands = reconcile_commands(load(path))
    assert commands
    for argv in commands:
        assert argv[0] == "reconcile"
        command = argv[1]
        assert command in ("validate", "plan", "apply", "export")
        assert MANIFEST in argv
        help_out = help_text(command)
        for flag in (a for a in argv if a.startswith("--")):
            pattern = rf"(^|\s){re.escape(flag)}(\s|,|$)"
            assert re.search(pattern, help_out, re.MULTILINE), (command, flag)


@pytest.mark.parametrize("path", [PLAN_YML, APPLY_YML], ids=["plan", "apply"])
def test_run_scripts_never_expand_expressions(path: Path) -> None:
    # `${{ }}` inside `run:` is a script-injection risk: values go through `env:` instead.
    for s in steps(load(path)):
        assert "${{" not in str(s.get("run", "")), s.get("name")


@pytest.mark.parametrize("path", [PLAN_YML, APPLY_YML], ids=["plan", "apply"])
def test_install_is_pinned(path: Path) -> None:
    doc = load(path)
    assert re.search(r"reconciler @ git\+https://\S+@v\d+\.\d+\.\d+$", doc["env"]["RECONCILER_PIP"])
    assert '"$RECONCILER_PIP"' in step(doc, "Install reconciler")["run"]


# --------------------------------------------------------------------------- plan.yml


def test_plan_workflow_triggers_and_permissions() -> None:
    doc = load(PLAN_YML)
    on = triggers(doc)
    # never pull_request_target: it runs fork code with the base repository's permissions
    assert set(on) == {"pull_request"}
    assert MANIFEST in on["pull_request"]["paths"]
    assert doc["permissions"] == {"id-token": "write", "contents": "read",
                                  "pull-requests": "write"}


def test_plan_workflow_commands() -> None:
    doc = load(PLAN_YML)
    assert reconcile_commands(doc) == [
        ["reconcile", "validate", MANIFEST],
        ["reconcile", "plan", MANIFEST, "--format", "markdown", "--out", "plan.json",
         "--detailed-exitcode"],
    ]


@pytest.mark.parametrize(("code", "step_ok", "check_ok"), [(0, True, True), (2, True, True),
                                                           (1, True, False), (3, True, False)])
def test_plan_exit_code_handling(tmp_path: Path, code: int, step_ok: bool, check_ok: bool) -> None:
    doc = load(PLAN_YML)
    rc, out, outputs, calls = run_step_script(step(doc, "Plan")["run"], tmp_path, code)
    assert (rc == 0) is step_ok, out  # the plan step never fails: the comment comes first
    assert outputs == {"exitcode": str(code)}
    assert calls.read_text().split() == ["reconcile", "plan", MANIFEST, "--format", "markdown",
                                         "--out", "plan.json", "--detailed-exitcode"]
    assert (tmp_path / "plan.md").read_text() == "## plan output\n"
    assert "unknown principal name" in (tmp_path / "plan.err").read_text()
    if not check_ok:
        assert f"::error::reconcile plan failed with exit code {code}" in out

    check = step(doc, "Check the plan")
    assert check["env"]["EXIT_CODE"] == "${{ steps.plan.outputs.exitcode }}"
    proc = subprocess.run(["bash", "-eo", "pipefail", "-c", check["run"]], capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], "EXIT_CODE": str(code)})
    assert (proc.returncode == 0) is check_ok, proc.stdout
    # it runs even though an earlier step "failed", but not after a cancel
    assert "!cancelled()" in check["if"] and "steps.plan.outputs.exitcode" in check["if"]


@pytest.mark.parametrize("code", [0, 1])
def test_validate_step_annotates_errors(tmp_path: Path, code: int) -> None:
    script = step(load(PLAN_YML), "Validate the manifest (offline)")["run"]
    rc, out, _, calls = run_step_script(script, tmp_path, code)
    assert rc == code
    assert calls.read_text().split() == ["reconcile", "validate", MANIFEST]
    assert "::error file=amis.yaml,line=4,col=7::images[0].launch[0]: unknown principal name" in out


def test_plan_comment_is_a_single_updated_comment() -> None:
    doc = load(PLAN_YML)
    (comment,) = uses(doc, "actions/github-script")
    assert comment["uses"].endswith("@v7")
    script = comment["with"]["script"]
    assert "const marker = '<!-- reconcile-plan -->';" in script
    assert "github.paginate(github.rest.issues.listComments" in script
    assert "c.body?.includes(marker)" in script
    assert "github.rest.issues.updateComment" in script
    assert "github.rest.issues.createComment" in script
    assert script.index("updateComment") < script.index("createComment")
    assert "readFileSync(f, 'utf8')" in script and "read('plan.md')" in script
    assert "65000" in script  # GitHub caps comments at 65,536 characters
    assert comment["env"]["EXIT_CODE"] == "${{ steps.plan.outputs.exitcode }}"
    assert "!cancelled()" in comment["if"]


def test_plan_is_uploaded_as_an_artifact() -> None:
    doc = load(PLAN_YML)
    (upload,) = uses(doc, "actions/upload-artifact")
    assert upload["uses"].endswith("@v4")
    assert "plan.json" in upload["with"]["path"].split()
    assert "!cancelled()" in upload["if"]
    names = [s.get("name") for s in steps(doc)]
    assert names.index("Plan") < names.index("Upload the plan") < names.index("Check the plan")


# --------------------------------------------------------------------------- apply.yml


def test_apply_workflow_triggers_permissions_and_concurrency() -> None:
    doc = load(APPLY_YML)
    on = triggers(doc)
    assert on["push"]["branches"] == ["main"]
    assert MANIFEST in on["push"]["paths"]
    (schedule,) = on["schedule"]
    fields = schedule["cron"].split()
    assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields)
    assert "pull_request" not in on and "pull_request_target" not in on
    assert doc["permissions"] == {"id-token": "write", "contents": "read"}
    # one group for every trigger (no ref / run id in it), never cancelled midway
    assert doc["concurrency"] == {"group": "reconcile-apply", "cancel-in-progress": False}


def test_apply_workflow_commands() -> None:
    assert reconcile_commands(load(APPLY_YML)) == [
        ["reconcile", "validate", MANIFEST],
        ["reconcile", "apply", MANIFEST, "--auto-approve", "--log-file", "apply.jsonl",
         "$ACKNOWLEDGE"],
    ]


@pytest.mark.parametrize("acknowledge", ["", "--allow-mass-removal"])
def test_apply_acknowledges_a_mass_removal_only_on_a_ticked_manual_run(
        tmp_path: Path, acknowledge: str) -> None:
    doc = load(APPLY_YML)
    inputs = doc[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads the key `on` as True
    assert inputs["allow_mass_removal"] == {
        "description": inputs["allow_mass_removal"]["description"], "type": "boolean",
        "default": False}
    apply = step(doc, "Apply")
    assert apply["env"]["ACKNOWLEDGE"] == (
        "${{ github.event_name == 'workflow_dispatch' && inputs.allow_mass_removal "
        "&& '--allow-mass-removal' || '' }}")
    rc, out, _, calls = run_step_script(apply["run"], tmp_path, 0, {"ACKNOWLEDGE": acknowledge})
    assert rc == 0, out
    assert calls.read_text().split() == ["reconcile", "apply", MANIFEST, "--auto-approve",
                                         "--log-file", "apply.jsonl", *acknowledge.split()]


@pytest.mark.parametrize("code", [0, 1])
def test_apply_fails_the_job_on_exit_code_1(tmp_path: Path, code: int) -> None:
    rc, out, outputs, calls = run_step_script(step(load(APPLY_YML), "Apply")["run"], tmp_path, code)
    assert rc == code, out
    assert outputs == {"exitcode": str(code)}
    assert calls.read_text().split() == ["reconcile", "apply", MANIFEST, "--auto-approve",
                                         "--log-file", "apply.jsonl"]
    assert ("::error::reconcile apply exited with 1" in out) is (code == 1)


def test_apply_log_is_always_uploaded() -> None:
    doc = load(APPLY_YML)
    (upload,) = uses(doc, "actions/upload-artifact")
    assert upload["if"] == "${{ always() }}"
    assert upload["with"]["path"] == "apply.jsonl"
    names = [s.get("name") for s in steps(doc)]
    assert names.index("Apply") < names.index("Upload the apply log")


# --------------------------------------------------------------------------- pre-commit


def hook() -> dict[str, Any]:
    hooks = yaml.safe_load(HOOKS.read_text())
    assert isinstance(hooks, list) and len(hooks) == 1
    return hooks[0]


def test_pre_commit_hook_definition() -> None:
    h = hook()
    assert h["id"] == "reconcile-validate"
    assert h["language"] == "python"
    assert h["entry"] == "reconcile validate"
    assert h["name"] and h["description"]
    assert set(h) <= {"id", "name", "description", "entry", "language", "files", "types",
                      "exclude", "pass_filenames", "require_serial", "minimum_pre_commit_version"}
    # users are told how to override `files`
    text = HOOKS.read_text()
    assert "id: reconcile-validate" in text and re.search(r"#\s+files: ", text)


@pytest.mark.parametrize(("path", "matches"), [
    ("amis.yaml", True), ("amis.yml", True), ("infra/amis.yaml", True),
    ("infra/amis-prod.yaml", True), ("amis.json", False), ("other.yaml", False),
    ("amis/values.yaml", False), ("examples/notamis.yaml", False), ("amis.yaml.bak", False),
])
def test_pre_commit_files_pattern(path: str, matches: bool) -> None:
    # pre-commit applies `files` with re.search on the repository-relative path
    assert bool(re.search(hook()["files"], path)) is matches


def run_hook(*files: Path) -> subprocess.CompletedProcess[str]:
    """Invoke the hook's entry as pre-commit does: entry split, filenames appended."""
    entry = shlex.split(hook()["entry"])
    assert entry[0] == "reconcile"
    return subprocess.run([*reconcile_executable(), *entry[1:], *map(str, files)],
                          capture_output=True, text=True, env=cli_env(None), timeout=60)


def test_pre_commit_hook_runs_validate(tmp_path: Path) -> None:
    good = run_hook(EXAMPLES / "manifest.yaml")
    assert good.returncode == 0 and "valid" in good.stdout
    bad = tmp_path / "amis.yaml"
    bad.write_text("version: 1\nimages:\n  - name: r\n    select: {ids: [ami-1]}\n")
    proc = run_hook(bad)
    assert proc.returncode == 1
    assert f"{bad}:4:" in proc.stderr and "is not an AMI ID" in proc.stderr


def test_pre_commit_hook_with_two_manifests(tmp_path: Path) -> None:
    other = tmp_path / "amis-2.yaml"
    other.write_text((EXAMPLES / "manifest.yaml").read_text())
    assert run_hook(EXAMPLES / "manifest.yaml", other).returncode == 0
