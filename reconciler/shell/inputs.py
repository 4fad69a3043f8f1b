"""The user's input files, read from disk (bounded, see :mod:`.files`) and handed to the
core's parsers, which only ever see bytes: the manifest, a saved plan, a names file; and
where an exported manifest's editor modeline finds the schema."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import InputError
from ..core.events import MAX_EVENT_BYTES, Event, parse_event
from ..core.manifest import SAVED_PLAN_START, Manifest, parse_manifest, saved_plan_error
from ..core.names import parse_names
from ..core.plan import Plan
from ..core.planfile import MAX_PLAN_BYTES, parse_plan_file
from ..core.yamlload import MAX_BYTES
from .files import read_head, read_input, read_stdin


def load_manifest(path: str) -> Manifest:
    """Read and validate the manifest file at ``path``."""
    try:
        raw = read_input(path, "manifest file", MAX_BYTES)
    except InputError:
        # a saved plan may be larger than a manifest may be: still say what it is
        if SAVED_PLAN_START.match(read_head(path)):
            raise saved_plan_error(path) from None
        raise
    return parse_manifest(raw, path)


def load_plan_file(path: str) -> Plan:
    """Read the saved plan at ``path`` (``apply --plan``)."""
    return parse_plan_file(read_input(path, "plan file", MAX_PLAN_BYTES), path)


def load_event(path: str) -> Event:
    """Read the EventBridge event at ``path`` (``-``: standard input)."""
    what = "event"
    raw = read_stdin(what, MAX_EVENT_BYTES) if path == "-" else read_input(path, what,
                                                                           MAX_EVENT_BYTES)
    return parse_event(raw, "<stdin>" if path == "-" else path)


def load_names(path: str) -> dict[str, str]:
    """Read the ``--names`` file at ``path``: principal value -> name."""
    return parse_names(read_input(path, "names file", MAX_BYTES), path)


def schema_ref_for(out: str | None) -> str | None:
    """The relative path from the exported manifest to a ``schemas/manifest.schema.json``
    in its folder or one above it (a checkout of this project, or a team repository that
    keeps a copy), so that the ``$schema`` line points at a file that exists; else None."""
    folder = Path(out).resolve().parent if out else Path.cwd()
    for up in (folder, *list(folder.parents)[:4]):
        candidate = up / "schemas" / "manifest.schema.json"
        if candidate.is_file():
            return os.path.relpath(candidate, folder) if up != folder else \
                "./schemas/manifest.schema.json"
    return None
