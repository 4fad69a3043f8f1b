"""Gathering: read from AWS exactly the current state a plan or an export needs.

The imperative shell around the pure planner (:func:`reconciler.core.planning.compute_plan`) and
exporter (:func:`reconciler.core.exporter.compute_export`): every call here goes through a
:class:`~reconciler.shell.reader.Reader`, in the order and number the README's call formula says.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..core import desired
from ..core.desired import ManagedImage, Selection, is_managed, rule_matches, select
from ..core.errors import UsageError
from ..core.explain import ImageFacts, did_you_mean
from ..core.export_rules import SharedImage, older_builds
from ..core.exporter import ImageFilter
from ..core.kms import KeyInfo, key_arn
from ..core.manifest import KmsMode, Manifest, OnRelease, OwnershipMode
from ..core.model import (
    OWNERSHIP_TAG,
    Arn,
    BlockState,
    Counted,
    Identity,
    Image,
    ImageState,
    OpKind,
    OwnerRegion,
    Principal,
    RegionKey,
    Snapshot,
)
from ..core.plan import Planned
from ..core.planning import (
    CurrentState,
    KeyUse,
    PlanOptions,
    compute_plan,
    key_places,
    keys_losing_grantees,
    regions_needing_public_check,
    regions_needing_snapshot_public_check,
    run_regions,
    settle,
)
from ..core.planning.ownership import tagged
from . import targeted
from .concurrency import run_all
from .listing import LaunchReads, Listing, Owner, listing
from .reader import Reader
from .usage import consult


@dataclass(frozen=True)
class Scope:
    """One owner (image factory) account: a reader acting in it, and the Regions it covers
    (None: every Region of the rules)."""

    reader: Reader
    regions: tuple[str, ...] | None = None


def _scope_regions(manifest: Manifest, options: PlanOptions, scope: Scope) -> tuple[str, ...]:
    regions = run_regions(manifest, options)
    return regions if scope.regions is None else tuple(r for r in regions if r in scope.regions)


def build_plan(manifest: Manifest, readers: Reader | Sequence[Scope],
               options: PlanOptions = PlanOptions(), caller: Identity | None = None) -> Planned:
    """Read exactly what the plan needs, per owner account, then compute it.

    ``readers`` is one reader (the caller owns the images) or one :class:`Scope` per owner
    account; ``caller`` is who runs the tool when that is not a single owner. The launch
    permissions of the managed images are read as the listing finds them (see
    :mod:`~reconciler.shell.listing`); the rest follows the listing.
    """
    scopes = [Scope(readers)] if isinstance(readers, Reader) else list(readers)
    options = _now(options)
    owners = _owners(manifest, options, scopes)
    only = options.images
    lister = targeted.lister(manifest, only) if only is not None else None
    with listing(list(owners.values()), functools.partial(is_managed, manifest),
                 lister) as found:
        images = found.images
        identity = caller or scopes[0].reader.identity()
        listed = {r for owner in owners.values() for r in owner.regions}
        selection = _select(manifest, options, scopes, images, listed)
        if only is not None:  # the listing also holds their families: not this run's
            selection = desired.only(selection, targeted.given_keys(images, only))
        state = _read_state(manifest, options, scopes, owners, found, selection, listed)
    if only is not None:
        _refuse_missing(only, images, state, listed)
    # What else still grants the principals a key would lose decides whether they may go:
    # read for exactly those keys, then plan once.
    settled = settle(manifest, identity, selection, state, options)
    state, settled = consult(manifest, owners, identity, selection, state, options, settled)
    losing = settled.keys.losing_grantees
    if not losing:
        return compute_plan(manifest, identity, selection, state, options, settled)
    readers_by_account = {account: owner.reader for account, owner in owners.items()}
    keep = manifest.settings.on_release == OnRelease.KEEP
    if only is None:
        state = replace(state, key_uses=read_key_uses(losing, readers_by_account,
                                                      selection, state, keep))
    else:
        state = _restricted_key_uses(manifest, losing, readers_by_account, identity,
                                     selection, state, options)
    return compute_plan(manifest, identity, selection, state, options)


def select_managed(manifest: Manifest, scopes: Sequence[Scope], options: PlanOptions = PlanOptions(),
                   ) -> tuple[Selection, dict[str, Reader]]:
    """The managed images, as a plan selects them (one listing per owner and Region, no
    launch-permission read), and each owner's reader: what ``verify`` checks from the
    consumers' side."""
    options = _now(options)
    owners = _owners(manifest, options, scopes)
    with listing(list(owners.values()), lambda _: False) as found:
        listed = {r for owner in owners.values() for r in owner.regions}
        selection = _select(manifest, options, scopes, found.images, listed)
    return selection, {account: owner.reader for account, owner in owners.items()}


def _select(manifest: Manifest, options: PlanOptions, scopes: Sequence[Scope],
            images: Mapping[str, Sequence[Image]], listed: set[str]) -> Selection:
    """What the rules select among the images listed in ``listed`` Regions."""
    restrict = [r for r in run_regions(manifest, options) if r in listed]
    return select(manifest, {r: sorted(v, key=lambda i: i.image_id) for r, v in images.items()},
                  restrict if options.regions is not None or len(scopes) > 1 else options.regions,
                  options.now)


def _now(options: PlanOptions) -> PlanOptions:
    """One "now" for the whole run: lifecycle ages, and builds still launched (SPEC §7b)."""
    return replace(options, now=options.now
                   or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def read_image_keys(owners: Mapping[str, Reader], images: Iterable[Image],
                    ) -> dict[RegionKey, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per image: the KMS keys of its encrypted snapshots (as ``DescribeSnapshots`` names
    them), and its snapshots the owner could not read. ``DescribeSnapshots``, batched per
    owner and Region."""
    out: dict[RegionKey, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for account, reader in owners.items():
        mine = sorted({img for img in images if img.owner_id == account}, key=lambda i: i.key)
        reads = _Reads()
        reads.read_snapshots(reader, mine)
        for img in mine:
            snaps = {sid: reads.snapshots.get(RegionKey(img.region, sid)) for sid in img.snapshot_ids}
            keys = sorted({key_arn(s.kms_key_id, account, img.region) for s in snaps.values()
                           if s is not None and s.encrypted and s.kms_key_id})
            unread = [sid for sid, s in snaps.items() if s is None and img.encrypted]
            out[img.key] = (tuple(keys), tuple(unread))
    return out


def _restricted_key_uses(manifest: Manifest, losing: frozenset[str],
                         owners: Mapping[str, Reader], identity: Identity,
                         selection: Selection, state: CurrentState,
                         options: PlanOptions) -> CurrentState:
    """A run restricted to some images, about to take principals out of keys: what the
    rules declare for the other managed images on those keys stays; only the principals
    that leaves to go are checked as the whole run checks them (its key uses)."""
    neighbours = targeted.KeyNeighbours(manifest, owners, selection, state,
                                        manifest.settings.on_release == OnRelease.KEEP,
                                        options.now)
    state = replace(state, key_uses=neighbours.declared(losing))
    still = keys_losing_grantees(manifest, identity, selection, state, options)
    if still:
        state = replace(state, key_uses=targeted.merged(
            state.key_uses, neighbours.held(still, manifest.settings.prune)))
    return state


def _refuse_missing(image_ids: Sequence[str], images: Mapping[str, Sequence[Image]],
                    state: CurrentState, listed: set[str]) -> None:
    """``--image`` names an image no owner account has in the Regions the run covers."""
    found = {i for _, i in targeted.given_keys(images, image_ids)}
    found |= {img.image_id for img in state.released}
    missing = [i for i in image_ids if i not in found]
    if missing:
        raise UsageError(f"--image {missing[0]}: no owner account of the manifest has that "
                         f"image in {', '.join(sorted(listed)) or 'the Regions of the run'}")


def _owners(manifest: Manifest, options: PlanOptions, scopes: Sequence[Scope]
            ) -> dict[str, Owner]:
    """Each owner account (once) with its reader and the Regions it lists."""
    owners: dict[str, Owner] = {}
    for scope in scopes:
        account = scope.reader.identity().account
        if account in owners:
            raise UsageError(f"owner account {account} is listed twice")
        owners[account] = Owner(account, scope.reader, _scope_regions(manifest, options, scope))
    return owners


def _read_state(manifest: Manifest, options: PlanOptions, scopes: Sequence[Scope],
                owners: Mapping[str, Owner], found: Listing, selection: Selection,
                listed: set[str]) -> CurrentState:
    """The current state of the selected images (and of the released ones)."""
    images = found.images
    # Owner accounts have request buckets of their own, and so does the scan for released
    # images (other actions, other Regions): all of them are read at the same time.
    restricted = options.images is not None
    jobs: list[Callable[[], Any]] = [
        functools.partial(_read_account, manifest, account, found.launch[account],
                          [m for m in selection.managed if m.image.owner_id == account],
                          restricted)
        for account in owners]
    jobs.append(functools.partial(_find_released, manifest, options, scopes, images, selection))
    reads = run_all(*jobs)
    found_released: list[Image] = reads.pop()
    gathered = _Reads()
    for owner in reads:
        gathered.merge(owner)
    public_images: dict[OwnerRegion, int] = defaultdict(int)
    for region, listed_there in images.items():
        for img in listed_there:
            public_images[OwnerRegion(img.owner_id, region)] += img.public
    if restricted:  # a restricted listing does not show them all: counted where it matters
        public_images = defaultdict(int, gathered.public_count)
    readers = {account: owner.reader for account, owner in owners.items()}
    _read_released(manifest, readers, found_released, gathered)
    return gathered.state(images, regions=tuple(sorted(listed)),
                          public_images=dict(public_images), released=tuple(found_released))


def _find_released(manifest: Manifest, options: PlanOptions, scopes: Sequence[Scope],
                   images: Mapping[str, list[Image]], selection: Selection) -> list[Image]:
    """Images with this manifest's ownership tag that no rule matches any more. The Regions
    this run lists already show their tags; the other enabled Regions (with ``--region``,
    the other Regions given) get one tag-filtered ``DescribeImages`` each, so a Region
    dropped from the manifest still releases its images, also in a run sharded by Region."""
    name = manifest.settings.name
    if manifest.settings.ownership != OwnershipMode.TAG:
        return []
    managed = {m.image.key for m in selection.managed}
    only = set(options.images) if options.images is not None else None
    found: list[Image] = []
    for scope in scopes:
        reader = scope.reader
        account = reader.identity().account
        mine = {r for r in _scope_regions(manifest, options, scope)}
        found += [img for r in mine for img in images.get(r, ())
                  if img.owner_id == account and tagged(img, name)
                  and (only is None or img.image_id in only)]
        others = [r for r in (options.regions or ()) if r not in mine]
        if options.regions is None or others:  # a Region this owner has not enabled: skipped
            enabled = reader.enabled_regions()
            others = [r for r in (options.regions or enabled) if r not in mine and r in enabled]
        # --image: those images, wherever they are; else every image with the tag
        scan: Callable[[str], list[Image]] = (
            functools.partial(reader.tagged_images, key=OWNERSHIP_TAG, value=name)
            if options.images is None else
            functools.partial(reader.images_by, name="image-id", values=options.images))
        for there in reader.map(scan, others):
            found += [img for img in there if img.owner_id == account and tagged(img, name)]
    # A rule still matching an image keeps it (a disabled one is not managed, not released).
    return sorted({img for img in found if img.key not in managed and not any(
        rule_matches(rule, img) for rule in manifest.rules if img.region in rule.regions)},
        key=lambda i: i.key)


def _read_released(manifest: Manifest, owners: Mapping[str, Reader], released: list[Image],
                   into: _Reads) -> None:
    """The state of the released images: launch permissions, snapshots, and the copy
    permissions of the snapshots carrying this manifest's tag."""
    name = manifest.settings.name
    for account, reader in owners.items():
        mine = [img for img in released if img.owner_id == account]
        into.read_launch(reader, [img for img in mine if img.state == ImageState.AVAILABLE])
        into.read_snapshots(reader, mine)
        into.read_copy(reader, [RegionKey(img.region, sid) for img in mine for sid in img.snapshot_ids
                                if (snap := into.snapshots.get(RegionKey(img.region, sid))) is not None
                                and tagged(snap, name)])
        if manifest.settings.kms is KmsMode.KEY_POLICY and manifest.settings.on_release != OnRelease.KEEP:
            # their consumers leave the keys' statements unless something else still needs them
            into.read_keys(reader, [RegionKey(img.region, sid) for img in mine for sid in img.snapshot_ids])


def read_key_uses(key_arns: Iterable[str], owners: Mapping[str, Reader], selection: Selection,
                  state: CurrentState,
                  keep_released: bool = False) -> dict[str, tuple[KeyUse, ...]]:
    """Who holds a permission through each of ``key_arns`` outside what the plan writes.

    A principal leaves a key's statements only when nothing encrypted with the key still
    grants it launch or copy. Per owner and Region of such a key: one listing of the
    owner's encrypted snapshots, then the copy permissions of each snapshot on the key
    (unless already read) and the launch permissions of each unmanaged image it backs.
    """
    managed = {m.image.key for m in selection.managed}
    if not keep_released:
        # released images lose their launch (and tool-managed copy) permissions in this plan
        managed |= {img.key for img in state.released}
    key_ids, places = key_places(key_arns, state.keys)
    uses: dict[str, list[KeyUse]] = defaultdict(list)
    for account, region in sorted(places):
        reader = owners.get(account)
        if reader is None:
            continue
        on_key = {sid: key_ids[RegionKey(region, snap.kms_key_id)]
                  for sid, snap in reader.encrypted_snapshots(region).items()
                  if (region, snap.kms_key_id) in key_ids}
        kept = {RegionKey(img.region, sid) for img in state.released for sid in img.snapshot_ids
                } if keep_released else set()
        snaps = sorted(sid for sid in on_key
                       if (region, sid) not in state.copy or (region, sid) in kept)
        for sid, perms in zip(snaps, reader.map(reader.copy_permissions,
                                                [RegionKey(region, sid) for sid in snaps]), strict=True):
            uses[on_key[sid]].append(KeyUse(OpKind.COPY, region, sid, perms))
        listed = [img for img in state.images.get(region, ()) if img.owner_id == account]
        if not listed:  # a released image's Region that this run did not list
            listed = reader.list_images(region)
        backed = [img for img in listed
                  if img.key not in managed and any(s in on_key for s in img.snapshot_ids)]
        for img, perms in zip(backed, reader.map(reader.launch_permissions, backed), strict=True):
            for arn in sorted({on_key[s] for s in img.snapshot_ids if s in on_key}):
                uses[arn].append(KeyUse(OpKind.LAUNCH, region, img.image_id, perms))
    return {arn: tuple(v) for arn, v in uses.items()}


@dataclass
class _Reads:
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

    def merge(self, other: _Reads) -> None:
        for name in ("launch", "snapshots", "copy", "keys", "public_access", "snapshot_access",
                     "public_count", "recycle_bin", "aliases"):
            getattr(self, name).update(getattr(other, name))

    def state(self, images: Mapping[str, Sequence[Image]], **more: Any) -> CurrentState:
        return CurrentState(self.launch, self.public_access, self.snapshots, self.copy, self.keys,
                            snapshot_public_access=self.snapshot_access,
                            recycle_bin=self.recycle_bin,
                            images={r: tuple(found) for r, found in sorted(images.items())},
                            **more)


def _read_account(manifest: Manifest, account: str, launch: LaunchReads,
                  managed: list[ManagedImage], restricted: bool = False) -> _Reads:
    """The reads for one owner's managed images. The launch permissions (one call per image,
    the long part, started by the listing) and the snapshots, their copy permissions and
    keys (other actions, other buckets) are read at the same time; Block Public Access (and,
    in a ``restricted`` run, the Region's public images) only where the result needs it."""
    out = _Reads()
    reader = launch.reader
    images = [m.image for m in managed]

    def backing() -> None:
        out.read_snapshots(reader, images)
        out.read_copy(reader, [RegionKey(m.image.region, s) for m in managed if m.manages_copy
                               for s in m.image.snapshot_ids])
        if manifest.settings.kms is not KmsMode.OFF:
            out.read_keys(reader, [RegionKey(img.region, s) for img in images for s in img.snapshot_ids])

    run_all(lambda: out.launch.update(launch.results(images)), backing)
    check = regions_needing_public_check(Selection(tuple(managed), ()), out.launch, out.snapshots)
    out.public_access.update({OwnerRegion(account, r): res for r, res in
                              zip(check, reader.map(reader.public_access_block, check), strict=True)})
    # public AMIs in the Recycle Bin count towards the quota a new public share needs
    out.recycle_bin.update({OwnerRegion(account, r): res for r, res in
                            zip(check, reader.map(reader.recycle_bin_images, check), strict=True)})
    if restricted:
        out.public_count.update(targeted.public_counts(reader, account, check))
    check = regions_needing_snapshot_public_check(managed, out.snapshots)
    out.snapshot_access.update({OwnerRegion(account, r): res for r, res in zip(
        check, reader.map(reader.snapshot_public_access_block, check), strict=True)})
    return out


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
    reads = _Reads()
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
    reads = _Reads()
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
                                 released_by=_released_by(manifest, img, matched_by),
                                 keep_on_release=manifest is not None
                                 and manifest.settings.on_release == OnRelease.KEEP,
                                 manifest_path=manifest.path if manifest else ""))
    return out


def _released_by(manifest: Manifest | None, img: Image, matched_by: tuple[str, ...]) -> str:
    """The manifest's name when it released ``img`` (it carries the manifest's ownership tag
    and no rule matches it any more, as :func:`_find_released` finds them), else ""."""
    if manifest is None or manifest.settings.ownership != OwnershipMode.TAG or matched_by:
        return ""
    return manifest.settings.name if tagged(img, manifest.settings.name) else ""
