"""Executes a plan's operations against AWS, in the order SPEC §7 requires.

Phases, each finished before the next starts:
1. KMS key access added;
2. launch permissions (one ``ModifyImageAttribute`` per image with all its Add and Remove
   entries) and snapshot copy permissions added;
3. snapshot copy permissions removed;
4. KMS key access removed.
Within a phase independent resources are written concurrently. A failed write is
reported and the others still run.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from .aws import Clients, describe_error
from .model import Action, Identity, OpKind, Operation


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class ApplyReport:
    outcomes: tuple[Outcome, ...]

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def applied(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.ok)


@dataclass(frozen=True)
class Write:
    """One API call and the operations it carries."""

    service: str
    api: str
    operations: tuple[Operation, ...]
    call: Callable[[], Any]


LogSink = Callable[[dict[str, Any]], None]


def _launch_write(clients: Clients, region: str, image_id: str, ops: Sequence[Operation]) -> Write:
    adds = [o.principal.to_dict() for o in ops if o.action is Action.ADD]
    removes = [o.principal.to_dict() for o in ops if o.action is Action.REMOVE]
    perm: dict[str, Any] = {}
    if adds:
        perm["Add"] = adds
    if removes:
        perm["Remove"] = removes

    def call() -> Any:
        return clients.get("ec2", region).modify_image_attribute(
            ImageId=image_id, Attribute="launchPermission", LaunchPermission=perm)

    return Write("ec2", "ModifyImageAttribute", tuple(ops), call)


def plan_writes(clients: Clients, ops: Iterable[Operation]) -> list[list[Write]]:
    """Group operations into API calls, one list of independent calls per phase."""
    launch: dict[tuple[str, str], list[Operation]] = defaultdict(list)
    for op in ops:
        if op.kind is OpKind.LAUNCH:
            launch[(op.region, op.resource)].append(op)
        else:
            raise NotImplementedError(f"operation kind {op.kind.value} is not supported yet")
    phase2 = [_launch_write(clients, r, i, launch[(r, i)]) for r, i in sorted(launch)]
    return [phase2]


class Applier:
    def __init__(self, clients: Clients, identity: Identity, *, concurrency: int = 16,
                 log: LogSink | None = None,
                 progress: Callable[[Outcome], None] | None = None) -> None:
        self.clients = clients
        self.identity = identity
        self.concurrency = max(1, concurrency)
        self.log = log
        self.progress = progress
        self._lock = threading.Lock()

    def _run(self, write: Write) -> list[Outcome]:
        try:
            write.call()
            outcomes = [Outcome(op, True) for op in write.operations]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            msg = describe_error(exc, write.service, write.api)
            outcomes = [Outcome(op, False, msg) for op in write.operations]
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            for o in outcomes:
                if self.log is not None:
                    self.log({"time": now, "caller": self.identity.arn, "api": write.api,
                              **o.operation.to_dict(),
                              "result": "applied" if o.ok else "failed",
                              **({"error": o.error} if o.error else {})})
                if self.progress is not None:
                    self.progress(o)
        return outcomes

    def apply(self, ops: Sequence[Operation]) -> ApplyReport:
        outcomes: list[Outcome] = []
        for phase in plan_writes(self.clients, ops):
            if not phase:
                continue
            workers = min(self.concurrency, len(phase))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(self._run, phase):
                    outcomes.extend(result)
        return ApplyReport(tuple(outcomes))
