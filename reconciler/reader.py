"""Reads current state from AWS. The only module besides the applier that calls AWS.

Calls made by a plan (and nothing else):
* ``sts:GetCallerIdentity`` once;
* ``ec2:DescribeImages`` (``Owners=['self']``, paginated) once per Region;
* ``ec2:DescribeImageAttribute launchPermission`` once per *managed* image;
* ``ec2:GetImageBlockPublicAccessState`` once per Region, only where a public share
  would be added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import botocore.exceptions

from .aws import Clients, describe_error
from .errors import AwsError
from .model import Identity, Image, Principal

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

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """Run ``fn`` over ``items`` on the bounded pool; results keep the input order."""
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

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
        results = self.map(self.launch_permissions, list(images))
        return {img.key: perms for img, perms in zip(images, results, strict=True)}

    def public_access_block(self, region: str) -> tuple[str | None, str]:
        """Image Block Public Access state of ``region``: (state, "") or (None, why unknown)."""
        ec2 = self.clients.get("ec2", region)
        try:
            resp = ec2.get_image_block_public_access_state()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return None, describe_error(exc, "ec2", "GetImageBlockPublicAccessState")
        return str(resp.get("ImageBlockPublicAccessState", "")), ""
