"""Set arithmetic between desired and current permissions of one resource. Pure."""

from __future__ import annotations

import functools
from collections.abc import Set
from dataclasses import dataclass

from .desired import Declared
from .model import Action, Operation, OpKind, Principal


@dataclass(frozen=True)
class ResourceDiff:
    operations: tuple[Operation, ...]
    unchanged: int


def diff_permissions(kind: OpKind, region: str, resource: str, desired: Declared,
                     current: Set[Principal], *, prune: bool,
                     cannot_add: Set[Principal] = frozenset(),
                     revoke: Set[Principal] = frozenset(),
                     keep: Set[Principal] = frozenset()) -> ResourceDiff:
    """desired − current → add; current − desired → remove (when pruning; ``revoke``: the
    principals removed even without pruning, those a rule's lifecycle conditions withhold).

    ``cannot_add`` holds declared principals that must not be added now (a finding says
    why). They still count as declared, so an existing grant of theirs is never pruned.
    ``keep``: principals whose removal waits (a build still launched, SPEC §7b).
    """
    ops: list[Operation] = []
    unchanged = 0
    for p, rules in desired.items():  # one pass: this runs for every principal of every image
        if p in current:
            unchanged += 1
        elif p not in cannot_add:
            ops.append(Operation(Action.ADD, kind, region, resource, p, _sorted_names(rules)))
    if (prune or revoke) and len(current) > unchanged:
        ops += [Operation(Action.REMOVE, kind, region, resource, p, ())
                for p in current if p not in desired and (prune or p in revoke)
                and p not in keep]
    return ResourceDiff(tuple(sorted(ops, key=lambda o: o.sort_key)), unchanged)


@functools.lru_cache(maxsize=4096)
def _sorted_names(rules: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(rules))
