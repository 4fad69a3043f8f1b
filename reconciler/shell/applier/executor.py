"""Executes a plan's operations against AWS, in the order the README's "Apply order" gives.

Phases, each finished before the next starts:
1. KMS key access added (one ``PutKeyPolicy`` per key);
2. launch permissions (one ``ModifyImageAttribute`` per image with all its Add and Remove
   entries) and snapshot copy permissions added (one ``ModifySnapshotAttribute`` per
   snapshot);
3. snapshot copy permissions removed (one call per snapshot);
4. KMS key access removed (one ``PutKeyPolicy`` per key).

Safety between phases: an image or snapshot whose key access could not be granted gets none
of its additions (its consumers could not use them); key access is not removed for a
principal whose launch or copy removal failed (it would hold a permission it cannot use).
A key that has both additions and removals is written twice (phases 1 and 4), each time
from a fresh ``GetKeyPolicy``, so statements edited by others in between are kept.
Within a phase independent resources are written concurrently; a failed write is reported
and the others still run. A run stopped in any phase (SIGINT/SIGTERM: see ``shell/concurrency``)
is reported by :meth:`Applier.settle`: every operation applied, failed, not applied, or
unknown when its write was still in flight.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...core import kms
from ...core.errors import AwsError
from ...core.model import (
    OWNERSHIP_TAG,
    Action,
    Identity,
    Operation,
    OpKind,
    RegionKey,
)
from ...core.plan import Planned
from ..aws import Clients, aws_call, describe_error, release_request_slot
from ..concurrency import Interrupted, parallel_map
from .writes import Partial, Write, WriteError, Writes, split


class Result(enum.StrEnum):
    """What became of one operation (the ``result`` of its ``--log-file`` line)."""

    APPLIED = "applied"
    FAILED = "failed"  # AWS (or the tool, before calling it) refused the write
    SKIPPED = "skipped"  # not attempted: the key access it depends on could not be written
    NOT_APPLIED = "not-applied"  # not attempted: the run was interrupted first
    UNKNOWN = "unknown"  # still in flight when an interrupted run ended: AWS may have applied it


NOT_STARTED = "not applied: interrupted before this write started"
IN_FLIGHT = "in flight when the run was interrupted: AWS may or may not have applied it"


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    ok: bool
    error: str = ""
    result: Result = Result.APPLIED


@dataclass(frozen=True)
class ApplyReport:
    outcomes: tuple[Outcome, ...]

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def applied(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.ok)


LogSink = Callable[[dict[str, Any]], None]

TAG_BATCH = 1000  # EC2 API CreateTags/DeleteTags: up to 1000 resource IDs per call


class Applier:
    @classmethod
    def for_plan(cls, clients: Clients | Mapping[str, Clients], identity: Identity, plan: Planned,
                 grant_shape: kms.GrantShape = kms.GrantShape.AWS_RESOURCE, *,
                 concurrency: int = 16, log: LogSink | None = None,
                 progress: Callable[[Outcome], None] | None = None,
                 stop: threading.Event | None = None) -> Applier:
        """The applier of ``plan``: its key lists and resource owners come from the plan,
        the grant shape from ``settings.kms_grants``; the rest is how this run behaves."""
        return cls(clients, identity, concurrency=concurrency, log=log, progress=progress,
                   resource_keys=plan.apply.resource_keys, stop=stop,
                   resource_owner=plan.apply.resource_owner, grant_shape=grant_shape)

    def __init__(self, clients: Clients | Mapping[str, Clients], identity: Identity, *,
                 concurrency: int = 16,
                 log: LogSink | None = None,
                 progress: Callable[[Outcome], None] | None = None,
                 resource_keys: Mapping[RegionKey, tuple[str, ...]] | None = None,
                 stop: threading.Event | None = None,
                 resource_owner: Mapping[RegionKey, str] | None = None,
                 grant_shape: kms.GrantShape = kms.GrantShape.AWS_RESOURCE) -> None:
        """Launch and copy writes carry Add/Remove deltas and key writes re-read the policy
        they change, so a write never undoes what someone else changed since the plan (the
        saved-plan check compares the state the plan was made from just before applying).
        ``stop``: once set, no new write starts (the in-flight ones
        finish) and the remaining operations are reported as not applied. ``clients`` may
        map owner accounts to their clients; ``resource_owner`` then says which owner writes
        each (region, resource)."""
        self.clients = clients
        self.resource_owner = resource_owner or {}
        self.identity = identity
        self.concurrency = max(1, concurrency)
        self.log = log
        self.progress = progress
        self.resource_keys = resource_keys or {}
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()
        self.writes = Writes(self._client, identity, grant_shape)
        # What ran so far, kept here rather than returned, so that a run interrupted in any
        # phase can still be reported (see settle).
        self._outcomes: list[Outcome] = []
        self._running: dict[object, tuple[Operation, ...]] = {}  # calls in flight
        self._ended = threading.Condition(self._lock)  # a call in flight ended
        self._settled = False  # after settle(): nothing more is recorded or logged

    def _client(self, service: str, region: str, resource: str) -> Any:
        if isinstance(self.clients, Clients):
            return self.clients.get(service, region)
        owner = self.resource_owner.get(RegionKey(region, resource))
        if owner is None or owner not in self.clients:
            raise WriteError(f"no credentials for the owner of {resource}")
        return self.clients[owner].get(service, region)

    # ------------------------------------------------------------------ running

    def _attempt(self, write: Write) -> tuple[bool, str, Result, Partial | None]:
        """Run one write: (ok, error message, log result, the operations that failed alone)."""
        if self.stop.is_set():
            return False, NOT_STARTED, Result.NOT_APPLIED, None
        if write.skipped:
            return False, write.skipped, Result.SKIPPED, None
        try:
            partial = write.call()
            return True, "", Result.APPLIED, partial if isinstance(partial, Partial) else None
        except Interrupted as exc:  # the run stopped before one of this write's requests
            if exc.retrying and exc.action == write.api:
                return (False, f"interrupted before {write.api} was retried: AWS did not "
                        "confirm the earlier attempt, which may have been applied",
                        Result.FAILED, None)
            return False, NOT_STARTED, Result.NOT_APPLIED, None
        except (WriteError, kms.PolicyError) as exc:
            return False, f"{write.service}:{write.api} refused: {exc}", Result.FAILED, None
        except AwsError as exc:  # a read before the write failed; the message names it
            return False, str(exc), Result.FAILED, None
        except Exception as exc:  # whatever AWS, a proxy or the SDK answered: a failed write
            return False, describe_error(exc, write.service, write.api), Result.FAILED, None
        finally:
            release_request_slot()  # even when the answer could not be read

    def _run(self, write: Write) -> list[Outcome]:
        with self._in_flight(write.operations):
            ok, error, result, partial = self._attempt(write)
            failed = partial.failed if partial is not None else {}
            outcomes = [Outcome(op, False, failed[op], Result.FAILED) if op in failed
                        else Outcome(op, ok, error, result) for op in write.operations]
            self._record(write.api, outcomes)
        return outcomes

    @contextlib.contextmanager
    def _in_flight(self, operations: tuple[Operation, ...]) -> Iterator[None]:
        """A call (a write, or a tag batch) in flight, for :meth:`settle` to wait for."""
        token = object()
        with self._lock:
            self._running[token] = operations
        try:
            yield
        finally:
            with self._lock:
                del self._running[token]
                self._ended.notify_all()

    def _record(self, api: str, outcomes: Sequence[Outcome]) -> None:
        """Keep, log and show outcomes (unless the run was settled without them)."""
        with self._lock:
            if not self._settled:
                self._keep(api, outcomes)

    def _keep(self, api: str, outcomes: Sequence[Outcome]) -> None:  # holding self._lock
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self._outcomes.extend(outcomes)
        for o in outcomes:
            if self.log is not None:
                op = o.operation
                owner = self.resource_owner.get(RegionKey(op.region, op.resource))
                self.log({"time": now, "caller": self.identity.arn, "api": api,
                          **({"owner": owner} if owner else {}),
                          **op.to_dict(),
                          "result": o.result.value,
                          **({"error": o.error} if o.error else {})})
            if self.progress is not None:
                self.progress(o)

    def settle(self, ops: Sequence[Operation], until: float) -> ApplyReport:
        """The report of a run interrupted in any phase. The calls in flight get until
        ``until`` (``time.monotonic()``) to end; then each of ``ops`` is what it became, or
        unknown when its write is still in flight, or not applied. Those two are logged as
        such, and nothing is recorded after."""
        with self._lock:
            while self._running and (left := until - time.monotonic()) > 0:
                self._ended.wait(left)
            running = {op for ops_ in self._running.values() for op in ops_}
            done = {o.operation for o in self._outcomes}
            for op in ops:
                if op not in done:
                    self._keep(_API[op.kind], [
                        Outcome(op, False, IN_FLIGHT, Result.UNKNOWN) if op in running
                        else Outcome(op, False, NOT_STARTED, Result.NOT_APPLIED)])
            self._settled = True
            return ApplyReport(tuple(self._outcomes))

    def _phase(self, writes: list[Write]) -> list[Outcome]:
        """One phase's writes, Regions and owner accounts interleaved (separate buckets)."""
        done = parallel_map(self._run, writes, self.concurrency, self._bucket_of)
        return [o for result in done for o in result]

    def _bucket_of(self, write: Write) -> tuple[str, str]:
        if not write.operations:
            return ("", "")
        op = write.operations[0]
        return (self.resource_owner.get(RegionKey(op.region, op.resource), ""), op.region)

    def tag_calls(self, resources: Sequence[tuple[str, str]], value: str,
                  add: bool) -> tuple[int, list[str]]:
        """``CreateTags``/``DeleteTags`` of ``OWNERSHIP_TAG=value`` on (region, ID) pairs,
        batched per owner account and Region; (resources written, error messages)."""
        api = "CreateTags" if add else "DeleteTags"
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for region, rid in sorted(resources):
            groups[(self.resource_owner.get(RegionKey(region, rid), ""), region)].append(rid)
        tags = [{"Key": OWNERSHIP_TAG, "Value": value}]

        def call(batch: tuple[str, list[str]]) -> tuple[int, str]:
            region, ids = batch
            with self._in_flight(()):
                if self.stop.is_set():  # Ctrl-C, or the log cannot be written: no new write
                    return 0, ""
                try:
                    with aws_call("ec2", api, region):
                        client = self._client("ec2", region, ids[0])
                        if add:
                            client.create_tags(Resources=ids, Tags=tags)
                        else:
                            client.delete_tags(Resources=ids, Tags=tags)
                except (AwsError, WriteError) as exc:
                    self._log_tags(api, region, ids, value, str(exc))
                    return 0, (f"{api} of {OWNERSHIP_TAG}={value} on {len(ids)} resource(s) "
                               f"in {region} ({ids[0]}...): {exc}")
                self._log_tags(api, region, ids, value, "")
                return len(ids), ""

        batches = [(region, ids[i:i + TAG_BATCH]) for (_, region), ids in sorted(groups.items())
                   for i in range(0, len(ids), TAG_BATCH)]
        # One at a time, as before, but on a worker: a signal in the main thread never lands
        # in the middle of a call and its log line.
        results = parallel_map(call, batches, 1)
        return sum(n for n, _ in results), [error for _, error in results if error]

    # ------------------------------------------------------------------ bookkeeping writes

    def client(self, service: str, region: str, resource: str) -> Any:
        """The client of the account that owns ``resource`` (WriteError: none)."""
        return self._client(service, region, resource)

    def in_flight(self) -> contextlib.AbstractContextManager[None]:
        """A bookkeeping call in flight (no operation of the plan), for :meth:`settle`."""
        return self._in_flight(())

    def log_bookkeeping(self, record: Mapping[str, Any]) -> None:
        """One ``--log-file`` line for a bookkeeping write on ``record``'s region and
        resource, stamped like the operations' (time, caller, owner)."""
        if self.log is None:
            return
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        owner = self.resource_owner.get(RegionKey(str(record.get("region", "")),
                                                  str(record.get("resource", ""))))
        with self._lock:
            if not self._settled:
                self.log({"time": now, "caller": self.identity.arn,
                          **({"owner": owner} if owner else {}), **record})

    def _log_tags(self, api: str, region: str, ids: Sequence[str], value: str,
                  error: str) -> None:
        if self.log is None:
            return
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            if self._settled:
                return
            for rid in ids:
                self.log({"time": now, "caller": self.identity.arn, "api": api,
                          "action": "tag" if api == "CreateTags" else "untag",
                          "kind": "ownership_tag", "region": region, "resource": rid,
                          "tag": f"{OWNERSHIP_TAG}={value}",
                          "result": (Result.FAILED if error else Result.APPLIED).value,
                          **({"error": error} if error else {})})

    def _denied(self, region: str, resource: str, op: Operation,
                denied: Mapping[str, set[kms.Grantee] | None]) -> str:
        """Why ``op`` (an add on an image or snapshot) must not run: key access for its
        principal (or for every principal: None) could not be granted; "" when it may."""
        grantee = kms.grantee_of(op.principal)
        for key in self.resource_keys.get(RegionKey(region, resource), ()):
            if key in denied and (denied[key] is None or grantee in (denied[key] or set())):
                return f"skipped: access to KMS key {key} could not be granted"
        return ""

    def _gated(self, writes: list[Write], denied: Mapping[str, set[kms.Grantee] | None],
               make: Callable[[list[Operation]], list[Write]], region: str,
               resource: str, ops: Sequence[Operation]) -> None:
        """Add the writes for ``ops``, leaving out (reported) the adds whose key access failed."""
        blocked: dict[str, list[Operation]] = defaultdict(list)
        allowed = []
        for op in ops:
            why = self._denied(region, resource, op, denied) if op.action is Action.ADD else ""
            if why:
                blocked[why].append(op)
            else:
                allowed.append(op)
        for why, skipped in blocked.items():
            api = "ModifyImageAttribute" if skipped[0].kind is OpKind.LAUNCH else "ModifySnapshotAttribute"
            writes.append(Write("ec2", api, tuple(skipped), lambda: None, why))
        if allowed:
            writes.extend(make(allowed))

    def apply(self, ops: Sequence[Operation]) -> ApplyReport:
        p = split(ops)
        outcomes: list[Outcome] = []

        # 1. key access added
        outcomes += self._phase([self.writes.key_write(r, k, o, Action.ADD)
                                 for (r, k), o in sorted(p.key_adds.items())])
        denied: dict[str, set[kms.Grantee] | None] = {}
        for key, key_outcomes in _by_key(outcomes).items():
            lost = {kms.grantee_of(o.operation.principal) for o in key_outcomes if not o.ok}
            if lost:
                all_lost = all(not o.ok for o in key_outcomes)
                denied[key] = None if all_lost else {g for g in lost if g is not None}
        failed_keys = {k for k, v in denied.items() if v is None}

        # 2. launch permissions, copy permissions added
        writes: list[Write] = []
        for (region, image_id), image_ops in sorted(p.launch.items()):
            self._gated(writes, denied,
                        functools.partial(self.writes.launch_writes, region, image_id),
                        region, image_id, image_ops)
        for (region, snap), snap_ops in sorted(p.copy_adds.items()):
            self._gated(writes, denied,
                        functools.partial(self.writes.copy_writes, region, snap, Action.ADD),
                        region, snap, snap_ops)
        outcomes += self._phase(writes)

        # 3. copy permissions removed
        outcomes += self._phase([w for (r, s), o in sorted(p.copy_removes.items())
                                 for w in self.writes.copy_writes(r, s, Action.REMOVE, o)])

        # 4. key access removed — never while a removal it backs has failed
        stranded = {(k, kms.grantee_of(o.operation.principal))
                    for o in outcomes if not o.ok and o.operation.action is Action.REMOVE
                    for k in self.resource_keys.get(RegionKey(o.operation.region, o.operation.resource), ())}
        writes = []
        for (region, key), key_ops in sorted(p.key_removes.items()):
            if key in failed_keys:
                writes.append(Write("kms", "PutKeyPolicy", tuple(key_ops), lambda: None,
                                    "skipped: adding access to this key failed earlier in the run"))
                continue
            keep = [o for o in key_ops if (key, kms.grantee_of(o.principal)) in stranded]
            if keep:
                writes.append(Write("kms", "PutKeyPolicy", tuple(keep), lambda: None,
                                    "skipped: the launch/copy permission it backs was not removed"))
            rest = [o for o in key_ops if (key, kms.grantee_of(o.principal)) not in stranded]
            if rest:
                writes.append(self.writes.key_write(region, key, rest, Action.REMOVE))
        outcomes += self._phase(writes)
        return ApplyReport(tuple(outcomes))


_API = {OpKind.LAUNCH: "ModifyImageAttribute", OpKind.COPY: "ModifySnapshotAttribute",
        OpKind.KMS: "PutKeyPolicy"}  # the call that writes each kind of operation


def _by_key(outcomes: Sequence[Outcome]) -> dict[str, list[Outcome]]:
    out: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        out[o.operation.resource].append(o)
    return out
