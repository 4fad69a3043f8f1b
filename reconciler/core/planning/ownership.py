"""Ownership (README, "Ownership: deleting a rule revokes its shares"): which images and
copy-managed snapshots apply tags as this manifest's, which it releases, and the removals
that release them (``rules: []``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..differ import diff_permissions
from ..findings import Code
from ..manifest import Manifest, OnRelease, OwnershipMode
from ..model import (
    OWNERSHIP_TAG,
    Finding,
    Image,
    Operation,
    OpKind,
    RegionKey,
    Snapshot,
    plural,
)
from ..plan import Ownership
from .checks import ImageView, label
from .inuse import InUse
from .state import CurrentState
from .usage import AccountUse, release_findings, release_waits


def tagged(resource: Image | Snapshot, name: str) -> bool:
    return (OWNERSHIP_TAG, name) in resource.tags


@dataclass(frozen=True)
class Release:
    """The ownership bookkeeping of a plan and the operations that release images."""

    ownership: Ownership | None = None
    ops: tuple[Operation, ...] = ()
    findings: tuple[Finding, ...] = ()


def releasing(manifest: Manifest, state: CurrentState, in_use: InUse,
              use: AccountUse = AccountUse()) -> tuple[Image, ...]:
    """The released images whose shares this plan revokes: not with ``on_release: keep``,
    and not while the build is still launched, nor while its usage report lists an account
    it would revoke using it (SPEC §7b: the release waits, tag and all)."""
    if manifest.settings.on_release == OnRelease.KEEP:
        return ()
    return tuple(img for img in state.released
                 if in_use.of(img) is None and not release_waits(img, state, use))


def ownership(manifest: Manifest, views: Sequence[ImageView], state: CurrentState,
              in_use: InUse = InUse(), use: AccountUse = AccountUse()) -> Release:
    settings = manifest.settings
    if settings.ownership != OwnershipMode.TAG:
        return Release()
    name = settings.name
    tag = [v.image.key for v in views if not v.blocked and not tagged(v.image, name)]
    tag_snaps = [RegionKey(v.image.region, sid) for v in views
                 if not v.blocked and v.m.manages_copy for sid in v.image.snapshot_ids
                 if (v.image.region, sid) in state.snapshots
                 and not tagged(state.snapshots[RegionKey(v.image.region, sid)], name)]
    # a snapshot tagged when its image's rules had `copy:`, which they have no more: its
    # copy permissions are not the manifest's now (a later release must not revoke them)
    copy_managed = {RegionKey(v.image.region, sid) for v in views if v.m.manages_copy
                    for sid in v.image.snapshot_ids}
    untag_snaps = sorted({RegionKey(v.image.region, sid) for v in views
                          if not v.blocked and not v.m.manages_copy
                          for sid in v.image.snapshot_ids
                          if (v.image.region, sid) not in copy_managed  # another image's rules
                          and (snap := state.snapshots.get(RegionKey(v.image.region, sid)))
                          is not None and tagged(snap, name)})
    keep = settings.on_release == OnRelease.KEEP
    ops: list[Operation] = []
    findings: list[Finding] = []
    revoking = releasing(manifest, state, in_use, use)
    waiting = [img for img in state.released if not keep and img not in revoking]
    for img in waiting:
        current = state.launch.get(RegionKey(*img.key), frozenset())
        if current and in_use.of(img) is not None:
            findings.append(in_use.finding(img, current, "its release: no rule matches it"))
    for img in releasing(manifest, state, in_use):  # what its usage report says
        findings += release_findings(img, state, use)
    for img in state.released:
        if img in waiting:
            continue  # still launched: released (untagged, revoked) once use has drained
        ours = [sid for sid in img.snapshot_ids if (img.region, sid) in state.copy]
        untag_snaps += [RegionKey(img.region, sid) for sid in ours]
        current = state.launch.get(RegionKey(*img.key), frozenset())
        if keep:
            findings.append(Finding.of(Code.RELEASED_KEPT, img.region, img.image_id,
                                    f"{label(img)} is no longer matched by any rule; "
                                    f"on_release: keep leaves its "
                                    f"{plural(len(current), 'launch permission')} and only "
                                    f"removes the {OWNERSHIP_TAG} tag"))
            continue
        ops += diff_permissions(OpKind.LAUNCH, img.region, img.image_id, {}, current,
                                prune=True).operations
        for sid in ours:
            ops += diff_permissions(OpKind.COPY, img.region, sid, {},
                                    state.copy[RegionKey(img.region, sid)],
                                    prune=True).operations
    released = [i for i in state.released if i not in waiting]
    bookkeeping = Ownership(name, tuple(sorted(tag)), tuple(sorted(i.key for i in released)),
                            tuple(sorted(tag_snaps)), tuple(sorted(untag_snaps)), keep,
                            {RegionKey(img.region, sid): img.image_id for img in released
                             for sid in img.snapshot_ids})
    return Release(bookkeeping, tuple(ops), tuple(findings))
