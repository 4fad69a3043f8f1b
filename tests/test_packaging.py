"""The installed package must carry its schemas; the CLI must be installed as documented."""

from __future__ import annotations

import email
import json
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT, reconcile_executable, run_main

import reconciler
from reconciler.core.schema import load_schema

SCHEMAS = ("manifest", "plan", "sandbox")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_is_named_and_versioned_once(wheel: Path) -> None:
    """``reconciler`` on PyPI is an unrelated project: the distribution has its own name, and
    the version comes from ``reconciler/__init__.py`` alone."""
    assert wheel.name == f"ami_share_reconciler-{reconciler.__version__}-py3-none-any.whl"
    (meta,) = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA")]
    headers = email.message_from_bytes(zipfile.ZipFile(wheel).read(meta))
    assert headers["Name"] == "ami-share-reconciler"
    assert headers["Version"] == reconciler.__version__
    assert headers["Requires-Python"] == ">=3.11"
    claimed = sorted(c for c in headers.get_all("Classifier")
                     if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert claimed == [f"Programming Language :: Python :: 3.{m}" for m in (11, 12, 13)]
    assert "reconciler/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_the_licence_ships_with_the_wheel_and_the_sdist(wheel: Path) -> None:
    """pyproject says Apache-2.0: the full text is in LICENSE, and both distributions carry
    it (the wheel in its .dist-info/licenses, as PEP 639 says)."""
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    names = zipfile.ZipFile(wheel).namelist()
    (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert zipfile.ZipFile(wheel).read(licence).decode() == text
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    headers = email.message_from_bytes(zipfile.ZipFile(wheel).read(meta))
    assert headers["License-Expression"] == "Apache-2.0"
    assert headers.get_all("License-File") == ["LICENSE"]
    sdist = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["sdist"]["include"]
    assert {"LICENSE", "CHANGELOG.md", "README.md"} <= set(sdist)


def test_the_sdist_holds_what_its_tests_read() -> None:
    """The suite ships in the sdist; the files it checks beside the package ship with it
    (the action, the workflows, the CI script, the pre-commit hook)."""
    sdist = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"]["sdist"]["include"])
    read = {"action.yml", "action", ".github", ".ci", ".pre-commit-hooks.yaml"}
    assert all((ROOT / name).exists() for name in read)
    assert read <= sdist, sorted(read - sdist)


def test_the_changelog_keeps_a_changelog() -> None:
    """Keep a Changelog 1.1.0: an Unreleased section first, then releases, each with only
    the standard kinds of change."""
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "keepachangelog.com/en/1.1.0" in text
    releases = re.findall(r"^## (.+)$", text, re.M)
    assert releases[0] == "[Unreleased]"
    for release in releases[1:]:
        assert re.fullmatch(r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}", release), release
    kinds = set(re.findall(r"^### (.+)$", text, re.M))
    assert kinds and kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_a_fresh_virtualenv_installs_the_wheel_by_name(wheel: Path, tmp_path: Path) -> None:
    """Install the built wheel by its distribution name into a new virtualenv (dependencies
    from this environment, so no download) and run the sandbox example with its script."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = sysconfig.get_path("purelib")
    Path(site, "test-deps.pth").write_text(deps + "\n")  # boto3, moto, ... without a download
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                           "--no-deps", "--ignore-installed", "--no-index", "--find-links", str(wheel.parent),
                           "ami-share-reconciler"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    script = venv / "bin" / "reconcile"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert version.stdout == f"reconcile, version {reconciler.__version__}\n", version.stderr
    plan = subprocess.run([str(script), "plan", "examples/manifest.yaml", "--sandbox",
                           "examples/sandbox.yaml", "--detailed-exitcode"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert plan.returncode == 2, plan.stderr
    assert "Plan: " in plan.stdout
    assert Path(venv / "lib").exists() and str(venv) in subprocess.run(
        [str(py), "-c", "import reconciler; print(reconciler.__file__)"],
        capture_output=True, text=True, cwd=tmp_path).stdout


def test_wheel_ships_the_schemas(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SCHEMAS:
        member = f"reconciler/schemas/{name}.schema.json"
        assert member in names
        shipped = json.loads(zipfile.ZipFile(wheel).read(member))
        assert shipped == json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


def test_schemas_load_from_the_installed_package() -> None:
    for name in SCHEMAS:
        assert load_schema(name)["$schema"].endswith("2020-12/schema")
    if "site-packages" in reconciler.__file__:  # the README's test command installs it
        assert (Path(reconciler.__file__).parent / "schemas" / "plan.schema.json").is_file()


def test_console_script_and_module_agree() -> None:
    script = subprocess.run([*reconcile_executable(), "--version"], capture_output=True, text=True)
    module = subprocess.run([sys.executable, "-m", "reconciler", "--version"],
                            capture_output=True, text=True, cwd="/")
    assert script.returncode == 0 and module.returncode == 0
    assert script.stdout.split()[-1] == module.stdout.split()[-1] == reconciler.__version__


def test_bare_reconcile_prints_help_and_exits_0() -> None:
    r = run_main()
    assert r.code == 0 and r.err == ""
    assert r.out.startswith("Usage: reconcile [OPTIONS] COMMAND [ARGS]...")
    assert "validate" in r.out and "explain" in r.out


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_as_the_readme_enables_it(shell: str) -> None:
    source = run_main(env={"_RECONCILE_COMPLETE": f"{shell}_source"})
    assert source.code == 0 and "_reconcile_completion" in source.out
    assert f"_RECONCILE_COMPLETE={shell}_source reconcile" in (ROOT / "README.md").read_text()
    words = run_main(env={"_RECONCILE_COMPLETE": "bash_complete",
                          "COMP_WORDS": "reconcile ex", "COMP_CWORD": "1"})
    assert words.out.split() == ["plain,explain", "plain,export"]
