"""A run restricted to some images (``plan``/``apply --image``, and ``event``): what it
reads instead of the whole listing, each a bounded number of requests whatever the size of
the estate (SPEC §7c).

- the images themselves: one ``DescribeImages`` per Region, filtered on ``image-id``;
- the other builds of the ``latest`` rules that match them (whether such a rule shares with
  an image depends on them): one ``DescribeImages`` per such rule and Region, filtered on
  the rule's name and tags;
- the Region's public images, where the plan would make one public (EC2's "Public AMIs"
  quota counts them all): one ``DescribeImages`` filtered on ``is-public``;
- when the plan would take a principal out of a key: the other images on the key (one
  listing of the owner's encrypted snapshots, one ``DescribeImages`` filtered on
  ``block-device-mapping.snapshot-id``); what the rules declare for the managed ones stays
  in the key, and only what is left is read as the whole run reads its key uses.

Filters, not ``ImageIds``: an image that is gone is left out instead of failing the call
(EC2 API reference, DescribeImages: ``image-id``, ``name``, ``tag:<key>``, ``is-public``,
``block-device-mapping.snapshot-id``; ``*`` and ``?`` are wildcards in filter values).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.desired import Selection, is_managed, latest_rules, rule_matches, select
from ..core.manifest import Manifest, Rule
from ..core.model import Image, OpKind, OwnerRegion, RegionKey
from ..core.planning import CurrentState, KeyUse, key_places
from .listing import LaunchReads, Lister, Owner
from .reader import Reader


def _filter_glob(glob: str) -> str:
    """A name glob as an EC2 filter value that matches at least what it matches: EC2 knows
    ``*`` and ``?`` but reads ``[`` literally and ``\\`` as an escape, so the glob is cut
    before either (``rule_matches`` then keeps exactly the rule's matches)."""
    for i, ch in enumerate(glob):
        if ch in "[\\":
            return glob[:i] + "*"
    return glob


def family_filters(rule: Rule) -> list[dict[str, Any]]:
    """``DescribeImages`` filters for every image a rule's selector (its ``ids``, ``name``
    and ``tags``, lifecycle conditions aside) may match: a superset, never less."""
    sel = rule.select
    filters: list[dict[str, Any]] = []
    if sel.ids:
        filters.append({"Name": "image-id", "Values": sorted(sel.ids)})
    if sel.name is not None:
        filters.append({"Name": "name", "Values": [_filter_glob(sel.name)]})
    filters += [{"Name": f"tag:{k}", "Values": [v]} for k, v in sel.tags]
    return filters


def families(reader: Reader, manifest: Manifest, images: Iterable[Image]) -> list[Image]:
    """The other builds of every ``latest`` rule matching one of ``images``, in its Region:
    one ``DescribeImages`` per rule and Region."""
    wanted: dict[tuple[str, str], Rule] = {}
    for img in images:
        for rule in latest_rules(manifest, img):
            wanted.setdefault((img.region, rule.name), rule)
    keys = sorted(wanted)
    found = reader.map(lambda k: reader.filtered_images(k[0], family_filters(wanted[k])), keys)
    return [img for batch in found for img in batch]


def lister(manifest: Manifest, image_ids: Sequence[str]) -> Lister:
    """Lists, in one owner's Region, the images among ``image_ids`` it owns there (their
    launch permission reads started at once) and the families of their ``latest`` rules."""
    def list_region(owner: Owner, region: str, reads: LaunchReads,
                    read: Callable[[Image], bool]) -> list[Image]:
        reader = owner.reader
        given = [img for img in reader.images_by(region, "image-id", image_ids)
                 if img.owner_id == owner.account]
        for img in given:
            if read(img):
                reads.start(img)
        found = {img.image_id: img for img in (*given, *families(reader, manifest, given))
                 if img.owner_id == owner.account}
        return [found[i] for i in sorted(found)]

    return list_region


def given_keys(listed: Mapping[str, Sequence[Image]], image_ids: Iterable[str]) -> set[RegionKey]:
    """The (Region, image ID) of each of ``image_ids`` the listing found."""
    ids = set(image_ids)
    return {RegionKey(*img.key) for found in listed.values() for img in found
            if img.image_id in ids}


def public_counts(reader: Reader, account: str, regions: Sequence[str]) -> dict[OwnerRegion, int]:
    """The owner's public images per Region (only where the plan would make one public)."""
    return {OwnerRegion(account, r): n for r, n in
            zip(regions, reader.map(reader.public_image_count, list(regions)), strict=True)}


@dataclass(frozen=True)
class _OnKey:
    """One owner and Region of keys the plan would take principals out of: the snapshots
    on those keys (snapshot ID -> key ARN), and the images they back outside this run."""

    account: str
    region: str
    on_key: dict[str, str]
    others: tuple[Image, ...]


class KeyNeighbours:
    """What else uses the keys a restricted run would take principals out of, read in two
    steps, each only if the one before did not settle it: what the rules declare for the
    other managed images on the key (listings only), then the permissions the whole run
    would read as key uses (unmanaged images, and copy permissions the rules leave alone)."""

    def __init__(self, manifest: Manifest, owners: Mapping[str, Reader], selection: Selection,
                 state: CurrentState, keep_released: bool, now: str) -> None:
        self.manifest, self.owners, self.state, self.now = manifest, owners, state, now
        self.in_run = {m.image.key for m in selection.managed}
        if not keep_released:
            self.in_run |= {img.key for img in state.released}
        self._places: list[_OnKey] = []

    def declared(self, key_arns: Iterable[str]) -> dict[str, tuple[KeyUse, ...]]:
        """Lists the other images on the keys, and returns what the rules declare for the
        managed ones among them (lifecycle conditions included: their ``latest`` families
        are listed too)."""
        key_ids, places = key_places(key_arns, self.state.keys)
        uses: dict[str, list[KeyUse]] = defaultdict(list)
        for account, region in sorted(places):
            reader = self.owners.get(account)
            if reader is None:
                continue
            on_key = {sid: key_ids[RegionKey(region, snap.kms_key_id)]
                      for sid, snap in reader.encrypted_snapshots(region).items()
                      if (region, snap.kms_key_id) in key_ids}
            backed = reader.images_by(region, "block-device-mapping.snapshot-id", list(on_key))
            others = tuple(img for img in backed
                           if img.owner_id == account and img.key not in self.in_run)
            self._places.append(_OnKey(account, region, on_key, others))
            managed = [img for img in others if is_managed(self.manifest, img)]
            context = {img.image_id: img for img in (*others, *families(reader, self.manifest,
                                                                          managed))}
            sel = select(self.manifest, {region: [context[i] for i in sorted(context)]},
                         [region], self.now)
            mine = {img.key for img in managed}
            for m in sel.managed:
                if m.image.key not in mine:
                    continue
                held = frozenset({*m.launch, *(m.copy if m.manages_copy else ())})
                for arn in sorted({on_key[s] for s in m.image.snapshot_ids if s in on_key}):
                    uses[arn].append(KeyUse(OpKind.LAUNCH, region, m.image.image_id, held,
                                            managed=True))
        return {arn: tuple(v) for arn, v in uses.items()}

    def held(self, key_arns: Iterable[str], prune: bool) -> dict[str, tuple[KeyUse, ...]]:
        """What the whole run would read as key uses for ``key_arns`` (the places
        :meth:`declared` listed): the launch permissions of the unmanaged images on them
        (of every other image without pruning, which keeps what is there), and the copy
        permissions of their snapshots that neither this run nor a rule's ``copy:``
        reconciles."""
        wanted = set(key_arns)
        uses: dict[str, list[KeyUse]] = defaultdict(list)
        for place in self._places:
            reader = self.owners[place.account]
            region = place.region
            on_key = {s: arn for s, arn in place.on_key.items() if arn in wanted}
            if not on_key:
                continue
            copied = {RegionKey(region, s) for img in place.others
                      if prune and is_managed(self.manifest, img)
                      and any(r.manages_copy for r in self.manifest.rules
                              if region in r.regions and rule_matches(r, img))
                      for s in img.snapshot_ids}
            snaps = sorted(s for s in on_key if (region, s) not in self.state.copy
                           and (region, s) not in copied)
            for sid, perms in zip(snaps, reader.map(reader.copy_permissions,
                                                    [RegionKey(region, s) for s in snaps]),
                                  strict=True):
                uses[on_key[sid]].append(KeyUse(OpKind.COPY, region, sid, perms))
            read = [img for img in place.others if any(s in on_key for s in img.snapshot_ids)
                    and not (prune and is_managed(self.manifest, img))]
            for img, perms in zip(read, reader.map(reader.launch_permissions, read), strict=True):
                for arn in sorted({on_key[s] for s in img.snapshot_ids if s in on_key}):
                    uses[arn].append(KeyUse(OpKind.LAUNCH, region, img.image_id, perms))
        return {arn: tuple(v) for arn, v in uses.items()}


def merged(*uses: Mapping[str, tuple[KeyUse, ...]]) -> dict[str, tuple[KeyUse, ...]]:
    out: dict[str, tuple[KeyUse, ...]] = {}
    for more in uses:
        for arn, found in more.items():
            out[arn] = (*out.get(arn, ()), *found)
    return out


__all__ = ["KeyNeighbours", "families", "family_filters", "given_keys", "lister",
           "merged", "public_counts"]
