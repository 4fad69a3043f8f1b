"""The plan: operations + findings + the digests that make a saved plan safe to apply.

``to_dict`` is the contract of schemas/plan.schema.json (``format_version`` 1). Everything else on
:class:`Plan` (image and principal names) exists only to render it for humans.
"""

from __future__ import annotations

import collections
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError, Problem, StalePlanError
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
from .neutral import json_text
from .schema import validator

FORMAT_VERSION = 1
MAX_PLAN_BYTES = 64 * 1024 * 1024

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


RegionResource = RegionKey


@dataclass(frozen=True)
class Ownership:
    """Bookkeeping writes (README, "Ownership"), not operations: where apply adds or removes the
    ownership tag ``reconciler:manifest=<name>``. Snapshots are tagged when the tool manages
    their copy permissions, so a released image's copy permissions are known to be its own."""

    name: str
    tag: tuple[RegionResource, ...] = ()  # managed images without the tag
    untag: tuple[RegionResource, ...] = ()  # released images (no rule matches them any more)
    tag_snapshots: tuple[RegionResource, ...] = ()
    untag_snapshots: tuple[RegionResource, ...] = ()
    keep: bool = False  # settings.on_release: keep (released images keep their shares)
    # (region, snapshot ID) -> the released image it backs: a failed revocation on the
    # snapshot keeps the image's tag, so that the next run finds the release again
    snapshot_of: Mapping[RegionResource, str] = field(default_factory=dict, compare=False)

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
    manifest_sha256: str
    caller_account: str
    operations: tuple[Operation, ...]
    findings: tuple[Finding, ...]
    summary: Summary
    state_digest: str
    regions: tuple[str, ...] = ()  # the Regions the plan covered (empty: not recorded)
    # None: settings.ownership is none. Compared through to_dict (a saved plan has IDs only).
    ownership: Ownership | None = field(default=None, compare=False)
    # Manifest names of principals, for the additive ``principal_name`` fields.
    principal_names: Mapping[Principal, str] = field(default_factory=dict, compare=False)
    # Rendering context only: never serialized, never drives apply.
    image_names: Mapping[str, str] = field(default_factory=dict, compare=False)
    resource_images: Mapping[str, str] = field(default_factory=dict, compare=False)
    # Canonical state of every managed resource, to check a saved plan against.
    state: StateEntries = field(default_factory=dict, compare=False)
    # Key ARN -> (current policy, policy after apply), for verbose output.
    key_policies: Mapping[str, tuple[Any, Any]] = field(default_factory=dict, compare=False)
    # (region, image or snapshot ID) -> ARNs of the KMS keys its consumers need.
    resource_keys: Mapping[RegionKey, tuple[str, ...]] = field(default_factory=dict,
                                                                      compare=False)
    # (region, resource) -> owner account whose credentials write it.
    resource_owner: Mapping[RegionKey, str] = field(default_factory=dict, compare=False)
    # (region, resource, principal) -> why a rule's lifecycle conditions withhold it, for
    # the reason of a removal ("rule golden: it is not among the newest 3 ...").
    withheld: Mapping[tuple[str, str, Principal], str] = field(default_factory=dict,
                                                               compare=False)

    @property
    def has_changes(self) -> bool:
        return bool(self.operations)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "manifest_sha256": self.manifest_sha256,
            "caller_account": self.caller_account,
            **({"regions": list(self.regions)} if self.regions else {}),
            "operations": [self.operation_dict(op) for op in self.operations],
            "findings": [f.to_dict() for f in self.findings],
            "summary": self.summary.to_dict(),
            "state_digest": self.state_digest,
            **({"ownership": self.ownership.to_dict()} if self.ownership is not None else {}),
        }

    def operation_dict(self, op: Operation) -> dict[str, Any]:
        """The operation as schemas/plan.schema.json has it, plus the names a reviewer reads it by (additive
        fields, ignored when a saved plan is read back)."""
        out = op.to_dict()
        name = self.image_names.get(op.resource) or self.resource_images.get(op.resource)
        if name:
            out["resource_name"] = name
        alias = self.principal_names.get(op.principal)
        if alias:
            out["principal_name"] = alias
        return out

    def to_json(self) -> str:
        """The plan document: one operation or finding per line (readable, diffable, fast)."""
        return "".join(self.json_lines())

    def json_lines(self) -> Iterator[str]:
        """:meth:`to_json` one line at a time, so that a plan of 300,000 operations can be
        written out without holding the document (or a dict per operation) in memory."""
        def scalar(key: str, value: Any, comma: str = ",") -> str:
            return f'  "{key}": {json_text(json.dumps(value, ensure_ascii=False))}{comma}\n'

        def array(key: str, entries: Sequence[Operation | Finding]) -> Iterator[str]:
            if not entries:
                yield f'  "{key}": [],\n'
                return
            yield f'  "{key}": [\n'
            last = len(entries) - 1
            for i, e in enumerate(entries):
                comma = "," if i < last else ""
                data = self.operation_dict(e) if isinstance(e, Operation) else e.to_dict()
                yield f"    {json_text(json.dumps(data, ensure_ascii=False))}{comma}\n"
            yield "  ],\n"

        yield "{\n"
        yield scalar("format_version", FORMAT_VERSION)
        yield scalar("manifest_sha256", self.manifest_sha256)
        yield scalar("caller_account", self.caller_account)
        if self.regions:
            yield scalar("regions", list(self.regions))
        yield from array("operations", self.operations)
        yield from array("findings", self.findings)
        yield scalar("summary", self.summary.to_dict())
        if self.ownership is None:
            yield scalar("state_digest", self.state_digest, comma="")
        else:
            yield scalar("state_digest", self.state_digest)
            yield scalar("ownership", self.ownership.to_dict(), comma="")
        yield "}\n"


def make_plan(*, manifest_sha256: str, caller_account: str, operations: Iterable[Operation],
              findings: Iterable[Finding], images: int, unchanged: int, state: StateEntries,
              image_names: Mapping[str, str] | None = None,
              resource_images: Mapping[str, str] | None = None,
              key_policies: Mapping[str, tuple[Any, Any]] | None = None,
              resource_keys: Mapping[RegionKey, tuple[str, ...]] | None = None,
              resource_owner: Mapping[RegionKey, str] | None = None,
              regions: Sequence[str] = (), ownership: Ownership | None = None,
              principal_names: Mapping[Principal, str] | None = None,
              withheld: Mapping[tuple[str, str, Principal], str] | None = None) -> Plan:
    """Assemble a plan: sort everything, count, and digest the state of every resource the
    plan consulted (what it writes, their snapshots, every key policy and key use read)."""
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
        ownership=ownership,
        principal_names=dict(principal_names or {}),
        image_names=dict(image_names or {}),
        resource_images=dict(resource_images or {}),
        state=dict(state),
        key_policies=dict(key_policies or {}),
        resource_keys=dict(resource_keys or {}),
        resource_owner=dict(resource_owner or {}),
        withheld=dict(withheld or {}),
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


def plan_from_dict(data: Any, file: str) -> Plan:
    """Validate a saved plan document (schema first) and rebuild the :class:`Plan`."""
    errors = sorted(validator("plan").iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        problems = []
        for e in errors[:20]:
            where = "/".join(str(p) for p in e.absolute_path) or "document"
            problems.append(Problem(file, 1, 1, f"not a valid plan file: {where}: "
                                                f"{' '.join(e.message.split())[:200]}"))
        raise InputError(problems)
    try:
        ops = tuple(Operation.from_dict(o) for o in data["operations"])
        findings = tuple(Finding.from_dict(f) for f in data["findings"])
    except (ValueError, KeyError) as exc:
        raise InputError([Problem(file, 1, 1, f"not a valid plan file: {exc}")]) from None
    s = data["summary"]
    return Plan(data["manifest_sha256"], data["caller_account"], ops, findings,
                Summary(s["add"], s["remove"], s["images"], s["unchanged"]), data["state_digest"],
                tuple(data.get("regions") or ()), _ownership_from_dict(data.get("ownership")))


def _ownership_from_dict(data: Any) -> Ownership | None:
    """A saved plan's ownership lists (IDs only: apply always recomputes them and compares)."""
    if data is None:
        return None
    def ids(key: str) -> tuple[RegionResource, ...]:
        return tuple(RegionKey("", str(i)) for i in data.get(key, ()))

    return Ownership("", ids("tag"), ids("untag"), ids("tag_snapshots"), ids("untag_snapshots"))


def parse_plan_file(raw: bytes, path: str) -> Plan:
    """A saved plan from the bytes of the file at ``path`` (named in errors)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError([Problem(path, 1, 1, "plan file is not UTF-8 JSON")]) from None
    except json.JSONDecodeError as exc:
        raise InputError([Problem(path, exc.lineno, exc.colno,
                                  f"plan file is not valid JSON: {exc.msg}")]) from None
    except (RecursionError, ValueError) as exc:  # absurd nesting, 4,300+ digit numbers
        raise InputError([Problem(path, 1, 1, f"plan file cannot be read: "
                                              f"{type(exc).__name__}")]) from None
    return plan_from_dict(data, path)


def _op_text(op: Operation) -> str:
    return f"{op.action.value} {op.kind.value} {op.principal.label} on {op.resource}"


def _operations_differ(saved: Plan, fresh: Plan) -> str:
    """How the saved operations differ from a fresh plan's ("" when they are the same)."""
    counts = collections.Counter(saved.operations)
    twice = sorted((op for op, n in counts.items() if n > 1), key=lambda o: o.sort_key)
    if twice:
        return f"it lists {_op_text(twice[0])} more than once ({len(twice)} operation(s) twice or more)"
    extra = sorted(set(counts) - set(fresh.operations), key=lambda o: o.sort_key)
    if extra:
        return (f"it contains {len(extra)} operation(s) the manifest does not call for (first: "
                f"{_op_text(extra[0])})")
    missing = sorted(set(fresh.operations) - set(counts), key=lambda o: o.sort_key)
    if missing:
        return (f"{len(missing)} operation(s) a fresh plan calls for are missing from it (first: "
                f"{_op_text(missing[0])})")
    return ""


def _summary_text(s: Summary) -> str:
    return f"{s.add} to add, {s.remove} to remove, {s.images} images, {s.unchanged} unchanged"


def _edits(saved: Plan, fresh: Plan) -> str:
    """What in the saved plan is not what a plan computed now gives ("" when nothing)."""
    differ = _operations_differ(saved, fresh)
    if not differ and saved.ownership is not None and fresh.ownership is not None \
            and saved.ownership.to_dict() != fresh.ownership.to_dict():
        differ = "its ownership tag changes differ from the plan computed now"
    if not differ and saved.summary != fresh.summary:
        # never used (apply counts the operations), but the tool never writes a wrong one
        differ = (f"its summary says {_summary_text(saved.summary)}, its operations give "
                  f"{_summary_text(fresh.summary)}")
    return differ


def check_saved_plan(saved: Plan, fresh: Plan, manifest_sha256: str, manifest_path: str) -> None:
    """Apply a saved plan only if it is exactly what a fresh plan computes now, against the
    state it was computed from; otherwise refuse (StalePlanError), naming the first
    difference. ``manifest_sha256`` is the manifest's digest now.

    Stale and tampered are told apart by the state digest: when the state the plan
    consulted changed, a plan computed now differs anyway (stale: plan again); when it did
    not, operations, ownership changes or a summary other than a plan computed now gives
    can only come from an edit of the file (tampered)."""
    if saved.manifest_sha256 != manifest_sha256:
        raise StalePlanError("saved plan is stale: the manifest changed since the plan was made "
                             f"(plan has {saved.manifest_sha256[:12]}, {manifest_path} is "
                             f"{manifest_sha256[:12]}); run plan again")
    if saved.caller_account != fresh.caller_account:
        raise StalePlanError(f"saved plan was made for account {saved.caller_account}, but the "
                             f"credentials are for {fresh.caller_account}")
    if saved.regions and saved.regions != fresh.regions:
        raise StalePlanError(f"saved plan covers Regions {', '.join(saved.regions)}, but this "
                             f"apply covers {', '.join(fresh.regions) or 'none'}; apply it with "
                             "the --region options it was planned with (or plan again)")
    if fresh.state_digest != saved.state_digest:
        raise StalePlanError("saved plan is stale: the current state of the resources it "
                             "consulted changed since the plan was made; run plan again")
    if differ := _edits(saved, fresh):
        raise StalePlanError(f"saved plan was edited (tampered): {differ}, although the state "
                             "it was made from is unchanged; refusing it (run plan again and "
                             "review that plan)")
