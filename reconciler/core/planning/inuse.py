"""Removals that never strand a consumer (SPEC §7b).

Launch templates and Auto Scaling groups keep launching a build they name, deprecated or
not (EC2 User Guide, "Deprecate an AMI"); once its share is gone, their next scale-out
fails. So a removal that withdraws a build from a rule's consumers because the build fell
out of the rule's lifecycle selection, or was released, waits while the image was launched
within ``settings.keep_launched_within_days`` (its ``LastLaunchedTime`` in DescribeImages,
reported up to 24 hours late: no extra call). Removals of one account (dropped from a rule,
an undeclared share pruned) are not affected: ``LastLaunchedTime`` does not say who
launched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ..findings import Code, Finding
from ..model import Image, Principal, RegionKey, parse_time, plural
from .checks import ImageView, label
from .state import CurrentState


@dataclass(frozen=True)
class InUse:
    """The images launched within the window: image key -> (last launch as EC2 reports it,
    the day from which their withheld removals go ahead)."""

    days: int = 0
    until: Mapping[RegionKey, tuple[str, str]] = field(default_factory=dict)

    def of(self, img: Image) -> tuple[str, str] | None:
        return self.until.get(RegionKey(*img.key))

    def finding(self, img: Image, withheld: Iterable[Principal], why: str) -> Finding:
        """The ``warning[in-use]`` of an image whose removals of ``withheld`` wait."""
        last, ahead = self.until[RegionKey(*img.key)]
        who = ", ".join(p.label for p in sorted(withheld))
        return Finding.about(
            Code.IN_USE, label(img), img.region, img.image_id,
            f"{label(img)} was last launched {last}: the removal of {who} ({why}) waits "
            f"until {ahead}, {plural(self.days, 'day')} after that launch "
            "(settings.keep_launched_within_days; EC2 reports launches up to 24 h late)")


def launched_within(days: int, images: Iterable[Image], now: str) -> InUse:
    """:class:`InUse` for ``images`` at ``now`` (ISO 8601). Off when ``days`` is 0, or when
    no time was given (a pure caller that does not plan removals by the clock)."""
    at = parse_time(now) if now else None
    if not days or at is None:
        return InUse(days)
    until: dict[RegionKey, tuple[str, str]] = {}
    for img in images:
        last = parse_time(img.last_launched) if img.last_launched else None
        if last is not None and last + dt.timedelta(days=days) > at:
            until[RegionKey(*img.key)] = (img.last_launched,
                                          (last + dt.timedelta(days=days)).date().isoformat())
    return InUse(days, until)


def waiting(v: ImageView, state: CurrentState, in_use: InUse) -> ImageView:
    """``v`` with the removals that wait while its build is still launched: the principals a
    rule's lifecycle conditions withdraw from it that hold a permission now."""
    if in_use.of(v.image) is None:
        return v
    m = v.m
    keep = frozenset(p for p in m.withheld_launch if p in v.current and p not in m.launch)
    copies = [state.copy.get(RegionKey(m.image.region, s), frozenset())
              for s in m.image.snapshot_ids] if m.manages_copy else []
    keep_copy = frozenset(p for p in m.withheld_copy
                          if p not in m.copy and any(p in c for c in copies))
    return replace(v, keep=keep, keep_copy=keep_copy) if keep or keep_copy else v


def waiting_finding(v: ImageView, in_use: InUse) -> Finding | None:
    """The ``warning[in-use]`` of a view whose lifecycle removals wait (None: none wait)."""
    if not (v.keep or v.keep_copy):
        return None
    why = sorted({why for p, why in (*v.m.withheld_launch.items(), *v.m.withheld_copy.items())
                  if p in v.keep | v.keep_copy})
    return in_use.finding(v.image, v.keep | v.keep_copy, "; ".join(why))
