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
    """Every finding code is a member of one enum (a finding cannot carry another: its type
    says so); the README's table and the plan schema list exactly those codes, with their
    severity and meaning."""
    import re

    from reconciler.core.findings import Code

    assert len(Code) >= 30
    readme = (ROOT / "README.md").read_text()
    table = {code: (sev, meaning) for code, sev, meaning in re.findall(
        r"^\| `([a-z0-9-]+)` \| (error|warning|info) \| (.*) \|$", readme, re.M)}
    assert table == {c.value: (c.severity.value, c.meaning) for c in Code}
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    assert schema["properties"]["findings"]["items"]["properties"]["code"]["enum"] == sorted(
        c.value for c in Code)


def test_findings_carry_codes_of_the_enum() -> None:
    """A finding read back from a saved plan gets its code as the enum member; an unknown
    code is refused."""


    from reconciler.core.findings import Code, Finding

    f = Finding.from_dict({"severity": "error", "code": "share-quota", "region": "r",
                           "resource": "x", "message": "m"})
    assert f.code is Code.SHARE_QUOTA and f == Finding.of(Code.SHARE_QUOTA, "r", "x", "m")
    with pytest.raises(ValueError):
        Code.parse("no-such-code")
