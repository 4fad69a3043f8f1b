"""The README's sandbox examples show real output: every fenced block that starts with
``$ reconcile ... --sandbox examples/...`` is run in-process from the repository root and
must print exactly what the README shows."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, run_main

BLOCK = re.compile(r"^```\n\$ (reconcile [^\n]*--sandbox examples/[^\n]*)\n(.*?)^```$",
                   re.MULTILINE | re.DOTALL)


def _blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture
def in_root() -> Iterator[Path]:
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield ROOT
    finally:
        os.chdir(before)


def test_the_readme_has_sandbox_examples() -> None:
    commands = [c for c, _ in _blocks()]
    assert any(c.startswith("reconcile plan examples/rotation.yaml") for c in commands), commands
    assert any(c.startswith("reconcile explain") for c in commands), commands


@pytest.mark.parametrize(("command", "shown"), _blocks(), ids=lambda v: v[:60])
def test_readme_output_is_real(command: str, shown: str, in_root: Path) -> None:
    r = run_main(*shlex.split(command)[1:], "--no-color")
    assert r.code in (0, 2, 3), r.err
    assert r.out == shown
