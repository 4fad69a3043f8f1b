"""SARIF 2.1.0 logs for code scanning (SPEC §5): ``validate`` and ``plan`` with ``--format
sarif`` (and ``--sarif FILE``). Every log is checked against the OASIS schema
(``tests/data/sarif-schema-2.1.0.json``; its source and licence: ``tests/data/README.md``)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from builders import US, ami, full_plan, listing, manifest, plan_for, state
from helpers import (
    ACCOUNT,
    HAND,
    PROD,
    SARIF_SCHEMA,
    Images,
    MotoServer,
    Runner,
    manifest_yaml,
    sarif_results,
)

from reconciler import __version__
from reconciler.core.errors import Problem
from reconciler.core.findings import Code, Finding, Severity
from reconciler.core.sarif import (
    INVALID_MANIFEST,
    artifact_uri,
    finding_result,
    findings_log,
    plan_log,
    problems_log,
    rules,
)

SCHEMA = json.loads(SARIF_SCHEMA.read_text())


def check(text: str) -> dict[str, Any]:
    """The log, parsed, after the OASIS schema accepted it."""
    sarif_results(text)
    doc: dict[str, Any] = json.loads(text)
    return doc


def results(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (run,) = doc["runs"]
    return list(run["results"])


def lines(result: dict[str, Any]) -> list[int | None]:
    return [loc["physicalLocation"].get("region", {}).get("startLine")
            for loc in result["locations"]]


def by_rule(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results(doc):
        out.setdefault(r["ruleId"], []).append(r)
    return out


def test_the_schema_is_the_oasis_standard() -> None:
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    assert SCHEMA["id"] == ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/"
                            "schemas/sarif-schema-2.1.0.json")
    with pytest.raises(AssertionError):  # it does refuse what is not SARIF
        check(json.dumps({"$schema": "x/sarif-schema-2.1.0.json", "version": "2.1.0",
                          "runs": [{"tool": {"driver": {}}}]}))


# --------------------------------------------------------------------------- pure


def test_every_code_is_a_rule_with_its_severity_and_meaning() -> None:
    catalog = rules()
    assert [r["id"] for r in catalog] == [INVALID_MANIFEST, *(c.value for c in Code)]
    level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
    for rule, code in zip(catalog[1:], Code, strict=True):
        assert rule["defaultConfiguration"]["level"] == level[code.severity]
        assert code.meaning[1:] in rule["shortDescription"]["text"]
        assert rule["help"]["text"].startswith(rule["shortDescription"]["text"])
    doc = check(problems_log([], __version__))
    assert doc["runs"][0]["tool"]["driver"]["rules"] == catalog
    assert doc["runs"][0]["tool"]["driver"]["version"] == __version__
    assert results(doc) == []


def test_plan_findings_point_at_the_rules_they_are_about() -> None:
    m, p = full_plan()
    doc = check(plan_log(p, m, __version__))
    line = {r.name: r.line for r in m.rules}
    found = by_rule(doc)
    (no_match,) = found["no-match"]  # the rule that matches nothing
    assert no_match["level"] == "warning" and lines(no_match) == [line["ghost"]]
    assert no_match["message"]["text"].startswith("us-east-1 ghost: rule 'ghost' matches no")
    (blocked,) = found["public-access-blocked"]  # about an image: the rule that matches it
    assert blocked["level"] == "error" and lines(blocked) == [line["pub"]]
    assert blocked["properties"] == {"region": US, "resource": ami(3)}
    assert {loc["physicalLocation"]["artifactLocation"]["uri"]
            for r in results(doc) for loc in r["locations"]} == {"m.yaml"}
    for r in results(doc):
        assert rules()[r["ruleIndex"]]["id"] == r["ruleId"]
    assert len({r["partialFingerprints"]["reconcileFinding/v1"] for r in results(doc)}) == 2


def test_a_missing_id_points_at_the_rule_that_lists_it() -> None:
    m = manifest(f"""\
- name: one
  select: {{ids: [{ami(7)}]}}
  regions: [us-east-1]
  launch: [prod]
- name: two
  select: {{ids: [{ami(7)}]}}
  regions: [us-east-1]
  launch: [staging]
""")
    p = plan_for(m, listing(), state())
    found = by_rule(check(plan_log(p, m, __version__)))["image-not-found"]
    assert [(r["level"], lines(r)) for r in found] == [("error", [r.line]) for r in m.rules]
    assert found[0]["partialFingerprints"] != found[1]["partialFingerprints"]


def test_a_named_principal_and_the_whole_plan() -> None:
    m = manifest("- name: g\n  select: {name: 'g-*'}\n  launch: [prod]")
    unused = {f.resource: finding_result(f, m) for f in m.hygiene()}
    assert set(unused) == {"staging", "dev", "org", "ou"}
    assert lines(unused["staging"]) == [dict(m.principal_lines)["staging"]]
    whole = finding_result(Finding.of(Code.MAX_REMOVALS, "", "", "the plan removes 30"), m)
    assert whole["message"]["text"] == "the plan removes 30"  # no stray " :"
    assert whole["locations"] == [{"physicalLocation": {"artifactLocation": {"uri": "m.yaml"}}}]


def test_strict_findings_are_errors() -> None:
    m = manifest("- name: g\n  select: {name: 'g-*'}\n  launch: [prod]")
    f = Finding(Severity.ERROR, Code.UNUSED_PRINCIPAL, "", "dev", "unused")
    (r,) = results(check(findings_log([(m, f)], __version__)))
    assert r["level"] == "error" and r["ruleId"] == "unused-principal"


@pytest.mark.parametrize(("path", "uri"), [
    ("amis.yaml", "amis.yaml"),
    ("./infra/amis.yaml", "infra/amis.yaml"),
    ("my amis#1.yaml", "my%20amis%231.yaml"),
    ("/work/repo/amis.yaml", "file:///work/repo/amis.yaml"),
])
def test_file_uris(path: str, uri: str) -> None:
    assert artifact_uri(path) == uri


HOSTILE = "\x1b[31m\u202e ##[error]x\n::warning::y [click](https://evil.example) @admin"


def test_values_nobody_can_forge_stay_exact_and_inert() -> None:
    """SPEC §7d: JSON keeps the values exact (escaped by JSON), every control, format or
    separator character is escaped, ``##[`` is broken; and no value becomes a SARIF
    embedded link (§3.11.6: a literal bracket is escaped with a backslash)."""
    m = manifest("- name: g\n  select: {name: 'g-*'}\n  launch: [prod]")
    finding = Finding.of(Code.NO_MATCH, US, "g", f"rule {HOSTILE}")
    problem = Problem("m.yaml", 3, 5, f"value {HOSTILE}")
    text = findings_log([(m, finding)], __version__, problems=[problem])
    assert text.isascii() or not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
                                     for c in text.replace("\n", ""))
    assert "##[" not in text and "\x1b" not in text and "\u202e" not in text
    assert not any(line.lstrip().startswith("::") for line in text.splitlines())
    doc = check(text)
    invalid, no_match = results(doc)
    assert invalid["message"]["text"] == "value " + HOSTILE.replace("](", "\\](")
    assert no_match["message"]["text"] == f"us-east-1 g: rule {HOSTILE}".replace("](", "\\](")
    assert not re.search(r"(?<!\\)\]\(", no_match["message"]["text"])


# --------------------------------------------------------------------------- the command line


def test_validate_reports_each_problem_at_its_line_and_column(run_cli: Runner,
                                                              tmp_path: Path) -> None:
    bad = tmp_path / "amis.yaml"
    bad.write_text(manifest_yaml("- name: g\n  select: {name: 'a-*'}\n  launch: [nobody]\n"
                                 "- name: g\n  select: {name: 'x-*'}\n  launch: [someone]"))
    r = run_cli("validate", str(bad), "--format", "sarif")
    assert r.code == 1, r.err
    printed = re.findall(r"^error: .*amis\.yaml:(\d+):(\d+): ", r.err, re.M)
    found = results(check(r.out))
    assert len(found) == len(printed) >= 3  # every error, on stderr too
    for result, (line, col) in zip(found, printed, strict=True):
        assert result["ruleId"] == INVALID_MANIFEST and result["level"] == "error"
        (loc,) = result["locations"]
        assert loc["physicalLocation"]["region"] == {"startLine": int(line),
                                                     "startColumn": int(col)}
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == artifact_uri(str(bad))
    missing = run_cli("validate", str(tmp_path / "nope.yaml"), "--format", "sarif")
    assert missing.code == 1
    (gone,) = results(check(missing.out))
    assert gone["ruleId"] == INVALID_MANIFEST and gone["message"]["text"] == \
        "manifest file not found"
    assert gone["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "/nope.yaml")


def test_validate_warnings_and_strict(run_cli: Runner, tmp_path: Path) -> None:
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_yaml("- name: g\n  select: {name: 'g-*'}\n  launch: [prod]"))
    principal_line = {name: n for n, line in enumerate(path.read_text().splitlines(), 1)
                      for name in ("staging",) if line.strip().startswith(f"{name}:")}
    sarif = tmp_path / "out.sarif"
    r = run_cli("validate", str(path), "--sarif", str(sarif))
    assert r.code == 0 and "valid (1 rule, 5 named principals" in r.out
    warnings = by_rule(check(sarif.read_text()))["unused-principal"]
    assert {w["level"] for w in warnings} == {"warning"} and len(warnings) == 4
    (staging,) = [w for w in warnings if w["properties"]["resource"] == "staging"]
    assert lines(staging) == [principal_line["staging"]]
    r = run_cli("validate", str(path), "--format", "sarif", "--strict")
    assert r.code == 1
    assert {w["level"] for w in results(check(r.out))} == {"error"}
    assert "valid (1 rule" in r.err  # standard output holds the log alone


def test_plan_sarif_keeps_the_exit_codes(server: tuple[MotoServer, Images], run_cli: Runner,
                                         tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": HAND}])
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_yaml(f"""\
- name: golden
  select: {{ids: [{golden}]}}
  launch: [prod]
- name: ghost
  select: {{name: "ghost-*"}}
  launch: [prod]
""", principals={"prod": PROD}))
    ghost_line = path.read_text().splitlines().index("  - name: ghost") + 1
    r = run_cli("plan", str(path), "--format", "sarif", "--detailed-exitcode")
    assert r.code == 2, r.err  # changes: as with every format
    (no_match,) = results(check(r.out))
    assert no_match["ruleId"] == "no-match" and lines(no_match) == [ghost_line]
    # markdown for the comment and the log for code scanning, from one plan
    sarif = tmp_path / "plan.sarif"
    r = run_cli("plan", str(path), "--format", "markdown", "--sarif", str(sarif))
    assert r.code == 0 and "**Plan: 1 permission to add, 1 to remove" in r.out, r.out
    assert results(check(sarif.read_text())) == [no_match]
    # an error finding: exit 1, the log still written
    path.write_text(path.read_text().replace(golden, "ami-0123456789abcdef0"))
    r = run_cli("plan", str(path), "--format", "sarif", "--sarif", str(sarif))
    assert r.code == 1 and "error: [image-not-found]" in r.err
    assert r.out == sarif.read_text()
    assert {x["ruleId"]: lines(x) for x in results(check(r.out))} == {
        "image-not-found": [ghost_line - 3], "no-match": [ghost_line]}


def test_plan_of_an_invalid_manifest_logs_its_problems(run_cli: Runner, tmp_path: Path,
                                                       no_aws: Any) -> None:
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_yaml("- name: g\n  select: {name: 'g-*'}\n  launch: [nobody]"))
    r = run_cli("plan", str(path), "--format", "sarif", endpoint=no_aws.url)
    assert r.code == 1 and "unknown principal name 'nobody'" in r.err
    (problem,) = results(check(r.out))
    assert problem["ruleId"] == INVALID_MANIFEST and "'nobody'" in problem["message"]["text"]
    assert no_aws.count == 0
    assert ACCOUNT not in r.out
