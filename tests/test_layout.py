"""The functional core does no I/O: importing it loads neither the AWS SDK nor the CLI
framework (checked in a fresh interpreter, so nothing the test process loaded counts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Every module of reconciler/core/: manifest -> desired -> (current) -> diff -> plan ->
# render, the export's and explain's pure parts, the pacing model.
_CORE_DIR = Path(__file__).resolve().parent.parent / "reconciler" / "core"
CORE = sorted(".".join(p.relative_to(_CORE_DIR).with_suffix("").parts)
              for p in _CORE_DIR.rglob("*.py") if p.stem != "__init__")
SHELL_ONLY = ("boto3", "botocore", "click", "moto")


def test_the_core_imports_no_aws_sdk_and_no_cli_framework() -> None:
    assert len(CORE) >= 15 and "planning.pipeline" in CORE
    code = ("import json, sys\n"
            + "".join(f"import reconciler.core.{m}\n" for m in CORE)
            + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SHELL_ONLY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == []


def test_the_shell_does_load_them() -> None:
    """The check above can fail: the shell modules do import boto3."""
    code = ("import json, sys\nimport reconciler.shell.gather\n"
            "print(json.dumps('boto3' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) is True


def test_the_readme_names_every_module() -> None:
    """The README's architecture table has a row for each module of the package."""
    import re
    from pathlib import Path

    import reconciler

    package = Path(reconciler.__file__).parent
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Architecture", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"`((?:core|shell|cli)/[a-z_/]+|cli)`", table))
    modules = {str(p.relative_to(package).with_suffix("")) for folder in ("core", "shell", "cli")
               for p in (package / folder).rglob("*.py") if p.stem != "__init__"} | {"cli"}
    assert modules <= named, sorted(modules - named)


MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    """A module that grows past 500 lines has two jobs: split it where they meet."""
    package = Path(__file__).resolve().parent.parent / "reconciler"
    sizes = {str(p.relative_to(package)): len(p.read_text().splitlines())
             for p in package.rglob("*.py")}
    assert len(sizes) > 40
    assert {p: n for p, n in sizes.items() if n > MODULE_LINES} == {}
