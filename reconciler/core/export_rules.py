"""Which rules an export writes: the shared images grouped by who they are shared with,
and the groups that a name glob (with ``latest: N`` for a family of dated builds) selects
exactly, so that the manifest manages exactly what it manages today."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .desired import creation_time, newest_first
from .model import Image, ImageState, Principal

# a dated build name: the family's name, then a date starting with the century
# (golden-eks-1.29-2026.11.03 -> "golden-eks-1.29-", "20")
FAMILY_RE = re.compile(r"(.*?[-_.])(19|20)[0-9]{2}")


@dataclass(frozen=True)
class SharedImage:
    """An image the caller owns, with its current permissions.

    ``copy`` maps each backing snapshot that was read to its ``createVolumePermission``
    principals; leave it empty when the snapshots' permissions were not read.
    """

    image: Image
    launch: frozenset[Principal]
    copy: Mapping[str, frozenset[Principal]] = field(default_factory=dict)

    @property
    def copy_union(self) -> frozenset[Principal] | None:
        """Everyone any backing snapshot is shared with; None when no snapshot is shared."""
        union = frozenset().union(*self.copy.values()) if self.copy else frozenset()
        return union or None


@dataclass(frozen=True)
class Group:
    launch: tuple[Principal, ...]
    copy: tuple[Principal, ...] | None
    images: tuple[Image, ...]

    @property
    def sort_key(self) -> tuple[object, ...]:
        return (tuple(p.sort_key for p in self.launch),
                (0,) if self.copy is None else (1, tuple(p.sort_key for p in self.copy)),
                tuple(i.key for i in self.images))


def group_images(chosen: Sequence[SharedImage]) -> list[Group]:
    grouped: dict[tuple[frozenset[Principal], frozenset[Principal] | None], list[Image]] = {}
    for s in chosen:
        grouped.setdefault((s.launch, s.copy_union), []).append(s.image)
    groups = [Group(tuple(sorted(launch)), None if copy is None else tuple(sorted(copy)),
                     tuple(sorted(imgs, key=lambda i: i.key)))
              for (launch, copy), imgs in grouped.items()]
    return sorted(groups, key=lambda g: g.sort_key)


@dataclass(frozen=True)
class Family:
    """A group selected by ``name: glob`` (and ``latest: N`` when older builds are unshared)."""

    glob: str
    latest: int | None = None


def name_globs(groups: Sequence[Group], considered: Sequence[SharedImage],
               with_latest: bool = True) -> dict[Group, Family]:
    """Groups of two or more images named as one family (``golden-al2023-2026.11.1``,
    ``golden-al2023-2026.12.1`` → ``golden-al2023-2026.*``), for a ``name`` selector instead
    of a list of IDs, where the glob matches exactly the group's images among every image read
    in its Regions, so that the manifest manages exactly what it manages today.

    Otherwise, with ``latest: N``, where the group's images are the N newest of the glob's
    matches in each of its Regions and every older match is available and shared with nobody
    (the rule then manages those too and shares nothing with them, as today). For dated
    builds the glob tried first is the family's name followed by the date's century
    (``golden-eks-1.29-20*``): next month's build matches it, the builds of another family
    (``golden-eks-1.30-…``, ``golden-eks-gpu-…``) never do."""
    out: dict[Group, Family] = {}
    for g in groups:
        names = sorted({i.name for i in g.images})
        if not all(names):
            continue
        regions = {i.region for i in g.images}

        def matching(glob: str, regions: set[str] = regions) -> list[SharedImage]:
            return [s for s in considered if s.image.region in regions
                    and fnmatch.fnmatchcase(s.image.name, glob)]

        common = _common_stem(names) if len({i.key for i in g.images}) >= 2 else None
        if common is not None and {s.image.key for s in matching(common + "*")} == {
                i.key for i in g.images}:
            out[g] = Family(common + "*")
            continue
        if not with_latest:
            continue
        for glob in _latest_globs(names, common):
            if (n := _latest(g, matching(glob))) is not None:
                out[g] = Family(glob, n)
                break
    return out


def _latest_globs(names: Sequence[str], common: str | None) -> list[str]:
    """The globs ``latest: N`` is tried on, best first."""
    return list(dict.fromkeys(x for x in (_family_glob(names), common and common + "*") if x))


def older_builds(shared: Sequence[SharedImage], unshared: Sequence[Image]) -> list[Image]:
    """The unshared images that could be older builds of a family whose newest builds are
    also shared for copy: ``latest: N`` with ``copy:`` manages their snapshots' copy
    permissions too, so the export must read those before it may write such a rule (and
    only those: reading every unshared image's snapshots would cost a call each)."""
    wanted: dict[tuple[str, str], Image] = {}
    for g in group_images(shared):
        names = sorted({i.name for i in g.images})
        if g.copy is None or not all(names):
            continue
        regions = {i.region for i in g.images}
        globs = _latest_globs(names, _common_stem(names) if len(g.images) >= 2 else None)
        wanted.update((img.key, img) for img in unshared if img.region in regions
                      and any(fnmatch.fnmatchcase(img.name, glob) for glob in globs))
    return [wanted[key] for key in sorted(wanted)]


def _unshared(s: SharedImage, copy_managed: bool) -> bool:
    """An older build a ``latest`` rule can manage as it is: available, shared with nobody;
    when the rule manages copy permissions, every snapshot read and shared with nobody."""
    known = not copy_managed or all(sid in s.copy for sid in s.image.snapshot_ids)
    return (s.image.state == ImageState.AVAILABLE and not s.launch and s.copy_union is None
            and known)


def _usable_stem(stem: str) -> str | None:
    return stem if len(stem) >= 3 and not any(c in stem for c in "*?[]") else None


def _common_stem(names: Sequence[str]) -> str | None:
    """The names' common prefix, up to its last ``-``, ``_`` or ``.``."""
    prefix = os.path.commonprefix(list(names))
    cut = max(prefix.rfind(c) for c in "-_.")
    return _usable_stem(prefix[:cut + 1]) if cut >= 2 else None


def _family_glob(names: Sequence[str]) -> str | None:
    """``golden-al2023-20*`` for builds named ``golden-al2023-2026.11.1``: the family's name
    and the century of the date that follows it, when every name agrees on both."""
    found = {(m.group(1), m.group(2)) if (m := FAMILY_RE.match(n)) else None for n in names}
    if len(found) != 1 or (only := found.pop()) is None or not _usable_stem(only[0]):
        return None
    return f"{only[0]}{only[1]}*"


def _latest(g: Group, matched: Sequence[SharedImage]) -> int | None:
    """N when ``latest: N`` over ``matched`` selects exactly the group's images in every
    Region and the other matches can be managed as they are (available, shared with nobody;
    with ``copy:``, their snapshots known to be shared with nobody too)."""
    mine = {i.key for i in g.images}
    if len(matched) == len(mine) or not all(creation_time(s.image) for s in matched) or any(
            s.image.key not in mine and not _unshared(s, copy_managed=g.copy is not None)
            for s in matched):
        return None
    counts = {sum(1 for i in g.images if i.region == r) for r in {i.region for i in g.images}}
    if len(counts) != 1:
        return None
    n = counts.pop()
    for region in {i.region for i in g.images}:
        ranked = newest_first(s.image for s in matched if s.image.region == region)
        if {i.key for i in ranked[:n]} != {i.key for i in g.images if i.region == region}:
            return None
    return n
