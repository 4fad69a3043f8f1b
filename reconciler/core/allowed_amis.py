"""A consumer account's Allowed AMIs setting, and why it does not allow an image. Pure.

EC2 User Guide, "Control the discovery and use of AMIs in Amazon EC2 with Allowed AMIs"
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-allowed-amis.html) and the API
reference of ``GetAllowedImagesSettings`` and ``ImageCriterion``: a setting of each account
and Region, ``disabled``, ``audit-mode`` or ``enabled``, managed by the account or by an
organization's declarative policy. An image is allowed when it meets any one criterion, and
meets a criterion when it passes every condition the criterion sets: its provider (an account
ID, or ``amazon``, ``aws-marketplace``, ``aws-backup-vault``, ``none``), its name (``*`` and
``?`` wildcards), its AWS Marketplace product code, its age and the time since its deprecation.
The setting never restricts the account's own AMIs.

What EC2 decides is ``ImageAllowed`` in the consumer's ``DescribeImages``: ``verify`` takes
that as the answer, and reads the criteria only to say *why* and what to add. Conditions on
watermarks or scan results are evaluated by EC2 alone: a criterion with them is "may allow".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import Image, parse_time

DISABLED, AUDIT, ENABLED = "disabled", "audit-mode", "enabled"
DECLARATIVE = "declarative-policy"
# ImageCriterion members EC2 evaluates from data the owner's listing does not carry.
_OPAQUE = ("ImageWatermarks", "ScanResultCondition")


@dataclass(frozen=True)
class Criterion:
    """One ImageCriterion: every condition it sets must hold."""

    providers: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    product_codes: tuple[str, ...] = ()
    max_days_created: int | None = None
    max_days_deprecated: int | None = None
    opaque: tuple[str, ...] = ()  # members only EC2 evaluates

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Criterion:
        def strings(key: str) -> tuple[str, ...]:
            return tuple(str(v) for v in raw.get(key) or ())

        def days(key: str, inner: str) -> int | None:
            value = (raw.get(key) or {}).get(inner)
            return int(value) if isinstance(value, int) else None

        return cls(strings("ImageProviders"), strings("ImageNames"),
                   strings("MarketplaceProductCodes"),
                   days("CreationDateCondition", "MaximumDaysSinceCreated"),
                   days("DeprecationTimeCondition", "MaximumDaysSinceDeprecated"),
                   tuple(k for k in _OPAQUE if raw.get(k)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"providers": list(self.providers), "names": list(self.names),
                               "product_codes": list(self.product_codes),
                               "max_days_since_created": self.max_days_created,
                               "max_days_since_deprecated": self.max_days_deprecated,
                               "evaluated_by_ec2_only": list(self.opaque)}
        return {k: v for k, v in out.items() if v not in ([], None)}


@dataclass(frozen=True)
class AllowedSettings:
    """``GetAllowedImagesSettings`` of one account and Region."""

    state: str
    criteria: tuple[Criterion, ...] = ()
    managed_by: str = ""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> AllowedSettings:
        return cls(str(raw.get("State") or DISABLED),
                   tuple(Criterion.parse(c) for c in raw.get("ImageCriteria") or ()),
                   str(raw.get("ManagedBy") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "managed_by": self.managed_by,
                "criteria": [c.to_dict() for c in self.criteria]}


def _name_matches(pattern: str, name: str) -> bool:
    """AWS's two wildcards, ``*`` and ``?``; every other character stands for itself."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def misses(c: Criterion, img: Image, now: dt.datetime) -> list[str]:
    """The conditions of ``c`` that ``img`` (as its owner lists it) fails, in words."""
    out = []
    if c.providers and img.owner_id not in c.providers:
        out.append(f"its ImageProviders ({', '.join(c.providers)}) do not include the image's "
                   f"owner {img.owner_id}")
    if c.names and not any(_name_matches(p, img.name) for p in c.names):
        out.append(f"no ImageNames pattern ({', '.join(c.names)}) matches {img.name!r}")
    if c.product_codes and not set(c.product_codes) & set(img.product_codes):
        out.append(f"the image has none of its MarketplaceProductCodes "
                   f"({', '.join(c.product_codes)})")
    created = parse_time(img.creation_date)
    if c.max_days_created is not None and created is not None and (
            now - created > dt.timedelta(days=c.max_days_created)):
        out.append(f"the image was created {created.date().isoformat()}, more than "
                   f"{c.max_days_created} days ago (CreationDateCondition)")
    deprecated = parse_time(img.deprecation_time) if img.deprecation_time else None
    if c.max_days_deprecated is not None and deprecated is not None and deprecated <= now and (
            now - deprecated > dt.timedelta(days=c.max_days_deprecated)):
        out.append(f"the image is deprecated since {deprecated.date().isoformat()}, more than "
                   f"{c.max_days_deprecated} days (DeprecationTimeCondition)")
    return out


@dataclass(frozen=True)
class Exclusion:
    """Why a setting leaves an image out, and what to change. ``definite``: every criterion
    fails a condition the owner's listing shows; else one depends on conditions only EC2
    evaluates, and the setting *may* leave it out."""

    definite: bool
    text: str

    @property
    def verb(self) -> str:
        return "does not allow it" if self.definite else "may not allow it"


def explain(settings: AllowedSettings, img: Image, now: dt.datetime) -> Exclusion | None:
    """Why the setting does not allow ``img`` and what to change, as far as the criteria
    the owner's listing can evaluate say (None when one of them allows it outright)."""
    if not settings.criteria:
        return Exclusion(True, "it has no criteria, so it allows no image of another account")
    found: list[str] = []
    definite = True
    for n, c in enumerate(settings.criteria, start=1):
        failed = misses(c, img, now)
        if not failed:
            if not c.opaque:
                return None
            definite = False
            found.append(f"criterion {n} depends on {', '.join(c.opaque)}, which only EC2 "
                         "evaluates")
            continue
        found.append(f"criterion {n}: {'; '.join(failed)}")
    return Exclusion(definite, "; ".join(found) + _fix(settings, img, now))


def _fix(settings: AllowedSettings, img: Image, now: dt.datetime) -> str:
    """What to change: the owner in ImageProviders when that alone would do."""
    if settings.managed_by == DECLARATIVE:
        where = ("it is set by the organization's declarative policy (ManagedBy "
                 "declarative-policy): change the criteria there")
    else:
        where = ("change it with aws ec2 replace-image-criteria-in-allowed-images-settings "
                 "in that account")
    only_provider = any(
        c.providers and img.owner_id not in c.providers
        and not misses(Criterion(names=c.names, product_codes=c.product_codes,
                                 max_days_created=c.max_days_created,
                                 max_days_deprecated=c.max_days_deprecated), img, now)
        for c in settings.criteria)
    if only_provider:
        return f"; add {img.owner_id} to ImageProviders ({where})"
    return f"; {where}"


def describe_state(settings: AllowedSettings) -> str:
    """The setting in a few words, for a verdict line."""
    managed = " by a declarative policy" if settings.managed_by == DECLARATIVE else ""
    return {DISABLED: "Allowed AMIs disabled", AUDIT: f"Allowed AMIs in audit mode{managed}",
            ENABLED: f"Allowed AMIs enabled{managed}"}.get(
        settings.state, f"Allowed AMIs {settings.state}")
