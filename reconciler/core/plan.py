"""The plan as a run holds it: the saved contract (:class:`Plan`), what drives its apply
(:class:`ApplyContext`) and what only shows it (:class:`Display`), held together by
:class:`Planned`; and the digest of the state it was computed from.

Like Terraform's plans, the saved plan is its own value: :mod:`.planfile` writes and reads
exactly :class:`Plan`; the other two are never read back (``apply --plan`` computes them
again with the fresh plan the saved one is checked against).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import (
    Action,
    Finding,
    Operation,
    Principal,
    RegionKey,
    Severity,
    sorted_findings,
    sorted_operations,
)

FORMAT_VERSION = 1

# (kind, region, resource) -> canonical current state of that resource
StateEntries = Mapping[tuple[str, str, str], Any]


@dataclass(frozen=True)
class Summary:
    add: int = 0
    remove: int = 0
    images: int = 0
    unchanged: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"add": self.add, "remove": self.remove, "images": self.images,
                "unchanged": self.unchanged}


@dataclass(frozen=True)
class Ownership:
    """Bookkeeping writes (README, "Ownership"), not operations: where apply adds or removes the
    ownership tag ``reconciler:manifest=<name>``. Snapshots are tagged when the tool manages
    their copy permissions, so a released image's copy permissions are known to be its own."""

    name: str
    tag: tuple[RegionKey, ...] = ()  # managed images without the tag
    untag: tuple[RegionKey, ...] = ()  # released images (no rule matches them any more)
    tag_snapshots: tuple[RegionKey, ...] = ()
    untag_snapshots: tuple[RegionKey, ...] = ()
    keep: bool = False  # settings.on_release: keep (released images keep their shares)
    # (region, snapshot ID) -> the released image it backs: a failed revocation on the
    # snapshot keeps the image's tag, so that the next run finds the release again
    snapshot_of: Mapping[RegionKey, str] = field(default_factory=dict, compare=False)

    @property
    def pending(self) -> bool:
        return bool(self.tag or self.untag or self.tag_snapshots or self.untag_snapshots)

    def to_dict(self) -> dict[str, list[str]]:
        out = {"tag": sorted(r for _, r in self.tag), "untag": sorted(r for _, r in self.untag)}
        if self.tag_snapshots:
            out["tag_snapshots"] = sorted(r for _, r in self.tag_snapshots)
        if self.untag_snapshots:
            out["untag_snapshots"] = sorted(r for _, r in self.untag_snapshots)
        return out


@dataclass(frozen=True)
class Plan:
    """The saved contract (``schemas/plan.schema.json``): exactly what ``plan --out`` writes
    and ``apply --plan`` reads back. Survives the file: every field. Drives apply: the
    operations (and the ownership changes), once checked against a fresh plan."""

    manifest_sha256: str
    caller_account: str
    operations: tuple[Operation, ...]
    findings: tuple[Finding, ...]
    summary: Summary
    state_digest: str
    regions: tuple[str, ...] = ()  # the Regions the plan covered (empty: not recorded)
    images: tuple[str, ...] = ()  # --image: the images it was restricted to (empty: all)
    # None: settings.ownership is none. Compared through to_dict (a saved plan has IDs only).
    ownership: Ownership | None = field(default=None, compare=False)
    # settings.deprecate_retired: the retired builds apply deprecates (before the operations),
    # and the builds it deprecated that a rule shares again (their deprecation taken back)
    deprecate: tuple[RegionKey, ...] = ()
    undeprecate: tuple[RegionKey, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(self.operations or self.deprecate or self.undeprecate)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)


@dataclass(frozen=True)
class ApplyContext:
    """What drives apply besides the operations. Survives the file: no (apply computes it
    afresh). Drives apply: yes."""

    # (region, image or snapshot ID) -> ARNs of the KMS keys its consumers need: a failed
    # key write leaves the shares that rely on it unwritten
    resource_keys: Mapping[RegionKey, tuple[str, ...]] = field(default_factory=dict)
    # (region, resource) -> the owner account whose credentials write it
    resource_owner: Mapping[RegionKey, str] = field(default_factory=dict)
    # the canonical state of every resource the plan consulted (its digest is the plan's)
    consulted: StateEntries = field(default_factory=dict)
    # every image carrying this manifest's ownership tag that no rule matches: released now,
    # or waiting while it is still launched (SPEC §7b)
    released: frozenset[RegionKey] = frozenset()


@dataclass(frozen=True)
class Display:
    """What only shows the plan. Survives the file: only as the additive ``resource_name``
    and ``principal_name`` of each operation, ignored when read back. Drives apply: never."""

    principal_names: Mapping[Principal, str] = field(default_factory=dict)  # manifest names
    image_names: Mapping[str, str] = field(default_factory=dict)
    resource_images: Mapping[str, str] = field(default_factory=dict)  # snapshot -> image, key alias
    # key ARN -> (current policy, policy after apply), for verbose output
    key_policies: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    # (region, resource, principal) -> why a rule's lifecycle conditions withhold it, for the
    # reason of a removal ("rule golden: it is not among the newest 3 ...")
    withheld: Mapping[tuple[str, str, Principal], str] = field(default_factory=dict)
    # (region, image ID) -> the rules that match it: where a finding about it points (SARIF),
    # and which rule's group the image is shown in
    image_rules: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    # image ID -> its CreationDate (builds of one family are shown oldest first)
    image_created: Mapping[str, str] = field(default_factory=dict)
    # snapshot ID -> the image it backs (its copy permissions are shown beside the image)
    snapshot_images: Mapping[str, str] = field(default_factory=dict)

    def resource_name(self, resource: str) -> str | None:
        """An image's name, or what a snapshot or key is shown by (None: nothing known)."""
        name = self.image_names.get(resource)
        return name if name is not None else self.resource_images.get(resource)


@dataclass(frozen=True)
class Planned:
    """A plan as a run holds it. Readers of the contract use :attr:`plan` (the shorthand
    properties below read it too)."""

    plan: Plan
    apply: ApplyContext = field(default_factory=ApplyContext)
    display: Display = field(default_factory=Display)

    @property
    def manifest_sha256(self) -> str:
        return self.plan.manifest_sha256

    @property
    def caller_account(self) -> str:
        return self.plan.caller_account

    @property
    def operations(self) -> tuple[Operation, ...]:
        return self.plan.operations

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.plan.findings

    @property
    def summary(self) -> Summary:
        return self.plan.summary

    @property
    def ownership(self) -> Ownership | None:
        return self.plan.ownership

    @property
    def regions(self) -> tuple[str, ...]:
        return self.plan.regions

    @property
    def state_digest(self) -> str:
        return self.plan.state_digest

    @property
    def has_changes(self) -> bool:
        return self.plan.has_changes

    @property
    def errors(self) -> tuple[Finding, ...]:
        return self.plan.errors

    def json_lines(self) -> Iterator[str]:
        """The saved plan document, with the names a reviewer reads it by."""
        from .planfile import json_lines

        return json_lines(self.plan, self.display)

    def to_json(self) -> str:
        return "".join(self.json_lines())


def make_plan(*, manifest_sha256: str, caller_account: str, operations: Iterable[Operation],
              findings: Iterable[Finding], images: int, unchanged: int, state: StateEntries,
              regions: Sequence[str] = (), ownership: Ownership | None = None,
              only: Iterable[str] = (), deprecate: Iterable[RegionKey] = (),
              undeprecate: Iterable[RegionKey] = ()) -> Plan:
    """Assemble the saved plan: sort everything, count, and digest the state of every
    resource the plan consulted (what it writes, their snapshots, every key policy and key
    use read)."""
    ops = sorted_operations(operations)
    adds = sum(1 for o in ops if o.action is Action.ADD)
    return Plan(
        manifest_sha256=manifest_sha256,
        caller_account=caller_account,
        operations=ops,
        findings=sorted_findings(findings),
        summary=Summary(add=adds, remove=len(ops) - adds, images=images, unchanged=unchanged),
        state_digest=state_digest(state, state.keys()),
        regions=tuple(regions),
        images=tuple(sorted(set(only))),
        ownership=ownership,
        deprecate=tuple(sorted(deprecate)),
        undeprecate=tuple(sorted(undeprecate)),
    )


def touched(ops: Iterable[Operation]) -> frozenset[tuple[str, str, str]]:
    """The resources a set of operations writes to, as (kind, region, resource)."""
    return frozenset((o.kind.value, o.region, o.resource) for o in ops)


def _canonical(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return canonical_principals(value)
    return value


def state_digest(state: StateEntries, keys: Iterable[tuple[str, str, str]]) -> str:
    """SHA-256 over the canonical state of the given resources (missing ones count as absent).

    State values are permission sets (canonicalized here, only for the touched resources)
    or already-canonical JSON values such as a key policy's digest.
    """
    canonical = [[list(k), _canonical(state.get(k))] for k in sorted(keys)]
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def canonical_principals(principals: Iterable[Principal]) -> list[str]:
    """State-digest form of a permission set: its values, sorted (values never collide
    across principal kinds: 12-digit IDs, ARNs, ``all``)."""
    return sorted(p.value for p in principals)
