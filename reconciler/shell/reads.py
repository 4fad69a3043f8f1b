"""The reads behind a :class:`~reconciler.core.planning.CurrentState`, and what ``export``
and ``explain`` gather with them.

:class:`Reads` is the one way plan, export and ``explain`` read facts from AWS (launch
permissions, snapshots, copy permissions, keys); :func:`read_export` and
:func:`read_explain` read exactly what their pure halves (:mod:`reconciler.core.exporter`,
:mod:`reconciler.core.explain`) need. Planning itself is :mod:`.gather`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.desired import ManagedImage, rule_matches, select
from ..core.errors import UsageError
from ..core.explain import ImageFacts, did_you_mean
from ..core.export_rules import SharedImage, older_builds
from ..core.exporter import ImageFilter
from ..core.kms import KeyInfo
from ..core.manifest import Manifest, OnRelease, OwnershipMode
from ..core.model import (
    Arn,
    BlockState,
    Counted,
    Identity,
    Image,
    ImageState,
    OwnerRegion,
    Principal,
    RegionKey,
    Snapshot,
)
from ..core.planning import CurrentState
from ..core.planning.ownership import tagged
from .reader import Reader


@dataclass
class Reads:
    """What the reads found, on the way to one :class:`CurrentState`.

    Plan, export and ``explain`` gather through the same four steps; each asks the reader
    for one kind of fact and fills its own mapping. ``read_launch`` and ``read_snapshots``
    depend on nothing else and may run at the same time; ``read_copy`` and ``read_keys``
    usually take their keys from the snapshots read, so they come after ``read_snapshots``.
    """

    launch: dict[RegionKey, frozenset[Principal]] = field(default_factory=dict)
    snapshots: dict[RegionKey, Snapshot] = field(default_factory=dict)
    copy: dict[RegionKey, frozenset[Principal]] = field(default_factory=dict)
    keys: dict[RegionKey, KeyInfo] = field(default_factory=dict)
    public_access: dict[OwnerRegion, BlockState] = field(default_factory=dict)
    snapshot_access: dict[OwnerRegion, BlockState] = field(default_factory=dict)
    public_count: dict[OwnerRegion, int] = field(default_factory=dict)  # restricted runs only
    recycle_bin: dict[OwnerRegion, Counted] = field(default_factory=dict)
    # (account, Region) -> key ID -> alias, listed once for display
    aliases: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def read_launch(self, reader: Reader, images: Sequence[Image]) -> None:
        """``DescribeImageAttribute`` (launchPermission) per image."""
        self.launch.update(reader.all_launch_permissions(list(images)))

    def read_snapshots(self, reader: Reader, images: Sequence[Image]) -> None:
        """The images' snapshots: ``DescribeSnapshots``, batched per Region."""
        by_region: dict[str, list[str]] = defaultdict(list)
        for img in images:
            by_region[img.region].extend(img.snapshot_ids)
        regions = sorted(by_region)
        for region, found in zip(regions, reader.map(lambda r: reader.snapshots(r, by_region[r]),
                                                     regions), strict=True):
            self.snapshots.update({RegionKey(region, sid): snap for sid, snap in found.items()})

    def read_copy(self, reader: Reader, snapshots: Iterable[RegionKey]) -> None:
        """``DescribeSnapshotAttribute`` (createVolumePermission) per (Region, snapshot)."""
        wanted = sorted(set(snapshots))
        self.copy.update(zip(wanted, reader.map(reader.copy_permissions, wanted), strict=True))

    def read_keys(self, reader: Reader, snapshots: Iterable[RegionKey]) -> None:
        """The KMS keys of those of ``snapshots`` that were read and are encrypted (by Region
        and key ID as the snapshot names it): ``DescribeKey`` + ``GetKeyPolicy`` once per key
        not read yet, ``ListAliases`` once per account and Region (for display)."""
        wanted = set(snapshots)
        key_ids = sorted({RegionKey(snap.region, snap.kms_key_id) for k, snap in self.snapshots.items()
                          if k in wanted and snap.encrypted and snap.kms_key_id} - set(self.keys))
        if not key_ids:
            return
        infos = reader.map(reader.key_info, key_ids)
        account = reader.identity().account
        regions = sorted({r for r, _ in key_ids} - {r for a, r in self.aliases if a == account})
        self.aliases.update(zip([(account, r) for r in regions],
                                reader.map(reader.aliases, regions), strict=True))
        for k, info in zip(key_ids, infos, strict=True):
            alias = self.aliases[(account, k[0])].get(Arn.parse(info.arn).resource_id, "")
            self.keys[k] = replace(info, alias=alias) if alias else info

    def merge(self, other: Reads) -> None:
        for name in ("launch", "snapshots", "copy", "keys", "public_access", "snapshot_access",
                     "public_count", "recycle_bin", "aliases"):
            getattr(self, name).update(getattr(other, name))

    def state(self, images: Mapping[str, Sequence[Image]], **more: Any) -> CurrentState:
        return CurrentState(self.launch, self.public_access, self.snapshots, self.copy, self.keys,
                            snapshot_public_access=self.snapshot_access,
                            recycle_bin=self.recycle_bin,
                            images={r: tuple(found) for r, found in sorted(images.items())},
                            **more)


def read_export(reader: Reader, regions: Sequence[str],
                image_filter: ImageFilter = ImageFilter()) -> tuple[Identity, CurrentState]:
    """Read what :func:`compute_export` needs, and nothing more.

    Calls: ``GetCallerIdentity``; ``DescribeImages`` per Region; ``DescribeImageAttribute``
    per available image passing the filter; ``DescribeSnapshots`` (batched) for the available
    ones (an unshared older build of a family the export selects with ``latest`` is managed,
    so the self-check plans it with its snapshots); for the *shared* ones only,
    ``DescribeSnapshotAttribute`` per snapshot, and per snapshot of the unshared older builds
    of a family whose newest builds are shared for copy too (a ``latest`` rule with ``copy:``
    manages them); per distinct KMS key of an encrypted snapshot
    ``DescribeKey`` + ``GetKeyPolicy`` (+ ``ListAliases`` per Region).
    """
    identity = reader.identity()
    regions = tuple(sorted(set(regions)))
    listed = reader.list_all_images(regions)
    # Disabled images have no launch permissions to read (and cannot be shared).
    candidates = [img for region in regions for img in listed[region]
                  if image_filter.matches(img) and img.state == ImageState.AVAILABLE]
    reads = Reads()
    reads.read_launch(reader, candidates)
    reads.read_snapshots(reader, candidates)
    def snapshots_of(images: Iterable[Image]) -> list[RegionKey]:
        return [RegionKey(img.region, s) for img in images for s in img.snapshot_ids
                if (img.region, s) in reads.snapshots]

    shared = [img for img in candidates if reads.launch[img.key]]
    reads.read_copy(reader, snapshots_of(shared))
    # the unshared older builds of a family shared for copy too: a `latest` rule with
    # `copy:` would manage their copy permissions, so the export needs them
    older = older_builds([SharedImage(img, reads.launch[img.key], {
        s: reads.copy[RegionKey(img.region, s)] for s in img.snapshot_ids
        if (img.region, s) in reads.copy}) for img in shared],
        [img for img in candidates if not reads.launch[img.key]])
    reads.read_copy(reader, snapshots_of(older))
    reads.read_keys(reader, reads.snapshots)
    # The images the filter keeps, and only those: the others' permissions were not read.
    considered = {r: [img for img in found if image_filter.matches(img)]
                  for r, found in listed.items()}
    return identity, reads.state(considered, regions=regions)


def read_explain(reader: Reader, regions: Sequence[str], image_id: str | None,
                 manifest: Manifest | None, rule: str | None) -> list[ImageFacts]:
    """The images ``explain`` is asked about (one ID, or a rule's matches) and, for those
    only, their launch permissions, snapshots, copy permissions and keys."""
    listed = reader.list_all_images(sorted(set(regions)))
    managed: dict[RegionKey, ManagedImage] = {}
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if manifest is not None:
        selection = select(manifest, listed, regions, now)
        managed = {m.image.key: m for m in selection.managed}
    if image_id is not None:
        chosen = [img for r in sorted(listed) for img in listed[r] if img.image_id == image_id]
        if not chosen:
            raise UsageError(f"{image_id} is not an image the caller owns in "
                             f"{', '.join(sorted(listed))} (use --region)")
    else:
        assert manifest is not None and rule is not None
        found = [r for r in manifest.rules if r.name == rule]
        if not found:
            raise UsageError(f"--rule {rule!r}: no rule of that name in {manifest.path}"
                             + did_you_mean(rule, [r.name for r in manifest.rules]))
        chosen = [img for r in sorted(listed) for img in listed[r] if rule_matches(found[0], img)
                  and r in found[0].regions]
    reads = Reads()
    reads.read_launch(reader, [i for i in chosen if i.state == ImageState.AVAILABLE])
    reads.read_snapshots(reader, chosen)
    reads.read_copy(reader, reads.snapshots)
    reads.read_keys(reader, reads.snapshots)
    # a public copy permission is void under block-all-sharing: read it where one shows
    shown = sorted({(img.owner_id, img.region) for img in chosen for s in img.snapshot_ids
                    if Principal.public() in reads.copy.get(RegionKey(img.region, s), ())})
    reads.snapshot_access.update({OwnerRegion(*where): block for where, block in zip(
        shown, reader.map(reader.snapshot_public_access_block, [r for _, r in shown]),
        strict=True)})
    state = reads.state(listed)
    out = []
    for img in chosen:
        matched_by = tuple(r.name for r in (manifest.rules if manifest else ())
                           if img.region in r.regions and rule_matches(r, img))
        out.append(ImageFacts.of(img, state, managed.get(img.key), manifest is not None,
                                 matched_by, now=now,
                                 released_by=released_by(manifest, img, matched_by),
                                 keep_on_release=manifest is not None
                                 and manifest.settings.on_release == OnRelease.KEEP,
                                 manifest_path=manifest.path if manifest else ""))
    return out


def released_by(manifest: Manifest | None, img: Image, matched_by: tuple[str, ...]) -> str:
    """The manifest's name when it released ``img`` (it carries the manifest's ownership tag
    and no rule matches it any more, as :func:`reconciler.shell.gather._find_released` finds them), else ""."""
    if manifest is None or manifest.settings.ownership != OwnershipMode.TAG or matched_by:
        return ""
    return manifest.settings.name if tagged(img, manifest.settings.name) else ""
