"""The JSON Schemas, and turning schema errors into located, one-line problems.

Schemas ship inside the wheel as ``reconciler/schemas/*.json`` (see pyproject); from a
source checkout they are read from the top-level ``schemas/`` folder.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path as FsPath
from typing import Any

import jsonschema
import jsonschema.validators
from jsonschema.exceptions import ValidationError

from .errors import Problem
from .yamlload import Located, Path


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the schema ``name`` (e.g. ``"manifest"``) as a dict."""
    filename = f"{name}.schema.json"
    packaged = resources.files("reconciler").joinpath("schemas", filename)
    if packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:  # running from a source checkout
        text = (FsPath(__file__).resolve().parents[2] / "schemas" / filename).read_text(
            encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """``pattern`` with ECMA-262 anchoring, as JSON Schema specifies: Python's ``$`` would also
    match before a trailing newline and its ``\\d`` any Unicode digit."""
    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern, re.ASCII)


def _is_integer(checker: Any, instance: Any) -> bool:
    """``integer`` as a manifest means it: JSON Schema counts 2.0 as an integer, and a
    ``latest: 2.0`` then reached the planner as a float."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_BASE = jsonschema.Draft202012Validator


def _strict_const(validator: Any, const: Any, instance: Any, schema: Any) -> Any:
    """``const`` that tells 1.0 from 1 (JSON Schema calls them equal)."""
    if isinstance(const, int) and not isinstance(const, bool) and isinstance(instance, float):
        yield ValidationError(f"{const!r} was expected")
        return
    yield from _BASE.VALIDATORS["const"](validator, const, instance, schema)


_Validator = jsonschema.validators.extend(
    _BASE, {"pattern": _ecma_pattern, "const": _strict_const},
    type_checker=_BASE.TYPE_CHECKER.redefine("integer", _is_integer))

# A value hint: (path, value) -> what is wrong with it, when the caller knows better than
# the schema's generic message (e.g. a principal pasted with spaces).
Hint = Callable[[Path, Any], str | None]


@functools.cache
def validator(name: str) -> Any:
    return _Validator(load_schema(name))


def fmt_path(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "document"


def _yaml_scalar_hint(doc: Located, path: Path, value: Any) -> str | None:
    """A value YAML typed as number/bool/null where a string was expected: say to quote it."""
    if isinstance(value, str):
        return None
    raw = doc.raw(path)
    if raw is None:
        return None
    kind = {bool: "a boolean", int: "a number", float: "a number", type(None): "null"}.get(
        type(value), type(value).__name__)
    shown = raw if raw else "(empty)"
    extra = ""
    if isinstance(value, int) and not isinstance(value, bool) and str(value) != raw:
        extra = f" (YAML reads it as {value})"
    return f"{shown} was read by YAML as {kind}{extra}; quote it: \"{raw}\""


def _expects_string(err: ValidationError) -> bool:
    """Did the failing schema want a string (so a YAML-typed scalar should be quoted)?"""
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "type":
        wanted = err.validator_value
        return wanted == "string" or (isinstance(wanted, list) and "string" in wanted)
    if err.validator in ("anyOf", "oneOf"):
        branches = schema.get(err.validator, [])
        return bool(branches) and all(b.get("type") == "string" for b in branches)
    return False


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """For anyOf/oneOf, prefer a custom message on the combinator; else the best branch."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        if "errorMessage" in error.schema:
            return [error]
        best = jsonschema.exceptions.best_match(error.context)
        return [best] if best is not None else [error]
    return [error]


def schema_problems(doc: Located, schema_name: str, hint: Hint | None = None) -> list[Problem]:
    """Validate ``doc.data`` against a schema; return one located problem per error.
    ``hint`` may say better than the schema what is wrong with a value it refuses."""
    problems: list[Problem] = []
    v = validator(schema_name)
    for top in v.iter_errors(doc.data):
        for err in _leaf_errors(top):
            path: Path = tuple(err.absolute_path)
            better = hint(path, err.instance) if hint is not None else None
            problems.extend([doc.problem(path, f"{fmt_path(path)}: {better}")] if better
                            else _describe(doc, err, path))
    return problems


def _describe(doc: Located, err: ValidationError, path: Path) -> list[Problem]:
    where = fmt_path(path)
    inst = err.instance
    if "propertyNames" in err.schema_path and isinstance(inst, str):
        return [_key_problem(doc, err, path, inst)]
    if err.validator == "type" and err.validator_value == "integer" and isinstance(inst, float):
        return [doc.problem(path, f"{where}: {_not_an_integer(doc, path, inst)}")]
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        known = list(err.schema.get("properties", {}))
        extras = [k for k in inst if k not in known]
        out = []
        for k in extras:
            close = difflib.get_close_matches(k, known, n=1)
            msg = f"{where}: unknown key {k!r}"
            msg += f" (did you mean {close[0]!r}?)" if close else (
                f" (allowed: {', '.join(known)})" if known else "")
            out.append(doc.problem(path + (k,), msg, key=True))
        if out:
            return out
    if err.validator == "required":
        return [doc.problem(path, f"{where}: {err.message}")]
    hint = _yaml_scalar_hint(doc, path, inst) if _expects_string(err) else None
    if hint:
        return [doc.problem(path, f"{where}: {hint}")]
    custom = err.schema.get("errorMessage") if isinstance(err.schema, dict) else None
    compound = isinstance(inst, (dict, list))
    shown = type(inst).__name__ if compound else json.dumps(inst, default=str)
    if custom:
        return [doc.problem(path, f"{where}: {custom}" if compound else f"{where}: {shown} {custom}")]
    if err.validator == "type":
        return [doc.problem(path, f"{where}: expected {err.validator_value}, got {shown}")]
    if err.validator == "enum":
        allowed = ", ".join(json.dumps(x) for x in err.validator_value if x is not False)
        return [doc.problem(path, f"{where}: {shown} is not one of {allowed}")]
    return [doc.problem(path, f"{where}: {_one_line(err.message)}")]


def _key_problem(doc: Located, err: ValidationError, path: Path, key: str) -> Problem:
    """A mapping key its schema refuses, located at the key. A key outside an ``enum`` is
    told like an unknown key: the closest allowed one, or them all."""
    custom = err.schema.get("errorMessage") if isinstance(err.schema, dict) else None
    if err.validator != "enum":
        message = f"{fmt_path(path)}: {json.dumps(key)} {custom or _one_line(err.message)}"
        return doc.problem(path + (key,), message, key=True)
    allowed = [str(x) for x in err.validator_value]
    close = difflib.get_close_matches(key, allowed, n=1)
    more = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(allowed)}"
    return doc.problem(path + (key,), f"{fmt_path(path)}: {key!r} {custom or 'is not allowed'} "
                                      f"({more})", key=True)


def _not_an_integer(doc: Located, path: Path, value: float) -> str:
    """``2.0 is not an integer; write 2``: what YAML read as a float where a count belongs."""
    shown = doc.raw(path) or json.dumps(value)
    if value.is_integer():
        return f"{shown} is not an integer; write {int(value)}"
    return f"{shown} is not an integer"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."
