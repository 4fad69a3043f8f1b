"""Retiring a build the documented way: deprecate, let use drain, unshare.

EC2 User Guide, "Deprecate an AMI": a deprecated AMI no longer appears in the consumers'
DescribeImages results (unless they ask for deprecated ones or name its ID), so new launches
that look a build up by name stop finding it, while launch templates and Auto Scaling groups
that name it keep launching it. With ``settings.deprecate_retired``, a build whose removal
waits because it is still launched (:mod:`.inuse`) after it fell out of every rule's
lifecycle selection is deprecated by the next apply (``EnableImageDeprecation``, and the
tag ``reconciler:deprecated-by=<name>``); its shares go once it was not launched within
``settings.keep_launched_within_days``.

Not deprecated: a build another rule still shares (deprecation hides it from every
consumer); one whose family has no shared build left (a selector that matches no build any
more is a mistake to fix, not a rotation); one already deprecated; one with an error
finding; one whose shares go at once (nothing to drain). A build the manifest deprecated
that a rule shares again (an ``exclude`` reverted) has its deprecation taken back
(``DisableImageDeprecation``), and ``deprecated: false`` never counts the manifest's own
deprecation against it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import DEPRECATED_BY_TAG, ImageState, RegionKey, parse_time
from .checks import ImageView

DEPRECATION = "deprecation"  # digest entry: the DeprecationTime of a build to (un)deprecate
# A DeprecationTime due this soon is as good as passed: apply deprecates at the next whole
# minute, so the plan after it finds one still a minute away.
DUE_SOON = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Retirement:
    """The builds to deprecate and to take the manifest's deprecation back from, and the
    state the plan records about them."""

    deprecate: tuple[RegionKey, ...] = ()
    undeprecate: tuple[RegionKey, ...] = ()
    # digest entries: a build (un)deprecated by hand between plan and apply makes it stale
    consulted: dict[tuple[str, str, str], Any] = field(default_factory=dict)


def _deprecated(deprecation_time: str, now: str) -> bool:
    """Deprecated, or due within :data:`DUE_SOON` (a DeprecationTime further away, such as
    the one AWS gives public AMIs two years after creation, is not yet)."""
    when = parse_time(deprecation_time) if deprecation_time else None
    at = parse_time(now) if now else None
    return when is not None and at is not None and when <= at + DUE_SOON


def retiring(v: ImageView, now: str) -> bool:
    """Whether ``v`` is a retired build to deprecate: its rules' lifecycle conditions withdraw
    it, no rule shares it any more, its removal waits while it is launched, and it is not
    deprecated yet. (Whether its family has a shared successor is :func:`retirement`'s.)"""
    m = v.m
    return (not v.blocked and bool(m.withheld_launch) and not m.launch and bool(v.keep)
            and m.image.state == ImageState.AVAILABLE
            and not _deprecated(m.image.deprecation_time, now))


def reviving(v: ImageView, name: str) -> bool:
    """Whether ``v`` is a build this manifest deprecated that a rule shares again."""
    img = v.image
    return (not v.blocked and bool(v.m.launch) and bool(img.deprecation_time)
            and img.tag_map.get(DEPRECATED_BY_TAG) == name)


def retirement(views: Iterable[ImageView], enabled: bool, now: str, name: str,
               matched_by: Mapping[tuple[str, str], tuple[str, ...]]) -> Retirement:
    """:class:`Retirement` of the planned images. ``matched_by``: (Region, image ID) -> the
    rules that match it. With the setting off nothing is deprecated, but a deprecation the
    manifest made (tagged) is still taken back from a build a rule shares again."""
    views = sorted(views, key=lambda v: v.image.key)
    # (rule, Region) pairs that still share some build: a retired build has a successor
    shared = {(rule, v.image.region) for v in views if v.m.launch for rule in v.m.rules}

    def has_successor(v: ImageView) -> bool:
        rules = matched_by.get((v.image.region, v.image.image_id), ())
        return bool(rules) and all((r, v.image.region) in shared for r in rules)

    retired = [v for v in views if enabled and retiring(v, now) and has_successor(v)]
    revived = [v for v in views if reviving(v, name)]
    return Retirement(
        tuple(RegionKey(*v.image.key) for v in retired),
        tuple(RegionKey(*v.image.key) for v in revived),
        {(DEPRECATION, v.image.region, v.image.image_id): v.image.deprecation_time
         for v in (*retired, *revived)})
