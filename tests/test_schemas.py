"""The published JSON Schemas: editor help on every manifest property, and the examples."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from helpers import EXAMPLES, ROOT

from reconciler.core.schema import load_schema


def _properties(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            out.append((f"{path}.{name}", sub))
        for key, sub in node.items():
            out += _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            out += _properties(sub, f"{path}[{i}]")
    return out


def test_every_manifest_property_has_hover_help() -> None:
    props = _properties(load_schema("manifest"))
    assert len(props) > 15
    missing = [path for path, sub in props if "$ref" not in sub
               and not ({"description", "examples"} <= sub.keys())]
    assert missing == []


@pytest.mark.parametrize("name", ["manifest", "plan", "sandbox"])
def test_schemas_are_valid_2020_12(name: str) -> None:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_examples_are_valid_values() -> None:
    schema = load_schema("manifest")
    validator = jsonschema.Draft202012Validator(schema)
    for example in schema["properties"]["images"]["examples"]:
        doc = {"version": 1, "principals": {"prod": "111122223333", "staging": "444455556666"},
               "images": example}
        assert not list(validator.iter_errors(doc))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_files_declare_their_schema(path: Any) -> None:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=../schemas/")
    assert yaml.safe_load(path.read_text()) is not None


def test_finding_codes_have_one_registry() -> None:
    """Every finding code the package can emit is registered; the README's table and the
    plan schema list exactly the registered codes."""
    import re

    from reconciler.core.findings import FINDINGS

    used: set[str] = set()
    for path in (ROOT / "reconciler").rglob("*.py"):
        text = path.read_text()
        used.update(re.findall(r'(?:_?finding\(|Finding\()\s*Severity\.[A-Z]+,\s*"([a-z0-9-]+)"',
                               text))
        for a, b in re.findall(r'code = "([a-z0-9-]+)"(?: if [^\n]* else "([a-z0-9-]+)")?', text):
            used.update(x for x in (a, b) if x)
        used.update(re.findall(r'return \(?"([a-z0-9]+(?:-[a-z0-9]+)+)",', text))
    assert len(used) >= 30, "the scan must find the codes"
    assert used == set(FINDINGS)
    readme = (ROOT / "README.md").read_text()
    table = dict(re.findall(r"^\| `([a-z0-9-]+)` \| (error|warning|info) \|", readme, re.M))
    assert table == {code: sev.value for code, (sev, _) in FINDINGS.items()}
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    assert schema["properties"]["findings"]["items"]["properties"]["code"]["enum"] == sorted(
        FINDINGS)
