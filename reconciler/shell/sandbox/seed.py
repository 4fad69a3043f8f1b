"""The state file's resources created in the running emulator (:func:`seed`), and the
emulator's state written back as a state file (:func:`dump`, for ``--sandbox-save``)."""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ...core.model import ImageState, Principal
from . import moto_extensions as emulated
from .state import AWS_MANAGED_KEY, DATED, SandboxImage, SandboxState


def _stable_hex(*parts: str, length: int = 17) -> str:
    """An ID-shaped hex string derived from ``parts``: the sandbox gives the same IDs on every
    run, so plans are reproducible and a plan saved in one run applies in the next."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _stable_key_id(account: str, region: str, name: str) -> str:
    """A KMS key ID (UUID v4 form, like AWS's) derived from the key's name."""
    return str(uuid.UUID(_stable_hex(account, region, "key", name, length=32), version=4))


def _emulator_clients() -> Callable[[str, str], Any]:
    """A client of the emulator per (service, Region), made once (a client takes ~20 ms);
    they share the run's parsed service models."""
    from ..aws import make_session

    session = make_session(None)

    @functools.cache
    def client(service: str, region: str) -> Any:
        return session.client(service, region_name=region)

    return client


def seed(state: SandboxState) -> list[str]:
    """Create the state's resources in the (already started) emulator; return the image IDs."""
    client = _emulator_clients()
    for (region, block) in state.image_block_public_access:
        emulated.IMAGE_BLOCK_PUBLIC_ACCESS[(state.account, region)] = block
    key_arns: dict[tuple[str, str], str] = {}
    for key in state.keys:
        kms = client("kms", key.region)
        extra = {"Policy": key.policy} if key.policy else {}
        meta = kms.create_key(Description=f"sandbox key {key.name}", **extra)["KeyMetadata"]
        key_id = _stable_key_id(state.account, key.region, key.name)
        arn = emulated.set_key_id(state.account, key.region, meta["KeyId"], key_id)
        kms.create_alias(AliasName=f"alias/{key.name}", TargetKeyId=key_id)
        key_arns[(key.region, key.name)] = arn
    for region in sorted({i.region for i in state.images if i.encrypted_with == AWS_MANAGED_KEY}):
        kms = client("kms", region)
        meta = kms.create_key(Description="Default key that protects my EBS volumes when no "
                                          "other key is defined")["KeyMetadata"]
        key_id = _stable_key_id(state.account, region, AWS_MANAGED_KEY)
        key_arns[(region, AWS_MANAGED_KEY)] = emulated.set_key_id(state.account, region,
                                                                  meta["KeyId"], key_id)
        emulated.make_aws_managed(state.account, region, key_id)
    return [_seed_image(client("ec2", img.region), state.account, n, img, key_arns)
            for n, img in enumerate(state.images)]


def _seed_image(ec2: Any, account: str, n: int, img: SandboxImage,
                key_arns: Mapping[tuple[str, str], str]) -> str:
    """Create ``img`` (the ``n``-th image of the file) with its ID, snapshot, tags,
    permissions, key, dates and state; return its image ID."""
    image_id = ec2.register_image(Name=img.name, RootDeviceName="/dev/xvda")["ImageId"]
    chosen = img.image_id or "ami-" + _stable_hex(account, img.region, img.name, str(n))
    emulated.set_image_id(account, img.region, image_id, chosen)
    image_id = chosen
    emulated.set_snapshot_id(account, img.region, image_id,
                             "snap-" + _stable_hex(account, img.region, image_id))
    if img.tags:
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in img.tags])
    if img.launch:
        ec2.modify_image_attribute(ImageId=image_id, Attribute="launchPermission",
                                   LaunchPermission={"Add": [p.to_dict() for p in img.launch]})
    snapshot_id = ec2.describe_images(ImageIds=[image_id])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    if img.snapshot_tags:
        ec2.create_tags(Resources=[snapshot_id],
                        Tags=[{"Key": k, "Value": v} for k, v in img.snapshot_tags])
    if img.encrypted_with:
        emulated.encrypt_image(account, img.region, image_id,
                               key_arns[(img.region, img.encrypted_with)])
    users = [p.value for p in img.copy if not p.is_public]
    if users:
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                      OperationType="add", UserIds=users)
    if any(p.is_public for p in img.copy):
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                      OperationType="add", GroupNames=["all"])
    if img.created is not None or img.deprecated is not None or img.last_launched is not None:
        emulated.set_image_dates(account, img.region, image_id, img.created, img.deprecated,
                                 img.last_launched)
    if img.state != ImageState.AVAILABLE:
        emulated.set_image_state(account, img.region, image_id, img.state)
    return image_id


def dump(state: SandboxState, image_ids: list[str]) -> str:
    """The emulator's current state, as a sandbox state file (for ``--sandbox-save``)."""
    import yaml

    client = _emulator_clients()

    def labels(entries: list[dict[str, str]]) -> list[str]:
        return [p.label for p in sorted((Principal.from_dict(e) for e in entries),
                                        key=lambda p: p.sort_key)]

    keys = []
    for key in state.keys:
        kms = client("kms", key.region)
        key_id = kms.describe_key(KeyId=f"alias/{key.name}")["KeyMetadata"]["KeyId"]
        policy = kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
        keys.append({"name": key.name, "region": key.region, "policy": json.loads(policy)})
    images = []
    for img, image_id in zip(state.images, image_ids, strict=True):
        ec2 = client("ec2", img.region)
        perms = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
        described = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        snapshot_id = described["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        snap = ec2.describe_snapshot_attribute(SnapshotId=snapshot_id,
                                               Attribute="createVolumePermission")
        entry: dict[str, Any] = {"id": image_id, "region": img.region, "name": img.name}
        tags = {t["Key"]: t["Value"] for t in described.get("Tags") or []}
        if tags:  # as AWS has them now: apply adds and removes the ownership tag
            entry["tags"] = dict(sorted(tags.items()))
        snap_tags = {t["Key"]: t["Value"] for t in ec2.describe_snapshots(
            SnapshotIds=[snapshot_id])["Snapshots"][0].get("Tags") or []}
        if snap_tags:
            entry["snapshot_tags"] = dict(sorted(snap_tags.items()))
        for field_name in DATED:
            if field_name != "deprecated" and getattr(img, field_name) is not None:
                entry[field_name] = getattr(img, field_name)
        if described.get("DeprecationTime"):  # as AWS has it now: apply may (un)deprecate it
            entry["deprecated"] = described["DeprecationTime"]
        if img.state != ImageState.AVAILABLE:
            entry["state"] = img.state
        if img.encrypted_with:
            entry["encrypted_with"] = img.encrypted_with
        if launch := labels(perms.get("LaunchPermissions") or []):
            entry["launch"] = launch
        if copy := labels(snap.get("CreateVolumePermissions") or []):
            entry["copy"] = copy
        images.append(entry)
    doc: dict[str, Any] = {"version": 1, "account": state.account}
    if state.now:  # the clock the runs plan by stays pinned for the next command
        doc["now"] = state.now.replace("+00:00", "Z")
    if state.image_block_public_access:
        doc["image_block_public_access"] = dict(state.image_block_public_access)
    if keys:
        doc["keys"] = keys
    doc["images"] = images
    header = "# Sandbox state written by `reconcile apply --sandbox-save`.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
