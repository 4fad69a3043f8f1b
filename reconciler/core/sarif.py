"""SARIF 2.1.0 logs (OASIS) for code scanning: a manifest's problems (``validate``) or a
plan's findings (``plan``), one result each (SPEC §5).

Each result's ``ruleId`` is its finding code (a problem of the manifest: ``invalid-manifest``),
its ``level`` the severity it has in this run (``--strict`` makes warnings errors; ``info``
is SARIF's ``note``), and it points into the manifest: a problem at its line and column, a
finding about a rule, a named principal or an image at the lines of the rules (or the
principal) it concerns, any other finding at the manifest file. The rules carry what each
code means, as the README's table says it.

Values from AWS and the manifest stay exact, as in the JSON plan, and the document passes
through :func:`~.neutral.json_text` (SPEC §7d). Plain-text SARIF messages may hold
"embedded links" (``[text](target)``, SARIF §3.11.6), so a value cannot become one: a
``](`` in a message is written ``\\](``, the escape that section gives for a literal
bracket. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import Problem
from .findings import Code, Finding, Severity
from .manifest import Manifest
from .neutral import json_text
from .plan import Planned

SCHEMA_URI = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
              "sarif-schema-2.1.0.json")
INVALID_MANIFEST = "invalid-manifest"
_INVALID_MEANING = ("the manifest is not valid YAML, does not match its schema, or says "
                    "something impossible (an unknown principal name, a duplicate rule, a "
                    "public share without allow_public, ...): the message names the value")
_INVALID_FOLLOWS = ("validate, plan and apply exit 1 and make no AWS call until it is fixed.")
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_WHAT_FOLLOWS = {
    Severity.ERROR: "An error fails the plan (exit 1); the image or key it is about gets no "
                    "write at all in that run.",
    Severity.WARNING: "A warning does not fail the plan, unless --strict makes it an error.",
    Severity.INFO: "Information: nothing is wrong, the plan says what it does and why.",
}
# (region, image ID) -> the names of the rules that match the image
ImageRules = Mapping[tuple[str, str], Sequence[str]]


def _rule(rule_id: str, severity: Severity, meaning: str,
          follows: str | None = None) -> dict[str, Any]:
    sentence = meaning[0].upper() + meaning[1:] + "."
    help_text = f"{sentence} {follows or _WHAT_FOLLOWS[severity]}"
    where = ("the manifest checks under \"The manifest in 30 lines\"" if follows
             else "the \"Finding codes\" table")
    return {
        "id": rule_id,
        "name": "".join(part.capitalize() for part in rule_id.split("-")),
        "shortDescription": {"text": sentence},
        "help": {"text": help_text, "markdown": f"{help_text} See {where} in the README."},
        "defaultConfiguration": {"level": _LEVEL[severity]},
        "properties": {"tags": ["ami-sharing", "aws"]},
    }


def rules() -> list[dict[str, Any]]:
    """Every rule a result can name: ``invalid-manifest``, then each finding code."""
    return [_rule(INVALID_MANIFEST, Severity.ERROR, _INVALID_MEANING, _INVALID_FOLLOWS),
            *(_rule(code.value, code.severity, code.meaning) for code in Code)]


_RULE_INDEX = {rule_id: i for i, rule_id in enumerate(
    [INVALID_MANIFEST, *(code.value for code in Code)])}


def artifact_uri(path: str) -> str:
    """A file as a SARIF URI: relative paths stay relative (code scanning reads them from the
    repository's root), absolute ones become ``file://`` URIs."""
    posix = path.replace("\\", "/")
    if posix.startswith("/"):
        return "file://" + urllib.parse.quote(posixpath.normpath(posix))
    return urllib.parse.quote(posixpath.normpath(posix))


def _location(file: str, line: int = 0, column: int = 0) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(file)}}
    if line > 0:
        physical["region"] = {"startLine": line, **({"startColumn": column} if column > 0
                                                    else {})}
    return {"physicalLocation": physical}


def _message(text: str) -> dict[str, str]:
    return {"text": text.replace("](", "\\](")}


def problem_result(problem: Problem) -> dict[str, Any]:
    """One problem of an input file, at its line and column."""
    return {"ruleId": INVALID_MANIFEST, "ruleIndex": _RULE_INDEX[INVALID_MANIFEST],
            "level": "error", "message": _message(problem.message),
            "locations": [_location(problem.file, problem.line, problem.column)]}


def finding_lines(finding: Finding, manifest: Manifest, image_rules: ImageRules) -> list[int]:
    """The manifest lines a finding is about: the rule it names (``no-match``,
    ``image-not-found``, ``lifecycle-unshared``), a named principal (``unused-principal``),
    or the rules that match the image it is about. Empty: the whole manifest."""
    lines: Iterable[int]
    if finding.rule:
        lines = (r.line for r in manifest.rules if r.name == finding.rule)
    elif finding.code is Code.UNUSED_PRINCIPAL:
        lines = (line for name, line in manifest.principal_lines if name == finding.resource)
    else:
        names = set(image_rules.get((finding.region, finding.resource), ()))
        lines = (r.line for r in manifest.rules if r.name in names)
    return sorted({line for line in lines if line > 0})


def finding_result(finding: Finding, manifest: Manifest,
                   image_rules: ImageRules | None = None) -> dict[str, Any]:
    """One finding, at the manifest lines it is about (or the manifest file)."""
    where = finding.where
    lines = finding_lines(finding, manifest, image_rules or {})
    identity = "\x1f".join((finding.code, finding.region, finding.resource, finding.rule))
    return {
        "ruleId": finding.code.value, "ruleIndex": _RULE_INDEX[finding.code.value],
        "level": _LEVEL[finding.severity],
        "message": _message(f"{where}: {finding.message}" if where else finding.message),
        "locations": [_location(manifest.path, line) for line in lines]
                     or [_location(manifest.path)],
        # what the finding is about, stable from run to run (the line may move)
        "partialFingerprints": {
            "reconcileFinding/v1": hashlib.sha256(identity.encode()).hexdigest()},
        "properties": {"region": finding.region, "resource": finding.resource},
    }


def sarif_log(results: Iterable[Mapping[str, Any]], version: str) -> str:
    """The SARIF log of one run of ``reconcile``, as JSON text (one newline at the end)."""
    document = {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "reconcile", "version": version,
                                "semanticVersion": version, "rules": rules()}},
            # PyYAML's columns count code points, not SARIF's default UTF-16 code units
            "columnKind": "unicodeCodePoints",
            "results": list(results),
        }],
    }
    return json_text(json.dumps(document, indent=2, ensure_ascii=False)) + "\n"


def problems_log(problems: Iterable[Problem], version: str) -> str:
    return sarif_log((problem_result(p) for p in problems), version)


def findings_log(findings: Iterable[tuple[Manifest, Finding]], version: str,
                 image_rules: ImageRules | None = None,
                 problems: Iterable[Problem] = ()) -> str:
    """Findings (each with the manifest it is about) and problems, in one log."""
    return sarif_log([*(problem_result(p) for p in problems),
                      *(finding_result(f, m, image_rules) for m, f in findings)], version)


def plan_log(plan: Planned, manifest: Manifest, version: str) -> str:
    """The plan's findings: ``plan --format sarif``."""
    return findings_log(((manifest, f) for f in plan.findings), version,
                        plan.display.image_rules)
