"""A plan as a reviewer reads it: what the text and Markdown renderings share.

Within a Region, the resources are grouped by the rules that select their images (in the
manifest's order), then the resources no rule selects (released images), then the KMS
keys; within a group, images by name and creation date, each snapshot beside its image.
A roll-up counts the changes by rule and by principal. Named organizations and OUs are
shown by their ID (``ou-ab12-cdef3456 (analytics-ou)``) and their full ARN is given once,
in the principal roll-up. Identical key-policy changes are one change on several keys.

Pure functions of the plan and the manifest; the values stay raw here, and the renderers
make them inert (:mod:`.neutral`) as they print them. None of this is in the JSON plan,
whose order and shape are the saved contract.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .kms import OWNED_SIDS
from .manifest import Manifest
from .model import Action, Arn, Operation, OpKind, Principal, by_resource
from .plan import Planned

# A roll-up is printed when the plan has more than this many operations: below it, the
# changes themselves are read faster than their counts. (The principal roll-up is also
# printed whenever a principal is shown by its short ID: it holds the full ARN.)
ROLLUP_ABOVE = 10
NO_RULE = "not selected by any rule"
KEYS = "KMS keys"

_RULES, _NO_RULE, _KEYS = 0, 1, 2  # the order of the groups in a Region


@dataclass(frozen=True)
class Group:
    """The changed resources of one Region that one set of rules selects (``rules``), or
    that no rule selects, or the Region's KMS keys; in the order they are shown."""

    rank: int  # _RULES, _NO_RULE or _KEYS
    rules: tuple[str, ...]
    resources: tuple[tuple[str, tuple[Operation, ...]], ...]

    @property
    def name(self) -> str:
        """What the roll-up calls it: the rule names, or what the group holds."""
        return ", ".join(self.rules) if self.rank == _RULES else KEYS if self.rank == _KEYS \
            else NO_RULE

    @property
    def label(self) -> str:
        """Its heading above the resources: ``rule golden``, ``rules a, b``."""
        if self.rank != _RULES:
            return self.name
        return f"rule{'s' if len(self.rules) > 1 else ''} {self.name}"


@dataclass(frozen=True)
class Tally:
    """One roll-up row: who or what, its adds and removes, and the full ID when ``label``
    shortened it."""

    label: str
    add: int
    remove: int
    full: str = ""


@dataclass(frozen=True)
class Rollup:
    rules: tuple[Tally, ...] = ()  # empty: the plan is too small for it
    principals: tuple[Tally, ...] = ()


def _rule_rank(manifest: Manifest | None) -> dict[str, int]:
    return {r.name: i for i, r in enumerate(manifest.rules)} if manifest is not None else {}


def _group_key(rank: int, rules: tuple[str, ...], order: dict[str, int]
               ) -> tuple[int, tuple[int, ...], tuple[str, ...]]:
    return rank, tuple(order.get(r, len(order)) for r in rules), rules


def region_groups(plan: Planned, manifest: Manifest | None
                  ) -> list[tuple[str, tuple[Group, ...]]]:
    """Each Region with changes (sorted), and its groups in the order they are shown."""
    d = plan.display
    order = _rule_rank(manifest)
    found: dict[str, dict[Any, list[tuple[Any, str, tuple[Operation, ...]]]]] = {}
    for (region, resource), ops in by_resource(plan.operations).items():
        rules: tuple[str, ...] = ()
        if ops[0].kind is OpKind.KMS:
            rank, image = _KEYS, ""
        else:
            image = d.snapshot_images.get(resource, resource) if ops[0].kind is OpKind.COPY \
                else resource
            rules = tuple(d.image_rules.get((region, image), ()))
            rank = _RULES if rules else _NO_RULE
        name = d.image_names.get(image, "")
        place = (name, d.image_created.get(image, ""), image, image != resource, resource)
        found.setdefault(region, {}).setdefault(_group_key(rank, rules, order), []).append(
            (place, resource, tuple(ops)))
    return [(region, tuple(Group(key[0], key[2],
                                 tuple((res, ops) for _, res, ops in sorted(members)))
                           for key, members in sorted(found[region].items())))
            for region in sorted(found)]


def shortened(p: Principal, manifest: Manifest | None) -> bool:
    """Whether ``p`` is shown by a short ID: a named organization or OU."""
    return p.is_org_or_ou and manifest is not None and manifest.name_of(p) is not None


def principal_text(p: Principal, manifest: Manifest | None) -> str:
    """How an operation shows its principal: ``111122223333 (prod)``; a named organization
    or OU by its ID, ``ou-ab12-cdef3456 (analytics-ou)`` (the roll-up has its ARN)."""
    name = manifest.name_of(p) if manifest is not None else None
    if not name:
        return p.label
    shown = Arn.parse(p.value).resource_id if p.is_org_or_ou else p.label
    return f"{shown} ({name})"


def _tallies(counted: Iterable[tuple[Any, Action]]) -> dict[Any, tuple[int, int]]:
    """(adds, removes) of each key."""
    counts = Counter(counted)
    return {key: (counts[key, Action.ADD], counts[key, Action.REMOVE])
            for key in dict.fromkeys(key for key, _ in counts)}


def rollup(plan: Planned, manifest: Manifest | None,
           groups: Sequence[tuple[str, tuple[Group, ...]]]) -> Rollup:
    """The changes counted by rule (the groups, over every Region) and by principal, when
    the plan is big enough (:data:`ROLLUP_ABOVE`); by principal also when a principal is
    shown by its short ID, for its full ARN."""
    big = len(plan.operations) > ROLLUP_ABOVE
    principals = {o.principal for o in plan.operations}
    if not big and not any(shortened(p, manifest) for p in principals):
        return Rollup()
    by_principal = _tallies((o.principal, o.action) for o in plan.operations)
    who = tuple(Tally(principal_text(p, manifest), *by_principal[p],
                      p.value if shortened(p, manifest) else "")
                for p in sorted(principals))
    if not big:
        return Rollup(principals=who)
    order = _rule_rank(manifest)
    names: dict[Any, str] = {}
    counted: list[tuple[Any, Action]] = []
    for _, region_groups_ in groups:
        for g in region_groups_:
            key = _group_key(g.rank, g.rules, order)
            names[key] = g.name
            counted += [(key, o.action) for _, ops in g.resources for o in ops]
    by_rule = _tallies(counted)
    return Rollup(tuple(Tally(names[k], *by_rule[k]) for k in sorted(by_rule)), who)


def _owned_statements(policy: Any) -> list[Any]:
    statements = policy.get("Statement", []) if isinstance(policy, dict) else []
    return [st for st in statements if isinstance(st, dict) and st.get("Sid") in OWNED_SIDS]


def policy_diff(old: Any, new: Any) -> list[str]:
    """The tool's own statements of a key policy, before and after, as a diff of their JSON
    (pretty-printed for review; KMS receives compact JSON). Other statements never change."""
    before = json.dumps(_owned_statements(old), indent=2).splitlines()
    after = json.dumps(_owned_statements(new), indent=2).splitlines()
    lines = list(difflib.unified_diff(before, after, "before", "after", n=3, lineterm=""))
    return lines[2:]  # the ---/+++ header says nothing a reviewer needs


def key_policy_changes(plan: Planned) -> list[tuple[tuple[str, ...], list[str]]]:
    """Each distinct change of the tool's statements, once: the keys it is made on (their
    ARNs, in the order the text shows them: by Region, then ARN) and its diff. Keys whose
    statements read the same before and after share one change."""
    shown = sorted({(o.region, o.resource) for o in plan.operations if o.kind is OpKind.KMS})
    place = {arn: i for i, (_, arn) in enumerate(shown)}
    by_diff: dict[tuple[str, ...], list[str]] = {}
    for arn, pair in plan.display.key_policies.items():
        by_diff.setdefault(tuple(policy_diff(*pair)), []).append(arn)
    changes = [(tuple(sorted(arns, key=lambda a: (place.get(a, len(place)), a))), list(diff))
               for diff, arns in by_diff.items()]
    return sorted(changes, key=lambda c: (place.get(c[0][0], len(place)), c[0][0]))
