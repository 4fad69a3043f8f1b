"""The maintainers' release workflow, .github/workflows/release.yml.

It gets the security review the example workflows get (test_workflows.py): zizmor
``--persona pedantic`` and GitHub's workflow schema report nothing, actions are pinned to the
commit of a release, each job has only the permissions it uses, no ``${{ }}`` inside a
``run:`` script and no stored token. Its shell steps run here as GitHub runs them (``bash
--noprofile --norc -eo pipefail``): the tag/version check on a pyproject.toml of its own,
the check of the built files, and the release step with a stub ``gh``.
"""

from __future__ import annotations

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
from helpers import EXAMPLES, ROOT

import reconciler

RELEASE_YML = ROOT / ".github" / "workflows" / "release.yml"
BIN = Path(sys.executable).parent
CHECK = "Check the tag against the version"

# The release each action is pinned to: the commit its tag points to. The first four are
# the example workflows' pins; attest-build-provenance read from its repository (git
# rev-parse 'v4.1.0^{commit}') and gh-action-pypi-publish's v1.14.2 (the first with Twine 7,
# which accepts the Metadata-Version 2.5 that hatchling >= 1.32 writes) on 2026-12-04.
PINNED = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
    "actions/download-artifact": ("3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c", "v8.0.1"),
    "actions/attest-build-provenance": ("a2bbfa25375fe432b6a289bc6b6cd05ecd0c4c32", "v4.1.0"),
    "pypa/gh-action-pypi-publish": ("dc37677b2e1c63e2034f94d8a5b11f265b73ba33", "v1.14.2"),
}
USES = re.compile(r"(?:- )?uses: ([\w.-]+/[\w.-]+(?:/[\w.-]+)*)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)")


def load() -> dict[str, Any]:
    doc = yaml.safe_load(RELEASE_YML.read_text())
    assert isinstance(doc, dict)
    return doc


def steps(doc: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    jobs = [doc["jobs"][job]] if job else doc["jobs"].values()
    return [s for j in jobs for s in j["steps"]]


def uses(doc: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(doc) if str(s.get("uses", "")).split("@")[0] == action]


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [s for s in steps(doc) if s.get("name") == name]
    return found


def pins(path: Path, *, strict: bool = True) -> dict[str, tuple[str, str]]:
    """Each `uses:` line of a workflow as action -> (SHA, release); a line of another form
    fails (``strict``) or is passed over."""
    found = {}
    for line in (x.strip() for x in path.read_text().splitlines() if "uses:" in x):
        m = USES.fullmatch(line)
        assert m or not strict, line
        if not m:
            continue
        assert found.setdefault(m[1], (m[2], m[3])) == (m[2], m[3]), line  # one pin an action
    return found


def run_step(name: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = cwd.parent / "step.sh"
    script.write_text(step(load(), name)["run"])
    first = [env.pop("PREPEND_PATH")] if "PREPEND_PATH" in env else []
    path = os.pathsep.join([*first, str(BIN), os.environ["PATH"]])
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                          cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={"PATH": path, "HOME": str(cwd), "LC_ALL": "C.UTF-8", **env})


# --------------------------------------------------------------------------- security review


@pytest.mark.skipif(shutil.which("zizmor", path=str(BIN)) is None,
                    reason="zizmor is installed by the test extra")
def test_zizmor_pedantic_finds_nothing() -> None:
    proc = subprocess.run([str(BIN / "zizmor"), "--persona", "pedantic", "--offline",
                           "--no-progress", str(RELEASE_YML)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


def test_the_workflow_matches_the_github_workflow_schema() -> None:
    proc = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", str(RELEASE_YML)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actions_are_pinned_to_the_commit_of_a_release() -> None:
    assert pins(RELEASE_YML) == PINNED


def test_an_action_the_examples_use_too_is_pinned_to_the_same_release() -> None:
    ours = pins(RELEASE_YML)
    for example in (EXAMPLES / "github-actions").glob("*.yml"):
        # (an example's placeholder for this repository's own action is no pin)
        for action, pin in pins(example, strict=False).items():
            assert ours.get(action, pin) == pin, (example.name, action)


def test_checkout_never_persists_the_token() -> None:
    (checkout,) = uses(load(), "actions/checkout")
    assert checkout["with"]["persist-credentials"] is False


def test_permissions_are_per_job_and_least() -> None:
    doc = load()
    assert doc["permissions"] == {}  # nothing by default
    assert {name: job["permissions"] for name, job in doc["jobs"].items()} == {
        "build": {"contents": "read"},  # runs the tests and the build backend: no OIDC token
        "attest": {"id-token": "write", "attestations": "write"},
        "publish": {"id-token": "write"},
        "github-release": {"contents": "write"},
    }
    (attest,) = uses(doc, "actions/attest-build-provenance")
    assert attest in doc["jobs"]["attest"]["steps"]
    assert attest["with"] == {"subject-path": "dist/*"}
    # comments say why each permission is there (zizmor's undocumented-permissions)
    for line in RELEASE_YML.read_text().splitlines():
        if re.match(r"\s+(contents|id-token|attestations): (read|write)", line):
            assert re.search(r"# \w", line), line


def test_pypi_trusted_publishing_and_no_stored_token() -> None:
    doc = load()
    publish = doc["jobs"]["publish"]
    assert publish["environment"] == {
        "name": "pypi",
        "url": "https://pypi.org/project/ami-share-reconciler/"
               "${{ needs.build.outputs.version }}/"}
    (action,) = uses(doc, "pypa/gh-action-pypi-publish")
    assert action in publish["steps"]
    assert set(action.get("with", {})) <= {"packages-dir", "print-hash", "verbose"}
    text = RELEASE_YML.read_text()
    for token in ("secrets.", "password", "PYPI_TOKEN", "TWINE_", "__token__"):
        assert token not in text
    # the one token: the job's own GITHUB_TOKEN, for gh, where contents: write is granted
    assert text.count("${{ github.token }}") == 1
    assert step(doc, "Create the release")["env"]["GH_TOKEN"] == "${{ github.token }}"


def test_run_scripts_never_expand_expressions() -> None:
    # `${{ }}` inside `run:` is a script-injection risk: values go through `env:` instead.
    runs = [s for s in steps(load()) if "run" in s]
    assert len(runs) >= 5
    for s in runs:
        assert "${{" not in s["run"], s.get("name")


def test_triggers_jobs_and_concurrency() -> None:
    doc = load()
    on = doc.get("on", doc.get(True))  # PyYAML reads the bare key `on` as True
    assert on == {"push": {"tags": ["v*"]}, "workflow_dispatch": None}
    assert doc["concurrency"] == {"group": "release", "cancel-in-progress": False}
    jobs = doc["jobs"]
    assert "if" not in jobs["build"]  # a dry run ("Run workflow") tests and builds ...
    for name in ("attest", "publish", "github-release"):  # ... and nothing else
        assert jobs[name]["if"] == "${{ github.event_name == 'push' }}", name
    assert jobs["attest"]["needs"] == "build"
    assert jobs["publish"]["needs"] == ["build", "attest"]  # attested, or not published
    assert jobs["github-release"]["needs"] == ["build", "publish"]  # on PyPI first
    for job in jobs.values():
        assert job["runs-on"] == "ubuntu-latest" and job["timeout-minutes"] <= 30
        assert job["name"]


def test_the_build_is_tested_and_made_once_without_a_cache() -> None:
    doc = load()
    names = [s.get("name", s.get("uses", "").split("@")[0]) for s in steps(doc, "build")]
    assert names.index(CHECK) < names.index("Run the test suite") \
        < names.index("Build the sdist and the wheel") < names.index("Check the built files") \
        < names.index("Upload the distributions")
    assert step(doc, "Run the test suite")["run"].split("#")[0].strip() == "bash .ci/run"
    build = step(doc, "Build the sdist and the wheel")["run"]
    assert re.search(r'pip install [^\n]*"build==\d+\.\d+\.\d+"\n', build), build
    assert "python -m build\n" in build
    (setup,) = uses(doc, "actions/setup-python")
    assert setup["with"] == {"python-version": "3.13"}  # no cache in a release (zizmor)
    assert not uses(doc, "actions/cache")
    for upload in uses(doc, "actions/upload-artifact"):
        assert upload["with"]["if-no-files-found"] == "error"
    downloads = {s["with"]["name"] for s in uses(doc, "actions/download-artifact")}
    assert downloads == {s["with"]["name"] for s in uses(doc, "actions/upload-artifact")}
    assert all(d["with"]["path"] == d["with"]["name"] for d in uses(doc, "actions/download-artifact"))


# --------------------------------------------------------------------------- running the steps


DYNAMIC = """[project]
name = "ami-share-reconciler"
dynamic = ["version"]

[tool.hatch.version]
path = "pkg/__init__.py"
"""

CHANGELOG = """# Changelog

## [Unreleased]

- Not yet.

## [1.2.0] - 2026-12-05

### Added

- The release workflow.

## [1.1.0] - 2026-11-01

### Fixed

- Something older.

[1.2.0]: https://example.invalid/compare/v1.1.0...v1.2.0
"""


def project(tmp_path: Path, version: str = "1.2.0", *, static: bool = False,
            changelog: str = CHANGELOG) -> Path:
    folder = tmp_path / "checkout"
    (folder / "pkg").mkdir(parents=True)
    if static:
        (folder / "pyproject.toml").write_text(
            f'[project]\nname = "ami-share-reconciler"\nversion = "{version}"\n')
    else:
        (folder / "pyproject.toml").write_text(DYNAMIC)
        (folder / "pkg" / "__init__.py").write_text(
            f'"""A package."""\n\nimport os\n\n__version__ = "{version}"\n')
    (folder / "CHANGELOG.md").write_text(changelog)
    return folder


def check(folder: Path, ref: str, ref_type: str = "tag") -> subprocess.CompletedProcess[str]:
    output = folder.parent / "github_output"
    output.write_text("")
    return run_step(CHECK, folder, GITHUB_REF_NAME=ref, GITHUB_REF_TYPE=ref_type,
                    GITHUB_OUTPUT=str(output))


def outputs(folder: Path) -> dict[str, str]:
    text = (folder.parent / "github_output").read_text()
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_a_tag_that_is_the_version_passes_with_its_changelog_section(
        tmp_path: Path, static: bool) -> None:
    folder = project(tmp_path, static=static)
    r = check(folder, "v1.2.0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert outputs(folder) == {"version": "1.2.0"}
    assert "::error::" not in r.stdout
    # the release notes: the version's section alone, without its heading
    notes = (folder / "release-notes" / "notes.md").read_text()
    assert notes.strip() == "### Added\n\n- The release workflow."


@pytest.mark.parametrize(("static", "tag"), [(False, "v1.2.1"), (True, "v1.2.1"),
                                             (False, "1.2.0"), (False, "v1.2.0-rc1"),
                                             (False, "v1.2")])
def test_a_tag_that_is_not_the_version_fails(tmp_path: Path, static: bool, tag: str) -> None:
    folder = project(tmp_path, static=static)
    r = check(folder, tag)
    assert r.returncode == 1
    assert f"::error::the tag {tag} does not match the version 1.2.0" in r.stdout
    assert "tag v1.2.0, or bump the version" in r.stdout


def test_a_release_without_its_changelog_section_fails(tmp_path: Path) -> None:
    folder = project(tmp_path, "1.3.0")
    r = check(folder, "v1.3.0")
    assert r.returncode == 1
    assert '::error::CHANGELOG.md has no section "## [1.3.0] - YYYY-MM-DD"' in r.stdout
    # the last section stops at the link definitions
    folder = project(tmp_path / "other", "1.1.0")
    assert check(folder, "v1.1.0").returncode == 0
    assert (folder / "release-notes" / "notes.md").read_text().strip() == \
        "### Fixed\n\n- Something older."


def test_a_dry_run_from_a_branch_checks_no_tag(tmp_path: Path) -> None:
    folder = project(tmp_path, "1.3.0")  # no tag, no section yet: still builds
    r = check(folder, "main", ref_type="branch")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Dry run from main: version 1.3.0" in r.stdout
    assert outputs(folder) == {"version": "1.3.0"}


def test_a_version_the_script_cannot_find_fails(tmp_path: Path) -> None:
    folder = project(tmp_path)
    (folder / "pkg" / "__init__.py").write_text("VERSION_NUMBER = 1\n")
    r = check(folder, "v1.2.0")
    assert r.returncode != 0 and "version=" not in (folder.parent / "github_output").read_text()


def test_the_check_reads_this_repositorys_version(tmp_path: Path) -> None:
    """On this repository's own files, the version the check reads is the package's."""
    folder = tmp_path / "checkout"
    (folder / "reconciler").mkdir(parents=True)
    for name in ("pyproject.toml", "CHANGELOG.md", "reconciler/__init__.py"):
        shutil.copyfile(ROOT / name, folder / name)
    r = check(folder, "v0.0.0-not-this")
    assert r.returncode == 1
    assert outputs(folder) == {"version": reconciler.__version__}
    r = check(folder, "main", ref_type="branch")
    assert r.returncode == 0 and outputs(folder) == {"version": reconciler.__version__}


@pytest.mark.parametrize(("files", "ok"), [
    (["ami_share_reconciler-1.2.0-py3-none-any.whl", "ami_share_reconciler-1.2.0.tar.gz"], True),
    (["ami_share_reconciler-1.2.0-py3-none-any.whl"], False),
    (["ami_share_reconciler-1.2.1-py3-none-any.whl", "ami_share_reconciler-1.2.1.tar.gz"], False),
    (["ami_share_reconciler-1.2.0-py3-none-any.whl", "ami_share_reconciler-1.2.0.tar.gz",
      "ami_share_reconciler-1.1.0.tar.gz"], False),
], ids=["both", "no-sdist", "other-version", "extra"])
def test_the_built_files_are_the_versions_two(tmp_path: Path, files: list[str], ok: bool) -> None:
    folder = tmp_path / "checkout"
    (folder / "dist").mkdir(parents=True)
    for name in files:
        (folder / "dist" / name).write_bytes(b"x")
    r = run_step("Check the built files", folder, VERSION="1.2.0")
    assert (r.returncode == 0) is ok, r.stdout + r.stderr
    if not ok:
        assert "::error::dist/ holds" in r.stdout


def test_the_github_release_gets_the_notes_and_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "checkout"
    for name in ("dist/a-1.2.0.tar.gz", "dist/a-1.2.0-py3-none-any.whl",
                 "release-notes/notes.md"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$GH_LOG"\n')
    gh.chmod(gh.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "gh.log"
    r = run_step("Create the release", folder, PREPEND_PATH=str(bin_dir), GH_LOG=str(log),
                 GITHUB_REF_NAME="v1.2.0", GH_TOKEN="fake", GH_REPO="acme/reconciler")
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().splitlines() == [
        "release", "create", "v1.2.0", "--verify-tag", "--title", "ami-share-reconciler 1.2.0",
        "--notes-file", "release-notes/notes.md", "dist/a-1.2.0-py3-none-any.whl",
        "dist/a-1.2.0.tar.gz"]


def test_the_readme_says_how_to_release() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Releasing\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    doc = load()
    for fact in ("`release.yml`", f"`{doc['jobs']['publish']['environment']['name']}`",
                 "`ami-share-reconciler`", "gh attestation verify", "CHANGELOG.md",
                 "reconciler/__init__.py", "git tag"):
        assert fact in section, fact
