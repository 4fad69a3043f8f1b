"""Plan files: writing the saved contract (:class:`~.plan.Plan`) as JSON, reading it back,
and the check that decides whether a saved plan may be applied."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import InputError, Problem, StalePlanError
from .model import Finding, Operation, RegionKey, plural
from .neutral import json_text
from .plan import FORMAT_VERSION, Display, Ownership, Plan, Summary
from .schema import validator

MAX_PLAN_BYTES = 64 * 1024 * 1024


def to_dict(plan: Plan, display: Display = Display()) -> dict[str, Any]:
    """The plan document (``schemas/plan.schema.json``) as a dict."""
    return {
        "format_version": FORMAT_VERSION,
        "manifest_sha256": plan.manifest_sha256,
        "caller_account": plan.caller_account,
        **({"regions": list(plan.regions)} if plan.regions else {}),
        **({"images": list(plan.images)} if plan.images else {}),
        "operations": [operation_dict(op, display) for op in plan.operations],
        "findings": [f.to_dict() for f in plan.findings],
        "summary": plan.summary.to_dict(),
        "state_digest": plan.state_digest,
        **({"ownership": plan.ownership.to_dict()} if plan.ownership is not None else {}),
        **({"deprecate": ids(plan.deprecate)} if plan.deprecate else {}),
        **({"undeprecate": ids(plan.undeprecate)} if plan.undeprecate else {}),
    }


def ids(keys: tuple[RegionKey, ...]) -> list[str]:
    """Images as the plan document lists them outside its operations (IDs, sorted)."""
    return sorted(r for _, r in keys)


def operation_dict(op: Operation, display: Display) -> dict[str, Any]:
    """The operation as schemas/plan.schema.json has it, plus the names a reviewer reads it
    by (additive fields, ignored when a saved plan is read back)."""
    out = op.to_dict()
    name = display.resource_name(op.resource)
    if name:
        out["resource_name"] = name
    alias = display.principal_names.get(op.principal)
    if alias:
        out["principal_name"] = alias
    return out


def json_lines(plan: Plan, display: Display = Display()) -> Iterator[str]:
    """The plan document one line at a time (one operation or finding per line: readable,
    diffable), so that a plan of 300,000 operations is written out without holding the
    document (or a dict per operation) in memory."""
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
            data = operation_dict(e, display) if isinstance(e, Operation) else e.to_dict()
            yield f"    {json_text(json.dumps(data, ensure_ascii=False))}{comma}\n"
        yield "  ],\n"

    yield "{\n"
    yield scalar("format_version", FORMAT_VERSION)
    yield scalar("manifest_sha256", plan.manifest_sha256)
    yield scalar("caller_account", plan.caller_account)
    if plan.regions:
        yield scalar("regions", list(plan.regions))
    if plan.images:
        yield scalar("images", list(plan.images))
    yield from array("operations", plan.operations)
    yield from array("findings", plan.findings)
    yield scalar("summary", plan.summary.to_dict())
    tail: list[tuple[str, Any]] = [("state_digest", plan.state_digest)]
    if plan.ownership is not None:
        tail.append(("ownership", plan.ownership.to_dict()))
    if plan.deprecate:
        tail.append(("deprecate", ids(plan.deprecate)))
    if plan.undeprecate:
        tail.append(("undeprecate", ids(plan.undeprecate)))
    for i, (key, value) in enumerate(tail):
        yield scalar(key, value, comma="," if i < len(tail) - 1 else "")
    yield "}\n"


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
                tuple(data.get("regions") or ()), tuple(data.get("images") or ()),
                _ownership_from_dict(data.get("ownership")),
                tuple(RegionKey("", str(i)) for i in data.get("deprecate") or ()),
                tuple(RegionKey("", str(i)) for i in data.get("undeprecate") or ()))


def _ownership_from_dict(data: Any) -> Ownership | None:
    """A saved plan's ownership lists (IDs only: apply always recomputes them and compares)."""
    if data is None:
        return None
    def ids(key: str) -> tuple[RegionKey, ...]:
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
    return (f"{s.add} to add, {s.remove} to remove, {plural(s.images, 'image')}, "
            f"{s.unchanged} unchanged")


def _edits(saved: Plan, fresh: Plan) -> str:
    """What in the saved plan is not what a plan computed now gives ("" when nothing)."""
    differ = _operations_differ(saved, fresh)
    if not differ and saved.ownership is not None and fresh.ownership is not None \
            and saved.ownership.to_dict() != fresh.ownership.to_dict():
        differ = "its ownership tag changes differ from the plan computed now"
    if not differ and (ids(saved.deprecate), ids(saved.undeprecate)) != (
            ids(fresh.deprecate), ids(fresh.undeprecate)):
        differ = "the images it deprecates differ from the plan computed now"
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
    if saved.images != fresh.images:
        def which(plan: Plan) -> str:
            return f"images {', '.join(plan.images)}" if plan.images else "every managed image"

        raise StalePlanError(f"saved plan covers {which(saved)}, but this apply covers "
                             f"{which(fresh)}; apply it with the --image options it was "
                             "planned with (or plan again)")
    if fresh.state_digest != saved.state_digest:
        raise StalePlanError("saved plan is stale: the current state of the resources it "
                             "consulted changed since the plan was made; run plan again")
    if differ := _edits(saved, fresh):
        raise StalePlanError(f"saved plan was edited (tampered): {differ}, although the state "
                             "it was made from is unchanged; refusing it (run plan again and "
                             "review that plan)")


def to_json(plan: Plan, display: Display = Display()) -> str:
    """The whole plan document (:func:`json_lines` joined)."""
    return "".join(json_lines(plan, display))
