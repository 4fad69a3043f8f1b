"""The contract between gathering and planning: what the shell read (:class:`CurrentState`),
the options of a run, and the questions gathering asks before it reads (which Regions,
where Block Public Access matters). Pure values and functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..desired import ManagedImage, Selection, active_regions
from ..kms import KeyInfo
from ..manifest import Manifest
from ..model import (
    Arn,
    BlockState,
    Counted,
    Image,
    OpKind,
    OwnerRegion,
    Principal,
    RegionKey,
    Snapshot,
)

if TYPE_CHECKING:
    from .usage import ImageUsage


@dataclass(frozen=True)
class PlanOptions:
    regions: tuple[str, ...] | None = None  # --region: restrict the run to these
    strict: bool = False
    allow_mass_removal: bool = False  # --allow-mass-removal: acknowledge the removal guard
    now: str = ""  # ISO 8601: when lifecycle ages are taken ("": the clock, when gathering)
    # --image: read and write only these images (None: every image the rules match)
    images: tuple[str, ...] | None = None


@dataclass(frozen=True)
class KeyUse:
    """An image's launch or a snapshot's copy permissions that rely on a key and that the
    plan does not write: an unmanaged image, or a snapshot whose copy the rules leave alone."""

    kind: OpKind  # LAUNCH (an image) or COPY (a snapshot)
    region: str
    resource: str
    principals: frozenset[Principal]
    # a managed image a run restricted to other images (--image) leaves alone: what its
    # rules declare stays in the key (the whole run keeps it), and that needs no finding
    managed: bool = False


@dataclass(frozen=True)
class CurrentState:
    """What the reader found for the managed images."""

    launch: Mapping[RegionKey, frozenset[Principal]]
    public_access: Mapping[OwnerRegion, BlockState] = field(default_factory=dict)
    snapshots: Mapping[RegionKey, Snapshot] = field(default_factory=dict)
    copy: Mapping[RegionKey, frozenset[Principal]] = field(default_factory=dict)
    keys: Mapping[RegionKey, KeyInfo] = field(default_factory=dict)  # by snapshot's key id
    # key ARN -> permissions held through it outside what the plan writes (read only for
    # the keys :func:`~reconciler.core.planning.keys_losing_grantees` names)
    key_uses: Mapping[str, tuple[KeyUse, ...]] = field(default_factory=dict)
    regions: tuple[str, ...] = ()  # the Regions this run covered
    # Snapshot Block Public Access, read where a public copy permission is declared; and
    # how many of the owner's images are public now
    snapshot_public_access: Mapping[OwnerRegion, BlockState] = field(default_factory=dict)
    public_images: Mapping[OwnerRegion, int] = field(default_factory=dict)
    # how many AMIs the owner has in the Recycle Bin (None: unreadable, with why), read
    # where a public share would be added: public ones there count towards the quota
    recycle_bin: Mapping[OwnerRegion, Counted] = field(default_factory=dict)
    # images carrying this manifest's ownership tag that no rule matches any more; their
    # launch permissions are in ``launch``, their snapshots in ``snapshots`` and the copy
    # permissions of those the tool tagged in ``copy``
    released: tuple[Image, ...] = ()
    # Region -> the images the listing found there (all of them, managed or not)
    images: Mapping[str, tuple[Image, ...]] = field(default_factory=dict)
    # settings.usage_reports: image -> its AMI usage reports, read for the images the plan
    # removes an account from (:mod:`.usage`)
    usage: Mapping[RegionKey, ImageUsage] = field(default_factory=dict)


def run_regions(manifest: Manifest, options: PlanOptions) -> tuple[str, ...]:
    """Regions this run lists: those of the rules, restricted by ``--region``."""
    return tuple(sorted({r for rule in manifest.rules
                         for r in active_regions(rule, options.regions)}))


def encrypted(m: ManagedImage, snapshots: Mapping[RegionKey, Snapshot]) -> bool:
    """Whether the image, or a backing snapshot the reader saw, is encrypted."""
    img = m.image
    return img.encrypted or any(snapshots[RegionKey(img.region, s)].encrypted
                                for s in img.snapshot_ids if (img.region, s) in snapshots)


def regions_needing_public_check(selection: Selection,
                                 launch: Mapping[RegionKey, frozenset[Principal]],
                                 snapshots: Mapping[RegionKey, Snapshot]) -> list[str]:
    """Regions where a public share would be *added* (only then is the block state read)."""
    public = Principal.public()
    return sorted({m.image.region for m in selection.managed
                   if public in m.launch and public not in launch.get(m.image.key, frozenset())
                   and not encrypted(m, snapshots)})


def regions_needing_snapshot_public_check(managed: Sequence[ManagedImage],
                                          snapshots: Mapping[RegionKey, Snapshot]) -> list[str]:
    """Regions where unencrypted snapshots are to carry a public copy permission: a new one
    may be refused, and one they already show is void under block-all-sharing."""
    public = Principal.public()
    return sorted({m.image.region for m in managed
                   if m.manages_copy and public in m.copy and not encrypted(m, snapshots)
                   and not m.image.product_codes and m.image.snapshot_ids})


def key_places(key_arns: Iterable[str], keys: Mapping[RegionKey, KeyInfo]
               ) -> tuple[dict[RegionKey, str], set[OwnerRegion]]:
    """Where to look for what else uses ``key_arns``: (Region, key ID or ARN as a snapshot
    names it) -> the key's ARN, and the (owner account, Region) pairs of those keys."""
    wanted = set(key_arns)
    key_ids: dict[RegionKey, str] = {}
    places: set[OwnerRegion] = set()
    for (region, kid), info in keys.items():
        if info.arn in wanted:
            key_ids[RegionKey(region, kid)] = key_ids[RegionKey(region, info.arn)] = info.arn
            places.add(OwnerRegion(info.account or Arn.parse(info.arn).account, region))
    return key_ids, places
