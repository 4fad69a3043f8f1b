"""The AWS write calls of an apply: which call carries which operations, what each call
is (with the partial failures AWS allows it), and how many a plan makes.

One ``ModifyImageAttribute`` per image with all its Add and Remove entries; one
``ModifySnapshotAttribute`` per snapshot and direction (per 500 principals); per key and
phase a ``GetKeyPolicy`` and a ``PutKeyPolicy``. :class:`~.executor.Applier` runs them.
"""

from __future__ import annotations

import collections
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from ...core import kms
from ...core.model import (
    Action,
    Arn,
    Identity,
    Operation,
    OpKind,
    RegionKey,
    by_resource,
)
from ..aws import aws_call, describe_error, error_code


class WriteError(Exception):
    """A write refused before calling AWS (e.g. a policy over the size limit)."""


@dataclass(frozen=True)
class Partial:
    """A write that went through for some of its operations only: these failed, and why."""

    failed: Mapping[Operation, str]


@dataclass(frozen=True)
class Write:
    """One API call and the operations it carries."""

    service: str
    api: str
    operations: tuple[Operation, ...]
    call: Callable[[], Partial | None]
    skipped: str = ""  # non-empty: do not call; report the operations failed with this


SNAPSHOT_MODIFICATIONS = 500  # EC2 API ModifySnapshotAttribute: at most 500 per operation
MAX_PRINCIPAL_PROBES = 20  # PutKeyPolicy retries to find accounts KMS refuses, per key
MALFORMED_POLICY = "MalformedPolicyDocumentException"
# ModifyImageAttribute refusals of an entry of the call (an unknown or malformed account, a
# public share AWS does not allow), not of the call itself (permissions, throttling).
ENTRY_REFUSALS = frozenset({"InvalidAMIAttributeItemValue", "InvalidUserID.Malformed",
                            "InvalidParameterValue", "InvalidParameter",
                            "InvalidParameterCombination", "OperationNotPermitted",
                            "UnsupportedOperation", "ResourceLimitExceeded"})


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
        return by_resource([o for o in ops if o.kind is kind
                             and (action is None or o.action is action)])

    return _Plan(pick(OpKind.KMS, Action.ADD), pick(OpKind.KMS, Action.REMOVE),
                 pick(OpKind.LAUNCH), pick(OpKind.COPY, Action.ADD), pick(OpKind.COPY, Action.REMOVE))


def write_calls(ops: Sequence[Operation], resource_owner: Mapping[RegionKey, str]
                ) -> dict[str, collections.Counter[tuple[str, str, str]]]:
    """The AWS calls :meth:`Applier.apply` makes for ``ops`` when nothing fails, per owner
    account, as (Region, service, action) → count: one ``ModifyImageAttribute`` per image,
    one ``ModifySnapshotAttribute`` per snapshot and direction (per 500 principals), and per
    key and phase a ``GetKeyPolicy`` and a ``PutKeyPolicy``."""
    p = split(ops)
    out: dict[str, collections.Counter[tuple[str, str, str]]] = defaultdict(collections.Counter)

    def count(region: str, resource: str, service: str, action: str, n: int = 1) -> None:
        out[resource_owner.get(RegionKey(region, resource), "")][(region, service, action)] += n

    for (region, image_id) in p.launch:
        count(region, image_id, "ec2", "ModifyImageAttribute")
    for (region, snap), snap_ops in (*p.copy_adds.items(), *p.copy_removes.items()):
        count(region, snap, "ec2", "ModifySnapshotAttribute",
              -(-len(snap_ops) // SNAPSHOT_MODIFICATIONS))
    for (region, key) in (*p.key_adds, *p.key_removes):
        count(region, key, "kms", "GetKeyPolicy")
        count(region, key, "kms", "PutKeyPolicy")
    return dict(out)


# (service, Region, resource) -> the client of the owner account that writes the resource
ClientOf = Callable[[str, str, str], Any]


class Writes:
    """Builds the :class:`Write` for each resource of one run."""

    def __init__(self, client: ClientOf, identity: Identity,
                 grant_shape: kms.GrantShape) -> None:
        """``grant_shape``: ``settings.kms_grants``, how key grants are written."""
        self._client = client
        self.identity = identity
        self.grant_shape = grant_shape

    # ------------------------------------------------------------------ calls

    def _launch_write(self, region: str, image_id: str, ops: Sequence[Operation]) -> Write:
        adds = [o for o in ops if o.action is Action.ADD]
        removes = [o for o in ops if o.action is Action.REMOVE]

        def modify(entries: dict[str, Any]) -> None:
            self._client("ec2", region, image_id).modify_image_attribute(
                ImageId=image_id, Attribute="launchPermission", LaunchPermission=entries)

        def call() -> Partial | None:
            perm = {k: [o.principal.to_dict() for o in v]
                    for k, v in (("Add", adds), ("Remove", removes)) if v}
            try:
                modify(perm)
            except botocore.exceptions.ClientError as exc:
                if not (adds and removes) or error_code(exc) not in ENTRY_REFUSALS:
                    raise
                # AWS refuses the whole call for one bad Add (an unknown account, say): the
                # removals, often revocations that matter, must not be lost with it.
                modify({"Remove": perm["Remove"]})
                why = describe_error(exc, "ec2", "ModifyImageAttribute")
                return Partial({o: f"{why} (the removals of this call were retried alone "
                                   "and applied)" for o in adds})
            return None

        return Write("ec2", "ModifyImageAttribute", tuple(ops), call)

    def launch_writes(self, region: str, image_id: str, ops: Sequence[Operation]) -> list[Write]:
        return [self._launch_write(region, image_id, ops)]

    def copy_writes(self, region: str, snapshot_id: str, action: Action,
                     ops: Sequence[Operation]) -> list[Write]:
        """One call per direction, at most :data:`SNAPSHOT_MODIFICATIONS` entries each."""
        ordered = sorted(ops, key=lambda o: o.principal.sort_key)
        writes = []
        for i in range(0, len(ordered), SNAPSHOT_MODIFICATIONS):
            chunk = ordered[i:i + SNAPSHOT_MODIFICATIONS]
            users = [o.principal.value for o in chunk if not o.principal.is_public]
            groups = ["all"] if any(o.principal.is_public for o in chunk) else []
            # The OperationType form: AWS accepts it, and one call may only add or only remove.
            params: dict[str, Any] = {"SnapshotId": snapshot_id,
                                      "Attribute": "createVolumePermission",
                                      "OperationType": action.value}
            if users:
                params["UserIds"] = users
            if groups:
                params["GroupNames"] = groups

            def call(params: dict[str, Any] = params) -> None:
                self._client("ec2", region, snapshot_id).modify_snapshot_attribute(**params)

            writes.append(Write("ec2", "ModifySnapshotAttribute", tuple(chunk), call))
        return writes

    def key_write(self, region: str, key_arn: str, ops: Sequence[Operation],
                   action: Action) -> Write:
        partition = Arn.parse(key_arn).partition or self.identity.partition

        def call() -> Partial | None:
            client = self._client("kms", region, key_arn)
            with aws_call("kms", "GetKeyPolicy", key_arn):
                text = client.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
            current = kms.parse_policy(text)
            before = kms.owned_grantees(current)
            changed = {g for g in (kms.grantee_of(o.principal) for o in ops) if g is not None}
            after = before | changed if action is Action.ADD else before - changed

            def put(grantees: set[kms.Grantee]) -> None:
                new = kms.with_grantees(current, grantees, partition, self.grant_shape)
                size = kms.policy_bytes(new)
                if size > kms.MAX_POLICY_BYTES:
                    raise WriteError(f"the new policy would be {size:,} bytes, over the KMS "
                                     f"limit of {kms.MAX_POLICY_BYTES:,}; nothing written")
                # The lockout safety check stays on (BypassPolicyLockoutSafetyCheck=False).
                client.put_key_policy(KeyId=key_arn, PolicyName="default",
                                      Policy=kms.serialize(new),
                                      BypassPolicyLockoutSafetyCheck=False)

            try:
                put(after)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != MALFORMED_POLICY or action is not Action.ADD:
                    raise
                bad = self._find_bad_accounts(put, before, changed - before, exc)
                why = describe_error(exc, "kms", "PutKeyPolicy")
                return Partial({o: f"{why} (this account does not exist or is not visible to "
                                   "KMS; the key's other principals were written without it)"
                                for o in ops if kms.grantee_of(o.principal) in bad})
            return None

        return Write("kms", "PutKeyPolicy", tuple(ops), call)

    @staticmethod
    def _find_bad_accounts(put: Callable[[set[kms.Grantee]], None], before: set[kms.Grantee],
                           new: set[kms.Grantee], refusal: Exception) -> set[kms.Grantee]:
        """KMS refuses a whole policy for one principal that does not exist
        (MalformedPolicyDocumentException): try each new account once, on top of what is
        known to be good, and return the ones refused. Bounded; re-raises ``refusal`` when
        the culprit is not a single new account."""
        suspects = sorted(g for g in new if g.kind is kms.GranteeKind.ACCOUNT)
        good = before | (new - set(suspects))  # organizations and OUs are conditions
        if not suspects or len(suspects) > MAX_PRINCIPAL_PROBES:
            raise refusal
        bad = set()
        for g in suspects:
            try:
                put(good | {g})
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != MALFORMED_POLICY:
                    raise
                bad.add(g)
                continue
            good.add(g)
        if bad == set(suspects):
            try:  # every new account was refused: is the policy good without any of them?
                put(good)
            except botocore.exceptions.ClientError:
                raise refusal from None  # the culprit is not an account: nothing was written
        return bad
