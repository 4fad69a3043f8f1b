"""The installed package must carry its schemas; the CLI must be installed as documented."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import ROOT, reconcile_executable

import reconciler
from reconciler.schema import load_schema

SCHEMAS = ("manifest", "plan", "sandbox")


def test_wheel_ships_the_schemas(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("reconciler-*.whl")
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
