"""Principal names in an exported manifest: the ``--names`` file (a mapping of names to
principals, or a manifest whose ``principals:`` are used), and the generated names
(``account-<id>``, ``org-<o-id>``, ``ou-<ou-id>``) for principals it does not name."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .errors import InputError, Problem
from .model import (
    ORG_ARN_RE,
    OU_ARN_RE,
    PUBLIC,
    Principal,
    PrincipalKind,
    bad_account_id,
    principal_hint,
)
from .yamlload import Located, load_yaml

PRINCIPAL_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", re.ASCII)


def parse_names(raw: bytes, file: str) -> dict[str, str]:
    """A ``--names`` file (YAML mapping: name → principal, or a manifest, whose
    ``principals:`` are used) → principal value → name.

    Names follow the manifest's ``principals:`` rules; values are quoted 12-digit account
    IDs, Organization ARNs or OU ARNs. Every problem is reported with file and line.
    """
    doc, problems = load_yaml(raw, file, "names file")
    if doc is None:
        raise InputError(problems)
    if doc.data is None:
        raise InputError([*problems, doc.problem((), "names file is empty; expected a mapping "
                                                     "like  prod: \"111122223333\"")])
    if not isinstance(doc.data, dict):
        raise InputError([*problems, doc.problem((), "names file must be a mapping of names to "
                                                     "principals, like  prod: \"111122223333\"")])
    entries: Any = doc.data
    prefix: tuple[str, ...] = ()
    if "version" in entries and ("images" in entries or "principals" in entries):
        # a manifest: its `principals:` are the names
        entries, prefix = entries.get("principals") or {}, ("principals",)
        if not isinstance(entries, dict):
            raise InputError([*problems, doc.problem(prefix, "principals: expected a mapping of "
                                                             "names to principals")])
    by_value: dict[str, str] = {}
    for name, value in entries.items():
        problem = _names_entry(doc, (*prefix, name), name, value, by_value)
        if problem is not None:
            problems.append(problem)
        else:
            by_value[value] = name
    if problems:
        raise InputError(problems)
    return by_value


def _names_entry(doc: Located, path: tuple[str, ...], name: Any, value: Any,
                 by_value: Mapping[str, str]) -> Problem | None:
    """What is wrong with one ``name: principal`` entry of a names file, if anything."""
    if name == PUBLIC:
        return doc.problem(path, f"{name!r} is reserved (it means every AWS account); choose "
                                 "another name", key=True)
    if not PRINCIPAL_NAME_RE.fullmatch(name):
        return doc.problem(path, f"{name!r} is not a valid principal name (a letter, then up "
                                 "to 63 letters, digits, '_', '.', '-')", key=True)
    if not isinstance(value, str):
        raw_text = doc.raw(path)
        if isinstance(value, int) and not isinstance(value, bool) and raw_text is not None:
            read_as = f" (YAML reads it as {value})" if str(value) != raw_text else ""
            return doc.problem(path, f"{name}: {raw_text} was read by YAML as a number"
                                     f"{read_as}; quote it: \"{raw_text}\"")
        return doc.problem(path, f"{name}: expected a quoted account ID, Organization ARN or "
                                 f"OU ARN, got {type(value).__name__}")
    p = Principal.parse_literal(value)
    if p is None or p.is_public:
        hint = principal_hint(value)
        what = ((hint and f"{value!r} {hint}") or (value.isdigit() and bad_account_id(value))
                or f"{value!r} is not a 12-digit account ID, Organization ARN or OU ARN")
        return doc.problem(path, f"{name}: {what}")
    if value in by_value:
        return doc.problem(path, f"{name}: {value} is already named {by_value[value]!r}; give "
                                 "each principal one name")
    return None



def generated_name(p: Principal) -> str:
    """``account-<id>``, ``org-<o-id>`` or ``ou-<ou-id>`` (at most 64 characters)."""
    if p.kind is PrincipalKind.ACCOUNT:
        name = f"account-{p.value}"
    elif p.kind is PrincipalKind.ORGANIZATION:
        m = ORG_ARN_RE.fullmatch(p.value)
        name = f"org-{m.group(1)}" if m else "org"
    else:
        m = OU_ARN_RE.fullmatch(p.value)
        name = f"ou-{m.group(2)}" if m else "ou"
    if len(name) > 64:
        name = f"{name[:55]}-{hashlib.sha256(p.value.encode()).hexdigest()[:8]}"
    return name
