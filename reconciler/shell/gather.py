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
from dataclasses import dataclass, replace
from typing import Any

from ..core import desired
from ..core.desired import ManagedImage, Selection, is_managed, rule_matches, select
from ..core.errors import UsageError
from ..core.kms import key_arn
from ..core.manifest import KmsMode, Manifest, OnRelease, OwnershipMode
from ..core.model import (
    OWNERSHIP_TAG,
    Identity,
    Image,
    ImageState,
    OpKind,
    OwnerRegion,
    RegionKey,
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
from .reads import Reads
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
    listed_owners = _owners(manifest, options, scopes)
    only = options.images
    lister = targeted.lister(manifest, only) if only is not None else None
    with listing(listed_owners, functools.partial(is_managed, manifest), lister) as found:
        owners = _by_account(listed_owners)
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
    listed_owners = _owners(manifest, options, scopes)
    with listing(listed_owners, lambda _: False) as found:
        owners = _by_account(listed_owners)
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
        reads = Reads()
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


def _owners(manifest: Manifest, options: PlanOptions, scopes: Sequence[Scope]) -> list[Owner]:
    """Each owner with its reader and the Regions it lists (its account is read when the
    listing has started: see :func:`~reconciler.shell.listing.listing`)."""
    return [Owner(scope.reader, _scope_regions(manifest, options, scope)) for scope in scopes]


def _by_account(owners: Sequence[Owner]) -> dict[str, Owner]:
    return {owner.account: owner for owner in owners}


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
    gathered = Reads()
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
                   into: Reads) -> None:
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


def _read_account(manifest: Manifest, account: str, launch: LaunchReads,
                  managed: list[ManagedImage], restricted: bool = False) -> Reads:
    """The reads for one owner's managed images. The launch permissions (one call per image,
    the long part, started by the listing) and the snapshots, their copy permissions and
    keys (other actions, other buckets) are read at the same time; Block Public Access (and,
    in a ``restricted`` run, the Region's public images) only where the result needs it."""
    out = Reads()
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
