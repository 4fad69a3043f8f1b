"""What a plan records beside its operations: the state of every resource it consulted
(the digest a saved plan is checked against), who owns each resource it writes, and the
names and reasons it is shown with. None of it drives what apply does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..desired import Selection
from ..manifest import Manifest, OwnershipMode
from ..model import Arn, Image, OpKind, Principal, RegionKey
from ..plan import StateEntries
from .checks import ImageView
from .inuse import InUse
from .ownership import tagged
from .state import CurrentState

LAUNCH, COPY, KMS = OpKind.LAUNCH.value, OpKind.COPY.value, OpKind.KMS.value
SNAPSHOT = "snapshot"  # digest entry: which key encrypts a managed image's snapshot
TAG = "ownership-tag"  # digest entry: whether a managed image carries the ownership tag
IN_USE = "in-use"  # digest entry: until when a launched build's removals wait


def policy_digest(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        canonical = text
    return hashlib.sha256(canonical.encode()).hexdigest()


def consulted_state(manifest: Manifest, views: Sequence[ImageView], state: CurrentState,
                    diffed_copy: Mapping[RegionKey, frozenset[Principal]],
                    in_use: InUse = InUse()) -> StateEntries:
    """The state of every resource the plan consulted: the images and snapshots it writes,
    their snapshots' encryption, every key policy read, the key uses, the tags, and the
    builds whose removals wait while they are launched (until when)."""
    digest: dict[tuple[str, str, str], Any] = {}
    waits = {RegionKey(*v.image.key) for v in views if v.keep or v.keep_copy}
    waits |= {RegionKey(*img.key) for img in state.released if in_use.of(img) is not None}
    for key in sorted(waits):
        digest[(IN_USE, key.region, key.resource)] = in_use.until[key][1]
    for v in views:
        digest[(LAUNCH, v.image.region, v.image.image_id)] = v.current
    for (region, sid), cur in diffed_copy.items():
        digest[(COPY, region, sid)] = cur
    for (region, sid), snap in state.snapshots.items():
        digest[(SNAPSHOT, region, sid)] = f"{snap.encrypted}:{snap.kms_key_id}"
    for uses in state.key_uses.values():
        for use in uses:
            digest[(use.kind.value, use.region, use.resource)] = use.principals
    for (region, _), info in state.keys.items():
        if info.arn:
            digest[(KMS, region, info.arn)] = policy_digest(info.policy)
    for img in state.released:
        digest[(LAUNCH, img.region, img.image_id)] = state.launch.get(RegionKey(*img.key),
                                                                      frozenset())
        for sid in img.snapshot_ids:
            if (img.region, sid) in state.copy:
                digest[(COPY, img.region, sid)] = state.copy[RegionKey(img.region, sid)]
    name = manifest.settings.name
    if manifest.settings.ownership == OwnershipMode.TAG:
        # the tag value apply writes: a saved plan applied under another name is refused
        digest[(TAG, "", "")] = name
    for v in views:
        digest[(TAG, v.image.region, v.image.image_id)] = tagged(v.image, name)
        for sid in v.image.snapshot_ids if v.m.manages_copy else ():
            backing = state.snapshots.get(RegionKey(v.image.region, sid))
            if backing is not None:
                digest[(TAG, v.image.region, sid)] = tagged(backing, name)
    return digest


def resource_names(views: Sequence[ImageView], state: CurrentState) -> dict[str, str]:
    """What resources other than images are shown by: a copy-managed snapshot by its image,
    a key by its alias."""
    names: dict[str, str] = {}
    for v in views:
        for sid in v.image.snapshot_ids if v.m.manages_copy and not v.blocked else ():
            names[sid] = f"snapshot of {v.image.image_id}"
    for info in state.keys.values():
        if info.arn and info.alias:
            names[info.arn] = info.alias
    for img in state.released:
        names.setdefault(img.image_id, "")
        for sid in img.snapshot_ids:
            if (img.region, sid) in state.copy:
                names[sid] = f"snapshot of {img.image_id}"
    return names


def _shown_images(selection: Selection, state: CurrentState) -> tuple[Image, ...]:
    """The images a plan may show: the managed ones and the released ones."""
    return (*(m.image for m in selection.managed), *state.released)


def image_names(selection: Selection, state: CurrentState) -> dict[str, str]:
    return {img.image_id: img.name for img in _shown_images(selection, state)}


def image_dates(selection: Selection, state: CurrentState) -> dict[str, str]:
    return {img.image_id: img.creation_date for img in _shown_images(selection, state)}


def snapshot_images(selection: Selection, state: CurrentState) -> dict[str, str]:
    return {sid: img.image_id for img in _shown_images(selection, state)
            for sid in img.snapshot_ids}


def withheld(selection: Selection) -> dict[tuple[str, str, Principal], str]:
    """Why a rule's lifecycle conditions withhold a principal from an image or snapshot."""
    out: dict[tuple[str, str, Principal], str] = {}
    for m in selection.managed:
        region = m.image.region
        out.update({(region, m.image.image_id, p): why for p, why in m.withheld_launch.items()})
        for sid in m.image.snapshot_ids if m.manages_copy else ():
            out.update({(region, sid, p): why for p, why in m.withheld_copy.items()})
    return out


def owners(selection: Selection, state: CurrentState) -> dict[RegionKey, str]:
    """(region, image/snapshot ID or key ARN) -> the owner account that must write it."""
    out: dict[RegionKey, str] = {}
    for img in _shown_images(selection, state):
        out[RegionKey(*img.key)] = img.owner_id
        for sid in img.snapshot_ids:
            out[RegionKey(img.region, sid)] = img.owner_id
    for (region, _), info in state.keys.items():
        if info.arn:
            out[RegionKey(region, info.arn)] = info.account or Arn.parse(info.arn).account
    return out
