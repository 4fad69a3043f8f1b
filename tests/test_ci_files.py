"""The pre-commit hook: its definition, its `files` pattern, and its entry run as pre-commit
runs it. (The example GitHub Actions workflows are tested in test_workflows.py, the release
workflow in test_release_workflow.py.)"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLES, ROOT, cli_env, reconcile_executable

HOOKS = ROOT / ".pre-commit-hooks.yaml"


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


def test_the_readme_local_hook_is_the_same_hook_pinned_to_this_release() -> None:
    import reconciler

    readme = (ROOT / "README.md").read_text()
    block = readme.split("# .pre-commit-config.yaml\n", 1)[1].split("```", 1)[0]
    (local,) = yaml.safe_load(block)["repos"]
    assert local["repo"] == "local"
    (h,) = local["hooks"]
    assert h["additional_dependencies"] == [f"ami-share-reconciler=={reconciler.__version__}"]
    assert {k: h[k] for k in ("id", "entry", "language", "files")} == {
        k: hook()[k] for k in ("id", "entry", "language", "files")}
