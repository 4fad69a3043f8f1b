"""The functional core does no I/O: importing it loads neither the AWS SDK nor the CLI
framework (checked in a fresh interpreter, so nothing the test process loaded counts)."""

from __future__ import annotations

import json
import subprocess
import sys

# manifest -> desired -> (current) -> diff -> plan -> render, and the export's pure part
CORE = ["model", "pacing", "errors", "yamlload", "schema", "manifest", "desired", "differ", "kms",
        "plan", "planner", "render", "exporter", "files", "findings"]
SHELL_ONLY = ("boto3", "botocore", "click", "moto")


def test_the_core_imports_no_aws_sdk_and_no_cli_framework() -> None:
    code = ("import json, sys\n"
            + "".join(f"import reconciler.{m}\n" for m in CORE)
            + f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SHELL_ONLY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == []


def test_the_shell_does_load_them() -> None:
    """The check above can fail: the shell modules do import boto3."""
    code = ("import json, sys\nimport reconciler.gather\n"
            "print(json.dumps('boto3' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) is True
