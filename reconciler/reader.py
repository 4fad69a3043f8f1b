"""Reads current state from AWS. The only module besides the applier that calls AWS.

Calls made by a plan (and nothing else):
* ``sts:GetCallerIdentity`` once;
* ``ec2:DescribeImages`` (``Owners=['self']``, paginated) once per Region;
* ``ec2:DescribeImageAttribute launchPermission`` once per *managed* image;
* ``ec2:GetImageBlockPublicAccessState`` once per Region, only where a public share
  would be added;
* ``ec2:DescribeSnapshots`` for the managed images' snapshots, batched by ID list;
* ``ec2:DescribeSnapshotAttribute createVolumePermission`` once per snapshot of an image
  whose rules use ``copy``;
* ``kms:DescribeKey`` and ``kms:GetKeyPolicy`` once per distinct key, and
  ``kms:ListAliases`` once per Region that has such keys (KMS mode not ``off``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import botocore.exceptions

from .aws import Clients, describe_error, error_code
from .errors import AwsError
from .kms import KeyInfo
from .model import Identity, Image, Principal, Snapshot
from .progress import NoProgress, Progress

SNAPSHOT_BATCH = 200
ACCESS_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
T = TypeVar("T")
R = TypeVar("R")


def parse_image(raw: dict[str, Any], region: str) -> Image:
    snaps: list[str] = []
    encrypted = False
    for bdm in raw.get("BlockDeviceMappings") or []:
        ebs = bdm.get("Ebs") or {}
        if ebs.get("SnapshotId"):
            snaps.append(ebs["SnapshotId"])
        encrypted = encrypted or bool(ebs.get("Encrypted"))
    tags = tuple(sorted((t["Key"], t.get("Value", "")) for t in raw.get("Tags") or []))
    return Image(
        image_id=raw["ImageId"],
        region=region,
        owner_id=raw.get("OwnerId", ""),
        name=raw.get("Name", ""),
        state=raw.get("State", "available"),
        public=bool(raw.get("Public")),
        tags=tags,
        snapshot_ids=tuple(snaps),
        encrypted=encrypted,
    )


def parse_launch_permissions(entries: Iterable[dict[str, Any]], image_id: str) -> frozenset[Principal]:
    out = set()
    for entry in entries:
        try:
            out.add(Principal.from_dict(entry))
        except ValueError as exc:
            # Refuse to plan rather than prune a permission we do not understand.
            raise AwsError(f"{image_id}: unexpected launch permission {entry!r}: {exc}") from None
    return frozenset(out)


class Reader:
    def __init__(self, clients: Clients, concurrency: int = 16) -> None:
        self.clients = clients
        self.concurrency = max(1, concurrency)
        self._identity: Identity | None = None
        self.progress: Progress = NoProgress()

    def map(self, fn: Callable[[T], R], items: Sequence[T], label: str = "") -> list[R]:
        """Run ``fn`` over ``items`` on the bounded pool; results keep the input order.

        With a ``label``, progress is reported (a bar on a terminal for long runs)."""
        if label:
            self.progress.start(label, len(items))
            inner = fn

            def fn(item: T) -> R:
                result = inner(item)
                self.progress.advance()
                return result

        try:
            if len(items) <= 1 or self.concurrency == 1:
                return [fn(i) for i in items]
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
                return list(pool.map(fn, items))
        finally:
            if label:
                self.progress.finish()

    def identity(self) -> Identity:
        """The caller, from one ``GetCallerIdentity`` call per run."""
        if self._identity is not None:
            return self._identity
        try:
            resp = self.clients.get("sts").get_caller_identity()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise AwsError(describe_error(exc, "sts", "GetCallerIdentity")) from None
        self._identity = Identity(account=resp["Account"], arn=resp["Arn"])
        return self._identity

    def list_images(self, region: str) -> list[Image]:
        """Every image the caller owns in ``region`` (disabled ones included, to warn on them)."""
        ec2 = self.clients.get("ec2", region)
        images: list[Image] = []
        try:
            for page in ec2.get_paginator("describe_images").paginate(
                    Owners=["self"], IncludeDisabled=True, IncludeDeprecated=True):
                images.extend(parse_image(raw, region) for raw in page.get("Images", []))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise AwsError(f"{region}: {describe_error(exc, 'ec2', 'DescribeImages')}") from None
        return sorted(images, key=lambda i: i.image_id)

    def list_all_images(self, regions: Sequence[str]) -> dict[str, list[Image]]:
        return dict(zip(regions, self.map(self.list_images, list(regions)), strict=True))

    def launch_permissions(self, image: Image) -> frozenset[Principal]:
        ec2 = self.clients.get("ec2", image.region)
        try:
            resp = ec2.describe_image_attribute(ImageId=image.image_id, Attribute="launchPermission")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise AwsError(f"{image.region} {image.image_id}: "
                           f"{describe_error(exc, 'ec2', 'DescribeImageAttribute')}") from None
        return parse_launch_permissions(resp.get("LaunchPermissions") or [], image.image_id)

    def all_launch_permissions(self, images: Sequence[Image]) -> dict[tuple[str, str], frozenset[Principal]]:
        results = self.map(self.launch_permissions, list(images), "Reading launch permissions")
        return {img.key: perms for img, perms in zip(images, results, strict=True)}

    def public_access_block(self, region: str) -> tuple[str | None, str]:
        """Image Block Public Access state of ``region``: (state, "") or (None, why unknown)."""
        ec2 = self.clients.get("ec2", region)
        try:
            resp = ec2.get_image_block_public_access_state()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return None, describe_error(exc, "ec2", "GetImageBlockPublicAccessState")
        return str(resp.get("ImageBlockPublicAccessState", "")), ""

    def snapshots(self, region: str, snapshot_ids: Sequence[str]) -> dict[str, Snapshot]:
        """The given snapshots, ``SNAPSHOT_BATCH`` IDs per call. Missing ones are left out."""
        ids = sorted(set(snapshot_ids))
        batches = [ids[i:i + SNAPSHOT_BATCH] for i in range(0, len(ids), SNAPSHOT_BATCH)]
        out: dict[str, Snapshot] = {}
        for found in self.map(lambda batch: self._snapshot_batch(region, batch), batches):
            out.update(found)
        return out

    def _snapshot_batch(self, region: str, ids: list[str]) -> dict[str, Snapshot]:
        ec2 = self.clients.get("ec2", region)
        try:
            raws: list[dict[str, Any]] = []
            for page in ec2.get_paginator("describe_snapshots").paginate(SnapshotIds=ids):
                raws.extend(page.get("Snapshots", []))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidSnapshot.NotFound" and len(ids) > 1:
                # One missing ID fails the whole call: split to find the ones that exist.
                mid = len(ids) // 2
                return {**self._snapshot_batch(region, ids[:mid]),
                        **self._snapshot_batch(region, ids[mid:])}
            if error_code(exc) == "InvalidSnapshot.NotFound":
                return {}
            raise AwsError(f"{region}: {describe_error(exc, 'ec2', 'DescribeSnapshots')}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise AwsError(f"{region}: {describe_error(exc, 'ec2', 'DescribeSnapshots')}") from None
        return {r["SnapshotId"]: Snapshot(r["SnapshotId"], region, bool(r.get("Encrypted")),
                                          r.get("KmsKeyId", "") or "", r.get("OwnerId", ""))
                for r in raws if r["SnapshotId"] in ids}

    def copy_permissions(self, key: tuple[str, str]) -> frozenset[Principal]:
        region, snapshot_id = key
        ec2 = self.clients.get("ec2", region)
        try:
            resp = ec2.describe_snapshot_attribute(SnapshotId=snapshot_id,
                                                   Attribute="createVolumePermission")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise AwsError(f"{region} {snapshot_id}: "
                           f"{describe_error(exc, 'ec2', 'DescribeSnapshotAttribute')}") from None
        return parse_launch_permissions(resp.get("CreateVolumePermissions") or [], snapshot_id)

    def key_info(self, key: tuple[str, str]) -> KeyInfo:
        """``DescribeKey`` then (for a customer key the caller owns) ``GetKeyPolicy``.

        Failures become :attr:`KeyInfo.error` (a finding for the images the key backs),
        not exceptions: one unreadable key must not stop the plan for every other image.
        """
        region, key_id = key
        kms = self.clients.get("kms", region)
        try:
            meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return KeyInfo(key_id, region, error=describe_error(exc, "kms", "DescribeKey"))
        info = KeyInfo(key_id, region, arn=meta.get("Arn", key_id),
                       account=meta.get("AWSAccountId", ""), manager=meta.get("KeyManager", ""),
                       state=meta.get("KeyState", ""))
        caller = self.identity().account
        if info.manager != "CUSTOMER" or info.account != caller:
            return info
        try:
            policy = kms.get_key_policy(KeyId=info.arn, PolicyName="default")["Policy"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return replace(info, error=describe_error(exc, "kms", "GetKeyPolicy"))
        return replace(info, policy=policy)

    def aliases(self, region: str) -> dict[str, str]:
        """Key ID → first alias name (sorted), for display. Empty if aliases cannot be listed."""
        kms = self.clients.get("kms", region)
        out: dict[str, list[str]] = {}
        try:
            for page in kms.get_paginator("list_aliases").paginate():
                for a in page.get("Aliases", []):
                    if a.get("TargetKeyId"):
                        out.setdefault(a["TargetKeyId"], []).append(a["AliasName"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return {}
        return {k: sorted(v)[0] for k, v in out.items()}
