"""The GitHub Actions workflows in examples/github-actions/.

- Security review: zizmor (``--persona pedantic``) and the GitHub workflow JSON Schema
  (check-jsonschema's vendored ``vendor.github-workflows``) report nothing; actions are
  pinned to commit SHAs; no job has a permission it does not use.
- Every ``reconcile`` command and flag they use exists in the installed CLI.
- Their shell steps run here as GitHub runs them (``bash --noprofile --norc -eo pipefail``):
  the real ``reconcile`` against the moto server, and a fake ``gh`` on PATH that records its
  calls and answers ``gh api``/``gh issue list`` from canned JSON (``--jq`` through jq, as
  gh's built-in jq does).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from consumer_view import TEMPLATE, ConsumerView
from helpers import (
    EXAMPLES,
    HAND,
    PROD,
    Images,
    MotoServer,
    cli_env,
    manifest_yaml,
    reconcile_executable,
    sarif_results,
)

import reconciler

WORKFLOWS = EXAMPLES / "github-actions"
PLAN_YML = WORKFLOWS / "plan.yml"
APPLY_YML = WORKFLOWS / "apply.yml"
BOTH = pytest.mark.parametrize("path", [PLAN_YML, APPLY_YML], ids=["plan", "apply"])
MANIFEST = "amis.yaml"
SARIF = "reconcile-out/reconcile.sarif"
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


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in all_steps(doc) if s.get("name") == name]
    assert len(found) == 1, [s.get("name") for s in all_steps(doc)]
    return found[0]


def uses(doc: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in all_steps(doc) if str(s.get("uses", "")).split("@")[0] == action]


def reconcile_commands(doc: dict[str, Any]) -> list[list[str]]:
    """Every `reconcile ...` command line in the run scripts, as argv lists."""
    out = []
    for s in all_steps(doc):
        for line in str(s.get("run", "")).replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("reconcile "):
                argv = shlex.split(line, comments=True)
                out.append([a for a in argv if not re.match(r"^\d*>", a)])  # no redirections
    return out


@cache
def help_text(command: str) -> str:
    proc = subprocess.run([*reconcile_executable(), command, "--help"], capture_output=True,
                          text=True, env=cli_env(None), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# --------------------------------------------------------------------------- security review


@pytest.mark.skipif(shutil.which("zizmor", path=str(BIN)) is None,
                    reason="zizmor is installed by the test extra")
def test_zizmor_pedantic_finds_nothing() -> None:
    proc = subprocess.run([str(BIN / "zizmor"), "--persona", "pedantic", "--offline",
                           "--no-progress", str(PLAN_YML), str(APPLY_YML)],
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
    lines = [line.strip() for line in path.read_text().splitlines() if "uses:" in line]
    assert lines
    for line in lines:
        # owner/repository, or owner/repository/path for an action in a subfolder
        m = re.fullmatch(r"(?:- )?uses: ([\w.-]+/[\w.-]+(?:/[\w.-]+)*)@([0-9a-f]{40}) "
                         r"# (v\d+\.\d+\.\d+)", line)
        assert m, line
        assert PINNED[m[1]] == (m[2], m[3]), line


@BOTH
def test_checkout_never_persists_the_token(path: Path) -> None:
    for s in uses(load(path), "actions/checkout"):
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
        assumes = any(str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials")
                      for s in job["steps"])
        assert ("id-token" in job["permissions"]) is assumes


@BOTH
def test_pip_cache_and_a_tested_python(path: Path) -> None:
    setups = uses(load(path), "actions/setup-python")  # one per job that installs it
    for setup in setups:
        assert setup["with"]["cache"] == "pip"
        # the cache key follows the file that pins the release
        assert setup["with"]["cache-dependency-path"] == \
            f".github/workflows/reconcile-{path.stem}.yml"
    assert len({s["with"]["python-version"] for s in setups}) == 1
    setup = setups[0]
    from importlib.metadata import metadata

    claimed = {c.rsplit(" :: ", 1)[1] for c in metadata("ami-share-reconciler").get_all(
        "Classifier") if c.startswith("Programming Language :: Python :: 3.")}
    assert setup["with"]["python-version"] in claimed


@BOTH
def test_workflow_uses_oidc_and_no_stored_keys(path: Path) -> None:
    doc = load(path)
    text = path.read_text()
    for creds in uses(doc, "aws-actions/configure-aws-credentials"):  # apply's: verify's too
        assert re.fullmatch(r"\$\{\{ vars\.[A-Z_]+_ROLE_ARN \}\}",
                            creds["with"]["role-to-assume"])
        assert "aws-region" in creds["with"]
    for secret in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "secrets."):
        assert secret not in text
    names = [s.get("name", s.get("uses")) for s in all_steps(doc)]
    assert names.index("Validate the manifest (offline)") < names.index(
        "Configure AWS credentials (OIDC)")


@BOTH
def test_every_reconcile_flag_used_exists_in_the_cli(path: Path) -> None:
    commands = reconcile_commands(load(path))
    assert len(commands) >= 2
    for argv in commands:
        assert argv[0] == "reconcile" and argv[1] in ("validate", "plan", "apply", "verify")
        assert MANIFEST in argv
        for flag in (a for a in argv if a.startswith("--")):
            assert re.search(rf"(^|\s){re.escape(flag)}(\s|,|$)", help_text(argv[1]),
                             re.MULTILINE), (argv[1], flag)


@BOTH
def test_run_scripts_never_expand_expressions(path: Path) -> None:
    # `${{ }}` inside `run:` is a script-injection risk: values go through `env:` instead.
    for s in all_steps(load(path)):
        assert "${{" not in str(s.get("run", "")), s.get("name")


@BOTH
def test_install_is_pinned_to_this_release_by_its_distribution_name(path: Path) -> None:
    doc = load(path)
    assert doc["env"]["RECONCILER_PIP"] == f"ami-share-reconciler=={reconciler.__version__}"
    assert '"$RECONCILER_PIP"' in step(doc, "Install reconciler")["run"]


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
    assert apply["concurrency"] == {"group": "reconcile-apply", "cancel-in-progress": False}
    # the comment and the drift report run after a failure too, never after a cancel
    assert plan["jobs"]["comment"]["if"] == "${{ !cancelled() }}"
    assert apply["jobs"]["report"]["if"] == \
        "${{ !cancelled() && github.event_name == 'schedule' }}"


# --------------------------------------------------------------------------- running the steps


FAKE_GH = '''#!{python}
"""A fake `gh`: records each call (and the body it posts) and answers reads from JSON."""
import json, os, subprocess, sys
args = sys.argv[1:]
entry = {{"argv": args}}
for i, a in enumerate(args):
    if a == "--body-file":
        entry["body"] = open(args[i + 1]).read()
    elif a.startswith("body=@"):
        entry["body"] = open(a[6:]).read()
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
data = None
if args[0] == "api" and "--method" not in args:
    data = json.loads(os.environ.get("FAKE_GH_COMMENTS", "[]"))
elif args[:2] == ["issue", "list"]:
    data = json.loads(os.environ.get("FAKE_GH_ISSUES", "[]"))
if data is not None:
    text = json.dumps(data)
    if "--jq" in args:
        text = subprocess.run(["jq", "-r", args[args.index("--jq") + 1]], input=text,
                              capture_output=True, text=True, check=True).stdout
    sys.stdout.write(text)
'''

needs_jq = pytest.mark.skipif(shutil.which("jq") is None,
                              reason="the fake gh evaluates --jq with jq, as gh does")


class Runner:
    """Runs a workflow's steps in one workspace, as a job's steps share one checkout."""

    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        self.dir = tmp_path / "workspace"
        self.dir.mkdir()
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        gh = bin_dir / "gh"
        gh.write_text(FAKE_GH.format(python=sys.executable))
        gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
        self.log = tmp_path / "gh.jsonl"
        self.outputs = tmp_path / "github_output"
        self.env = {**cli_env(endpoint), "PATH": os.pathsep.join([str(bin_dir), str(BIN),
                                                                  os.environ["PATH"]]),
                    "FAKE_GH_LOG": str(self.log), "GITHUB_OUTPUT": str(self.outputs),
                    "GH_REPO": "acme/platform", "GH_TOKEN": "fake-token",
                    "RUN_URL": "https://github.com/acme/platform/actions/runs/42"}

    def run(self, doc: dict[str, Any], name: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.outputs.write_text("")
        script = self.dir.parent / "step.sh"
        script.write_text(step(doc, name)["run"])
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                              cwd=self.dir, capture_output=True, text=True, timeout=120,
                              env={**self.env, **env})

    def output(self, key: str) -> str:
        pairs = dict(line.split("=", 1) for line in self.outputs.read_text().splitlines())
        return pairs[key]

    def gh_calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return calls


def write_manifest(folder: Path, image_id: str, principal: str = "prod") -> None:
    (folder / MANIFEST).write_text(manifest_yaml(
        f"- name: golden\n  select: {{ids: [{image_id}]}}\n  launch: [{principal}]",
        principals={"prod": PROD}, name="amis"))


PR_ENV = {"PR_NUMBER": "7", "HEAD_SHA": "0123456789abcdef0123456789abcdef01234567"}


@needs_jq
def test_plan_workflow_posts_then_updates_one_comment(
        server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    doc, w = load(PLAN_YML), Runner(tmp_path, srv.url)
    write_manifest(w.dir, golden)

    r = w.run(doc, "Validate the manifest (offline)")
    assert r.returncode == 0 and w.output("exitcode") == "0", r.stderr
    r = w.run(doc, "Plan")
    assert r.returncode == 0 and w.output("exitcode") == "2", r.stderr
    assert "The plan has changes" in r.stdout
    # the plan's SARIF log replaced validate's: no finding, nothing for code scanning
    assert sarif_results((w.dir / SARIF).read_text()) == []
    check_env = {"VALIDATE_EXIT": "0", "PLAN_EXIT": "2"}
    assert w.run(doc, "Check the result", **check_env).returncode == 0

    r = w.run(doc, "Post or update the plan comment", **PR_ENV)
    assert r.returncode == 0, r.stderr
    listing, post = w.gh_calls()
    assert listing["argv"][:2] == ["api", "repos/acme/platform/issues/7/comments"]
    assert post["argv"] == ["pr", "comment", "7", "--body-file", "comment.md"]
    body = post["body"]
    assert body.startswith("<!-- reconcile-plan -->\n### `reconcile plan`: changes\n")
    assert "Commit 0123456 · [workflow run](https://github.com/acme/platform/actions/runs/42)" \
        in body
    # the markdown plan
    assert "**Plan: 1 permission to add, 1 to remove, 0 unchanged, on 1 managed image.**" in body
    assert f"~ {golden} (golden-1)" in body and f"-   launch {HAND}  (not declared)" in body
    assert "<summary>Errors</summary>" not in body

    # the next push: the bot's comment with the marker is edited, not a second one posted
    comments = [{"id": 11, "user": {"type": "User"}, "body": "LGTM <!-- reconcile-plan -->"},
                {"id": 12, "user": {"type": "Bot"}, "body": "<!-- reconcile-plan -->\nold"}]
    r = w.run(doc, "Post or update the plan comment", **PR_ENV,
              FAKE_GH_COMMENTS=json.dumps(comments))
    assert r.returncode == 0, r.stderr
    _, patch = w.gh_calls()
    assert patch["argv"] == ["api", "--method", "PATCH", "repos/acme/platform/issues/comments/12",
                             "-F", "body=@comment.md"]
    assert patch["body"] == body


@needs_jq
def test_a_failing_validate_is_annotated_and_commented(tmp_path: Path) -> None:
    doc, w = load(PLAN_YML), Runner(tmp_path, "http://127.0.0.1:9")  # no AWS call is made
    write_manifest(w.dir, "ami-0123456789abcdef0", principal="nobody")
    r = w.run(doc, "Validate the manifest (offline)")
    assert r.returncode == 0 and w.output("exitcode") == "1"  # the comment comes first
    assert re.search(r"^::error file=amis\.yaml,line=10,col=\d+::.*nobody", r.stdout, re.M), r.stdout
    (problem,) = sarif_results((w.dir / SARIF).read_text())  # for code scanning
    assert problem["ruleId"] == "invalid-manifest" and "nobody" in problem["message"]["text"]
    assert problem["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == MANIFEST
    assert problem["locations"][0]["physicalLocation"]["region"]["startLine"] == 10
    # the Plan step is skipped (its `if:`); the check fails the job
    assert step(doc, "Plan")["if"] == "${{ steps.validate.outputs.exitcode == '0' }}"
    check = w.run(doc, "Check the result", VALIDATE_EXIT="1", PLAN_EXIT="")
    assert check.returncode == 1 and "::error::reconcile validate exited with 1" in check.stdout

    r = w.run(doc, "Post or update the plan comment", **PR_ENV)
    assert r.returncode == 0, r.stderr
    _, post = w.gh_calls()
    body = post["body"]
    assert "### `reconcile plan`: invalid manifest (reconcile validate exited 1)" in body
    assert "<details open><summary>Errors</summary>" in body
    assert "amis.yaml:10:" in body and "nobody" in body


def test_code_scanning_gets_the_log_the_steps_write() -> None:
    """validate writes the SARIF log, a plan replaces it (or, failing before it has one,
    removes it); a job with only the permission to upload it sends it to code scanning."""
    doc = load(PLAN_YML)
    job = doc["jobs"]["code-scanning"]
    assert job["needs"] == "plan" and job["if"] == "${{ !cancelled() }}"
    (upload,) = uses(doc, "github/codeql-action/upload-sarif")
    assert upload in job["steps"] and upload["with"]["sarif_file"] == SARIF
    assert upload["if"] == f"${{{{ hashFiles('{SARIF}') != '' }}}}"
    (download,) = [s for s in job["steps"] if s.get("uses", "").startswith(
        "actions/download-artifact@")]
    assert download["with"]["name"] == step(doc, "Upload the plan")["with"]["name"]
    for name in ("Validate the manifest (offline)", "Plan"):
        assert f"--sarif {SARIF}" in step(doc, name)["run"].replace("\\\n", " ")
    plan = step(doc, "Plan")["run"]
    assert plan.index(f"rm -f {SARIF}") < plan.index("reconcile plan")


@pytest.mark.parametrize(("plan", "ok"), [("0", True), ("2", True), ("1", False), ("", False)])
def test_check_the_result_fails_on_a_failed_plan(tmp_path: Path, plan: str, ok: bool) -> None:
    w = Runner(tmp_path, "http://127.0.0.1:9")
    r = w.run(load(PLAN_YML), "Check the result", VALIDATE_EXIT="0", PLAN_EXIT=plan)
    assert (r.returncode == 0) is ok, r.stdout


def fresh_output(w: Runner) -> Path:
    """Each workflow run starts from a clean checkout: no output of an earlier run."""
    out = w.dir / "reconcile-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return out


@needs_jq
def test_scheduled_apply_opens_updates_and_closes_one_drift_issue(
        server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    other = images.create("scratch-1", launch=[{"UserId": HAND}])
    doc, w = load(APPLY_YML), Runner(tmp_path, srv.url)
    write_manifest(w.dir, golden)
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")

    # 1. drift: corrected, and an issue is opened
    out = fresh_output(w)
    r = w.run(doc, "Apply", ACKNOWLEDGE="")
    assert r.returncode == 0, r.stdout + r.stderr
    assert images.launch(golden) == [{"UserId": PROD}]
    assert images.launch(other) == [{"UserId": HAND}], "an unmanaged image was touched"
    assert (out / "apply.exitcode").read_text().strip() == "0"
    assert (out / "operations").read_text().strip() == "2"  # one add, one remove
    assert "Apply complete: 1 added, 1 removed, 0 failed." in (out / "apply.txt").read_text()
    r = w.run(doc, "Open, update or close the drift issue")
    assert r.returncode == 0, r.stderr
    listing, label, create = w.gh_calls()
    assert listing["argv"][:6] == ["issue", "list", "--state", "open", "--label", "reconcile-drift"]
    assert label["argv"][:4] == ["label", "create", "reconcile-drift", "--color"]
    title = f"AMI sharing drift corrected on {today}"
    assert create["argv"] == ["issue", "create", "--title", title, "--label", "reconcile-drift",
                              "--body-file", "issue.md"]
    assert "corrected it (2 operations)" in create["body"]
    assert f"~ {golden} (golden-1)" in create["body"]  # the plan apply printed
    assert re.search(rf"- launch {HAND} +not declared", create["body"]), create["body"]
    assert "Apply complete: 1 added, 1 removed, 0 failed." in create["body"]
    assert "https://github.com/acme/platform/actions/runs/42" in create["body"]

    # 2. drift again while the issue is open: the same issue is updated
    images.client("us-east-1").modify_image_attribute(
        ImageId=golden, Attribute="launchPermission",
        LaunchPermission={"Add": [{"UserId": HAND}]})
    fresh_output(w)
    assert w.run(doc, "Apply", ACKNOWLEDGE="").returncode == 0
    r = w.run(doc, "Open, update or close the drift issue",
              FAKE_GH_ISSUES=json.dumps([{"number": 5}]))
    assert r.returncode == 0, r.stderr
    _, edit, comment = w.gh_calls()
    assert edit["argv"] == ["issue", "edit", "5", "--title", title, "--body-file", "issue.md"]
    assert comment["argv"][:3] == ["issue", "comment", "5"]

    # 3. nothing to do: the open issue is closed
    out = fresh_output(w)
    r = w.run(doc, "Apply", ACKNOWLEDGE="")
    assert r.returncode == 0 and "No changes" in r.stdout, r.stdout + r.stderr
    assert (out / "operations").read_text().strip() == "0"
    r = w.run(doc, "Open, update or close the drift issue",
              FAKE_GH_ISSUES=json.dumps([{"number": 5}]))
    assert r.returncode == 0, r.stderr
    _, close = w.gh_calls()
    assert close["argv"][:3] == ["issue", "close", "5"]
    assert f"No drift found on {today}" in close["argv"][4]


def test_an_adopted_manifest_is_tagged_by_the_scheduled_apply(
        server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    """A manifest that plans no change still has its ownership tags written (bookkeeping,
    not drift): without them a later deleted rule could not release its images."""
    srv, images = server
    golden = images.create("golden-1", launch=[{"UserId": PROD}])
    doc, w = load(APPLY_YML), Runner(tmp_path, srv.url)
    write_manifest(w.dir, golden)
    out = fresh_output(w)
    r = w.run(doc, "Apply", ACKNOWLEDGE="")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "operations").read_text().strip() == "0"
    tags = images.client("us-east-1").describe_images(ImageIds=[golden])["Images"][0]["Tags"]
    assert {"Key": "reconciler:manifest", "Value": "amis"} in tags


@needs_jq
def test_a_failed_scheduled_apply_is_reported(server: tuple[MotoServer, Images],
                                              tmp_path: Path) -> None:
    srv, _ = server
    doc, w = load(APPLY_YML), Runner(tmp_path, srv.url)
    write_manifest(w.dir, "ami-0123456789abcdef0")  # no such image: an error finding
    fresh_output(w)
    r = w.run(doc, "Apply", ACKNOWLEDGE="")
    assert r.returncode == 1 and "::error::reconcile apply exited with 1" in r.stdout
    r = w.run(doc, "Open, update or close the drift issue")
    assert r.returncode == 0, r.stderr
    *_, create = w.gh_calls()
    assert create["argv"][:4] == ["issue", "create", "--title",
                                  f"AMI sharing: scheduled apply failed on "
                                  f"{dt.datetime.now(dt.UTC):%Y-%m-%d}"]
    assert "failed (exit 1)" in create["body"] and "image-not-found" in create["body"]


def test_the_optional_verify_job_fails_while_a_consumer_cannot_launch(
        server: tuple[MotoServer, Images], consumers: ConsumerView, tmp_path: Path) -> None:
    srv, images = server
    consumers.roles.add(PROD)
    golden = images.create("golden-1")  # declared for prod, not shared
    doc, w = load(APPLY_YML), Runner(tmp_path, srv.url)
    assert doc["jobs"]["verify"]["if"] == \
        "${{ !cancelled() && vars.AMI_RECONCILER_CONSUMER_ROLE != '' }}"
    write_manifest(w.dir, golden)
    r = w.run(doc, "Verify", CONSUMER_ROLE=TEMPLATE)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{PROD} (prod) cannot launch {golden}" in r.stdout
    assert "::error::a declared consumer cannot launch an image declared for it" in r.stdout


@pytest.mark.parametrize("acknowledge", ["", "--allow-mass-removal"])
def test_only_a_ticked_manual_run_acknowledges_a_mass_removal(
        tmp_path: Path, acknowledge: str) -> None:
    doc = load(APPLY_YML)
    inputs = triggers(doc)["workflow_dispatch"]["inputs"]
    assert inputs["allow_mass_removal"]["type"] == "boolean"
    assert inputs["allow_mass_removal"]["default"] is False
    apply = step(doc, "Apply")
    assert apply["env"]["ACKNOWLEDGE"] == (
        "${{ github.event_name == 'workflow_dispatch' && inputs.allow_mass_removal "
        "&& '--allow-mass-removal' || '' }}")
    # a stub reconcile records its arguments
    w = Runner(tmp_path, "http://127.0.0.1:9")
    stub = tmp_path / "bin" / "reconcile"
    stub.write_text('#!/bin/sh\necho "$*" >> "$STUB_LOG"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    fresh_output(w)
    r = w.run(doc, "Apply", ACKNOWLEDGE=acknowledge, STUB_LOG=str(tmp_path / "calls"))
    assert r.returncode == 0, r.stdout + r.stderr
    (call,) = (tmp_path / "calls").read_text().splitlines()
    assert call.startswith("apply amis.yaml --auto-approve --log-file reconcile-out/apply.jsonl")
    assert call.endswith(" --allow-mass-removal") is bool(acknowledge), call


@needs_jq
def test_a_job_that_failed_before_validating_still_gets_its_comment(tmp_path: Path) -> None:
    """Checkout or install failed: no artifact (the download may fail, it is allowed to);
    the comment says so instead of keeping the previous commit's verdict."""
    doc, w = load(PLAN_YML), Runner(tmp_path, "http://127.0.0.1:9")
    for download in uses(doc, "actions/download-artifact"):  # the comment's, code scanning's
        assert download["continue-on-error"] is True
    r = w.run(doc, "Post or update the plan comment", **PR_ENV)
    assert r.returncode == 0, r.stderr
    _, post = w.gh_calls()
    assert "### `reconcile plan`: failed before validating the manifest" in post["body"]


FORGING_RECONCILE = """#!/bin/sh
# A stand-in that prints what a hostile value could make a careless tool print.
printf '%s\\n' '::error file=README.md,line=1::forged annotation' '  ::add-mask::x' \\
    'text ##[error]legacy forged' '::stop-commands::guess' '::error::after a guessed token'
echo "error: amis.yaml:3:1: a real problem" >&2
exit 1
"""


def runner_commands(output: str) -> list[str]:
    """The workflow commands the GitHub runner acts on in ``output``: a line that begins
    with ``::`` after its leading blanks, or holds ``##[`` anywhere (actions/runner,
    ActionCommand.TryParseV2 / TryParse), except while ``::stop-commands::TOKEN`` is in force
    (until a ``::TOKEN::`` line)."""
    acted, stopped = [], ""
    for line in output.splitlines():
        body = line.lstrip()
        v2 = re.match(r"::([^:\s]+)[^:]*::(.*)", body)
        v1 = re.search(r"##\[([^\] ]+)[^\]]*\](.*)", line)
        name = (v2 or v1).group(1) if (v2 or v1) else None
        if name is None:
            continue
        if stopped:
            if name == stopped:
                stopped = ""
            continue
        if name == "stop-commands":
            stopped = (v2 or v1).group(2)  # type: ignore[union-attr]
            continue
        acted.append(body if v2 else line)
    return acted


@pytest.mark.parametrize(("path", "name", "ours"), [
    (PLAN_YML, "Validate the manifest (offline)", ["::error file=amis.yaml,line=3,col=1::"
                                                    "a real problem"]),
    (PLAN_YML, "Plan", ["::error::reconcile plan failed with exit code 1 (AWS failure or "
                        "error findings)"]),
    (APPLY_YML, "Apply", ["::error::reconcile apply exited with 1 (error findings, failed "
                          "operations, an AWS failure or a guard refusal: see above)"]),
], ids=["validate", "plan", "apply"])
def test_the_runner_takes_no_command_from_reconciles_output(
        tmp_path: Path, path: Path, name: str, ours: list[str]) -> None:
    """The steps print reconcile's output between ::stop-commands::TOKEN and ::TOKEN::
    with a fresh random token: whatever it holds, only the workflow's own commands act."""
    doc, w = load(path), Runner(tmp_path, "http://127.0.0.1:9")
    fake = tmp_path / "bin" / "reconcile"
    fake.write_text(FORGING_RECONCILE)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (w.dir / "reconcile-out").mkdir()
    runs = [w.run(doc, name, ACKNOWLEDGE="") for _ in range(2)]
    for r in runs:
        assert "a real problem" in r.stdout, "the output is still shown"
        assert runner_commands(r.stdout) == ours, r.stdout
    tokens = [re.findall(r"^::stop-commands::([0-9a-f]{32})$", r.stdout, re.M) for r in runs]
    assert tokens[0] and tokens[1] and set(tokens[0]).isdisjoint(tokens[1]), tokens
