"""The launch and copy permission operations of the managed images (set arithmetic in
:mod:`reconciler.core.differ`), and what a removal does not stop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..differ import diff_permissions
from ..findings import Code
from ..model import (
    Action,
    Finding,
    Operation,
    OpKind,
    Principal,
    PrincipalKind,
    RegionKey,
)
from .checks import ImageView, label
from .state import CurrentState

_ORG_KINDS = frozenset({PrincipalKind.ORGANIZATION, PrincipalKind.OU})


@dataclass(frozen=True)
class Diffs:
    """The launch and copy permission operations, and the permissions they were diffed from."""

    ops: tuple[Operation, ...] = ()
    findings: tuple[Finding, ...] = ()
    unchanged: int = 0
    copy: Mapping[RegionKey, frozenset[Principal]] = field(default_factory=dict)


def permission_diffs(views: Sequence[ImageView], state: CurrentState, prune: bool) -> Diffs:
    """What each image (not left alone) and its copy-managed snapshots must gain and lose."""
    ops: list[Operation] = []
    findings: list[Finding] = []
    unchanged = 0
    copy: dict[RegionKey, frozenset[Principal]] = {}
    for v in views:
        img = v.image
        if v.blocked:
            continue
        d = diff_permissions(OpKind.LAUNCH, img.region, img.image_id, v.m.launch, v.current,
                             prune=prune, cannot_add=v.cannot_add,
                             revoke=frozenset(v.m.withheld_launch), keep=v.keep | v.used)
        ops += d.operations
        unchanged += d.unchanged
        findings += removals_kept_through_orgs(v, d.operations, prune)
        for sid in img.snapshot_ids if v.m.manages_copy else ():
            key = RegionKey(img.region, sid)
            cur = copy[key] = state.copy.get(key, frozenset())
            d = diff_permissions(OpKind.COPY, img.region, sid, v.m.copy, cur, prune=prune,
                                 cannot_add=v.copy_cannot_add,
                                 revoke=frozenset(v.m.withheld_copy),
                                 keep=v.keep_copy | v.used_copy)
            ops += d.operations
            unchanged += d.unchanged
    return Diffs(tuple(ops), tuple(findings), unchanged, copy)


def removals_kept_through_orgs(v: ImageView, ops: Sequence[Operation],
                               prune: bool) -> list[Finding]:
    """EC2 accepts removing an account's launch permission from an image that stays shared
    with an organization or OU, but an account inside it can still launch the image."""
    accounts = [o.principal.label for o in ops if o.action is Action.REMOVE
                and o.principal.kind is PrincipalKind.ACCOUNT]
    if not accounts:
        return []
    # who holds it after apply (keys.after_apply), restricted to organizations and OUs (few),
    # without hashing every account
    orgs = sorted({p.label for p in v.current if p.kind in _ORG_KINDS
                   and (v.blocked or not prune or p in v.m.launch)}
                  | (set() if v.blocked else {p.label for p in v.m.launch
                                              if p.kind in _ORG_KINDS and p not in v.cannot_add}))
    if not orgs:
        return []
    img = v.image
    one = len(accounts) == 1
    return [Finding.of(Code.REMOVAL_KEPT_THROUGH_ORG, img.region, img.image_id,
                    f"{label(img)}: removing the launch permission of {', '.join(accounts)} "
                    f"does not stop {'it' if one else 'them'} launching the image if "
                    f"{'it is' if one else 'they are'} in {', '.join(orgs)}, which the image "
                    "stays shared with")]
