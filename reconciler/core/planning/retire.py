"""Retiring a build the documented way: deprecate, let use drain, unshare.

EC2 User Guide, "Deprecate an AMI": a deprecated AMI no longer appears in the consumers'
DescribeImages results (unless they ask for deprecated ones or name its ID), so new launches
that look a build up by name stop finding it, while launch templates and Auto Scaling groups
that name it keep launching it. With ``settings.deprecate_retired``, a build that falls out
of every rule's lifecycle selection while it is still shared is deprecated by the next
apply (``EnableImageDeprecation``); its shares go once it was not launched within
``settings.keep_launched_within_days`` (:mod:`.inuse`).

A build another rule still shares is not deprecated: deprecation hides it from every
consumer. Nor is one already deprecated, nor one with an error finding (no write at all).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model import ImageState, RegionKey, parse_time
from .checks import ImageView

DEPRECATION = "deprecation"  # digest entry: the DeprecationTime of a build to deprecate
# A DeprecationTime due this soon is as good as passed: apply deprecates at the next whole
# minute, so the plan after it finds one still a minute away.
DUE_SOON = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Retirement:
    """The builds to deprecate, and the state the plan records about them."""

    deprecate: tuple[RegionKey, ...] = ()
    # digest entries: a build deprecated by hand between plan and apply makes the plan stale
    consulted: dict[tuple[str, str, str], Any] = field(default_factory=dict)


def retiring(v: ImageView, now: str) -> bool:
    """Whether ``v`` is a retired build to deprecate: its rules' lifecycle conditions
    withdraw it from principals that still hold it, no rule shares it any more, and it is
    not deprecated yet (a DeprecationTime more than :data:`DUE_SOON` away, such as the one
    AWS gives public AMIs two years after creation, counts as not yet)."""
    m = v.m
    if v.blocked or not m.withheld_launch or m.launch or m.image.state != ImageState.AVAILABLE:
        return False
    if not any(p in v.current for p in m.withheld_launch):
        return False  # nothing left to drain: nobody to keep launching it by name
    deprecated = parse_time(m.image.deprecation_time) if m.image.deprecation_time else None
    at = parse_time(now) if now else None
    return deprecated is None or (at is not None and deprecated > at + DUE_SOON)


def retirement(views: Iterable[ImageView], enabled: bool, now: str) -> Retirement:
    """:class:`Retirement` of the planned images (nothing when the setting is off)."""
    if not enabled:
        return Retirement()
    chosen: Sequence[ImageView] = sorted((v for v in views if retiring(v, now)),
                                         key=lambda v: v.image.key)
    return Retirement(
        tuple(RegionKey(*v.image.key) for v in chosen),
        {(DEPRECATION, v.image.region, v.image.image_id): v.image.deprecation_time
         for v in chosen})
