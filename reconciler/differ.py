"""Set arithmetic between desired and current permissions of one resource. Pure."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from .desired import Declared
from .model import Action, OpKind, Operation, Principal


@dataclass(frozen=True)
class ResourceDiff:
    operations: tuple[Operation, ...]
    unchanged: int


def diff_permissions(kind: OpKind, region: str, resource: str, desired: Declared,
                     current: Set[Principal], *, prune: bool,
                     cannot_add: Set[Principal] = frozenset()) -> ResourceDiff:
    """desired − current → add; current − desired → remove (only when pruning).

    ``cannot_add`` holds declared principals that must not be added now (a finding says
    why). They still count as declared, so an existing grant of theirs is never pruned.
    """
    ops = [Operation(Action.ADD, kind, region, resource, p, tuple(sorted(desired[p])))
           for p in desired if p not in current and p not in cannot_add]
    if prune:
        ops += [Operation(Action.REMOVE, kind, region, resource, p, ())
                for p in current if p not in desired]
    unchanged = sum(1 for p in desired if p in current)
    return ResourceDiff(tuple(sorted(ops, key=lambda o: o.sort_key)), unchanged)
