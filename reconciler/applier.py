"""Executes a plan's operations against AWS, in the order SPEC §7 requires.

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
and the others still run.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import kms
from .aws import Clients, aws_call, describe_error
from .errors import AwsError
from .model import Action, Identity, Operation, OpKind, Principal


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


class WriteError(Exception):
    """A write refused before calling AWS (e.g. a policy over the size limit)."""


@dataclass(frozen=True)
class Write:
    """One API call and the operations it carries."""

    service: str
    api: str
    operations: tuple[Operation, ...]
    call: Callable[[], Any]
    skipped: str = ""  # non-empty: do not call; report the operations failed with this
    verify: Callable[[], str] | None = None  # re-read just before writing: "" or why not


LogSink = Callable[[dict[str, Any]], None]


def _by_resource(ops: Sequence[Operation]) -> dict[tuple[str, str], list[Operation]]:
    out: dict[tuple[str, str], list[Operation]] = defaultdict(list)
    for op in ops:
        out[(op.region, op.resource)].append(op)
    return out


@dataclass
class _Plan:
    """The operations split by phase and resource."""

    key_adds: dict[tuple[str, str], list[Operation]] = field(default_factory=dict)
    key_removes: dict[tuple[str, str], list[Operation]] = field(default_factory=dict)
    launch: dict[tuple[str, str], list[Operation]] = field(default_factory=dict)
    copy_adds: dict[tuple[str, str], list[Operation]] = field(default_factory=dict)
    copy_removes: dict[tuple[str, str], list[Operation]] = field(default_factory=dict)


def split(ops: Sequence[Operation]) -> _Plan:
    def pick(kind: OpKind, action: Action | None = None) -> dict[tuple[str, str], list[Operation]]:
        return _by_resource([o for o in ops if o.kind is kind
                             and (action is None or o.action is action)])

    return _Plan(pick(OpKind.KMS, Action.ADD), pick(OpKind.KMS, Action.REMOVE),
                 pick(OpKind.LAUNCH), pick(OpKind.COPY, Action.ADD), pick(OpKind.COPY, Action.REMOVE))


class Applier:
    def __init__(self, clients: Clients | Mapping[str, Clients], identity: Identity, *,
                 concurrency: int = 16,
                 log: LogSink | None = None,
                 progress: Callable[[Outcome], None] | None = None,
                 resource_keys: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
                 expected: Mapping[tuple[str, str, str], Any] | None = None,
                 stop: threading.Event | None = None,
                 resource_owner: Mapping[tuple[str, str], str] | None = None,
                 grant_shape: kms.GrantShape = kms.GrantShape.AWS_RESOURCE) -> None:
        """``expected``: the state the plan was computed from, by (kind, region, resource);
        when given, each image and snapshot is re-read just before its first write and
        skipped if it changed. ``stop``: once set, no new write starts (the in-flight ones
        finish) and the remaining operations are reported as not applied. ``clients`` may
        map owner accounts to their clients; ``resource_owner`` then says which owner writes
        each (region, resource)."""
        self.clients = clients
        self.resource_owner = resource_owner or {}
        self.grant_shape = grant_shape  # settings.kms_grants: how key grants are written
        self.identity = identity
        self.concurrency = max(1, concurrency)
        self.log = log
        self.progress = progress
        self.resource_keys = resource_keys or {}
        self.expected = expected
        self.stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._checked: dict[tuple[str, str, str], str] = {}  # resource -> drift message or ""

    def _client(self, service: str, region: str, resource: str) -> Any:
        if isinstance(self.clients, Clients):
            return self.clients.get(service, region)
        owner = self.resource_owner.get((region, resource))
        if owner is None or owner not in self.clients:
            raise WriteError(f"no credentials for the owner of {resource}")
        return self.clients[owner].get(service, region)

    # ------------------------------------------------------------------ re-reading

    def _verifier(self, kind: OpKind, region: str, resource: str) -> Callable[[], str] | None:
        if self.expected is None:
            return None
        key = (kind.value, region, resource)

        def verify() -> str:
            with self._lock:
                if key in self._checked:
                    return self._checked[key]
            ec2 = self._client("ec2", region, resource)
            if kind is OpKind.LAUNCH:
                with aws_call("ec2", "DescribeImageAttribute", f"{region} {resource}"):
                    resp = ec2.describe_image_attribute(ImageId=resource,
                                                        Attribute="launchPermission")
                    entries = resp.get("LaunchPermissions") or []
                    current = frozenset(Principal.from_dict(e) for e in entries)
            else:
                with aws_call("ec2", "DescribeSnapshotAttribute", f"{region} {resource}"):
                    resp = ec2.describe_snapshot_attribute(SnapshotId=resource,
                                                           Attribute="createVolumePermission")
                    entries = resp.get("CreateVolumePermissions") or []
                    current = frozenset(Principal.from_dict(e) for e in entries)
            planned = self.expected.get(key) if self.expected is not None else None
            why = "" if current == planned else (
                f"skipped: {resource} changed since the plan was made (someone else modified "
                "its permissions); run plan again")
            with self._lock:
                self._checked[key] = why
            return why

        return verify

    # ------------------------------------------------------------------ calls

    def _launch_write(self, region: str, image_id: str, ops: Sequence[Operation]) -> Write:
        perm: dict[str, Any] = {}
        adds = [o.principal.to_dict() for o in ops if o.action is Action.ADD]
        removes = [o.principal.to_dict() for o in ops if o.action is Action.REMOVE]
        if adds:
            perm["Add"] = adds
        if removes:
            perm["Remove"] = removes

        def call() -> Any:
            return self._client("ec2", region, image_id).modify_image_attribute(
                ImageId=image_id, Attribute="launchPermission", LaunchPermission=perm)

        return Write("ec2", "ModifyImageAttribute", tuple(ops), call,
                     verify=self._verifier(OpKind.LAUNCH, region, image_id))

    def _copy_write(self, region: str, snapshot_id: str, action: Action,
                    ops: Sequence[Operation]) -> Write:
        users = [o.principal.value for o in ops if not o.principal.is_public]
        groups = ["all"] if any(o.principal.is_public for o in ops) else []
        # The OperationType form: AWS accepts it, and one call may only add or only remove.
        params: dict[str, Any] = {"SnapshotId": snapshot_id, "Attribute": "createVolumePermission",
                                  "OperationType": action.value}
        if users:
            params["UserIds"] = users
        if groups:
            params["GroupNames"] = groups

        def call() -> Any:
            return self._client("ec2", region, snapshot_id).modify_snapshot_attribute(**params)

        return Write("ec2", "ModifySnapshotAttribute", tuple(ops), call,
                     verify=self._verifier(OpKind.COPY, region, snapshot_id))

    def _key_write(self, region: str, key_arn: str, ops: Sequence[Operation],
                   action: Action) -> Write:
        partition = key_arn.split(":")[1] if key_arn.count(":") >= 5 else self.identity.partition

        def call() -> Any:
            client = self._client("kms", region, key_arn)
            with aws_call("kms", "GetKeyPolicy", key_arn):
                text = client.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
            current = kms.parse_policy(text)
            grantees = kms.owned_grantees(current)
            changed = {g for g in (kms.grantee_of(o.principal) for o in ops) if g is not None}
            grantees = grantees | changed if action is Action.ADD else grantees - changed
            new = kms.with_grantees(current, grantees, partition, self.grant_shape)
            size = kms.policy_bytes(new)
            if size > kms.MAX_POLICY_BYTES:
                raise WriteError(f"the new policy would be {size:,} bytes, over the KMS limit "
                                 f"of {kms.MAX_POLICY_BYTES:,}; nothing written")
            # The lockout safety check stays on (BypassPolicyLockoutSafetyCheck=False).
            return client.put_key_policy(KeyId=key_arn, PolicyName="default",
                                         Policy=kms.serialize(new),
                                         BypassPolicyLockoutSafetyCheck=False)

        return Write("kms", "PutKeyPolicy", tuple(ops), call)

    # ------------------------------------------------------------------ running

    def _attempt(self, write: Write) -> tuple[bool, str, str]:
        """Run one write: (ok, error message, log result)."""
        if self.stop.is_set():
            return False, "not applied: interrupted before this write started", "not-applied"
        if write.skipped:
            return False, write.skipped, "skipped"
        try:
            why = write.verify() if write.verify is not None else ""
            if why:
                return False, why, "skipped"
            write.call()
            return True, "", "applied"
        except (WriteError, kms.PolicyError) as exc:
            return False, f"{write.service}:{write.api} refused: {exc}", "failed"
        except AwsError as exc:  # a read before the write failed; the message names it
            return False, str(exc), "failed"
        except Exception as exc:  # whatever AWS, a proxy or the SDK answered: a failed write
            return False, describe_error(exc, write.service, write.api), "failed"

    def _run(self, write: Write) -> list[Outcome]:
        ok, error, result = self._attempt(write)
        outcomes = [Outcome(op, ok, error) for op in write.operations]
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            for o in outcomes:
                if self.log is not None:
                    op = o.operation
                    owner = self.resource_owner.get((op.region, op.resource))
                    self.log({"time": now, "caller": self.identity.arn, "api": write.api,
                              **({"owner": owner} if owner else {}),
                              **op.to_dict(), "result": result,
                              **({"error": o.error} if o.error else {})})
                if self.progress is not None:
                    self.progress(o)
        return outcomes

    def _phase(self, writes: list[Write]) -> list[Outcome]:
        if not writes:
            return []
        if len(writes) == 1 or self.concurrency == 1:
            return [o for w in writes for o in self._run(w)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(writes))) as pool:
            return [o for result in pool.map(self._run, writes) for o in result]

    def _blocked_by(self, region: str, resource: str, failed_keys: set[str]) -> str:
        bad = [k for k in self.resource_keys.get((region, resource), ()) if k in failed_keys]
        return f"skipped: access to KMS key {bad[0]} could not be granted" if bad else ""

    def apply(self, ops: Sequence[Operation]) -> ApplyReport:
        p = split(ops)
        outcomes: list[Outcome] = []

        # 1. key access added
        outcomes += self._phase([self._key_write(r, k, o, Action.ADD)
                                 for (r, k), o in sorted(p.key_adds.items())])
        failed_keys = {o.operation.resource for o in outcomes if not o.ok}

        # 2. launch permissions, copy permissions added
        writes: list[Write] = []
        for (region, image_id), image_ops in sorted(p.launch.items()):
            why = self._blocked_by(region, image_id, failed_keys)
            adds = [o for o in image_ops if o.action is Action.ADD]
            if why and adds:
                writes.append(Write("ec2", "ModifyImageAttribute", tuple(adds), lambda: None, why))
                image_ops = [o for o in image_ops if o.action is Action.REMOVE]
            if image_ops:
                writes.append(self._launch_write(region, image_id, image_ops))
        for (region, snap), snap_ops in sorted(p.copy_adds.items()):
            why = self._blocked_by(region, snap, failed_keys)
            w = self._copy_write(region, snap, Action.ADD, snap_ops)
            writes.append(Write(w.service, w.api, w.operations, w.call, why) if why else w)
        outcomes += self._phase(writes)

        # 3. copy permissions removed
        outcomes += self._phase([self._copy_write(r, s, Action.REMOVE, o)
                                 for (r, s), o in sorted(p.copy_removes.items())])

        # 4. key access removed — never while a removal it backs has failed
        stranded = {(k, kms.grantee_of(o.operation.principal))
                    for o in outcomes if not o.ok and o.operation.action is Action.REMOVE
                    for k in self.resource_keys.get((o.operation.region, o.operation.resource), ())}
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
                writes.append(self._key_write(region, key, rest, Action.REMOVE))
        outcomes += self._phase(writes)
        return ApplyReport(tuple(outcomes))
