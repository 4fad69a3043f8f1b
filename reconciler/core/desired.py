"""Desired state: which owned images the rules select, and what each must be shared with.

Pure functions over the manifest and the image listing; no AWS.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .findings import Code
from .manifest import Manifest, Rule, Selector
from .model import DEPRECATED_BY_TAG, Finding, Image, ImageState, Principal, parse_time, plural

# principal -> names of the rules that declare it
Declared = Mapping[Principal, tuple[str, ...]]


@dataclass(frozen=True)
class ManagedImage:
    """An image matched by at least one rule, with the union of what its rules declare."""

    image: Image
    rules: tuple[str, ...]
    launch: Declared
    copy: Declared
    manages_copy: bool = False  # some rule has `copy:`, so snapshot permissions are reconciled
    # principal -> why a rule that would declare it shares nothing with this image (its
    # lifecycle conditions: "rule golden: it is not among the newest 3 ..."), for the plan's
    # reason on a removal that is not plain drift
    withheld_launch: Mapping[Principal, str] = field(default_factory=dict)
    withheld_copy: Mapping[Principal, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    managed: tuple[ManagedImage, ...]
    findings: tuple[Finding, ...]
    # (region, image ID) -> every rule that matches it (sharing with it or not, available or
    # not): what a finding about the image is about in the manifest
    matched_by: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


def rule_matches(rule: Rule, image: Image) -> bool:
    sel = rule.select
    if sel.ids and image.image_id not in sel.ids:
        return False
    if sel.name is not None and not fnmatch.fnmatchcase(image.name, sel.name):
        return False
    tags = image.tag_map
    return all(tags.get(k) == v for k, v in sel.tags)


def is_managed(manifest: Manifest, image: Image) -> bool:
    """Whether :func:`select` manages ``image``, listed in one of the run's Regions: it is
    available and a rule of its Region matches it. A rule's lifecycle conditions (``latest``
    and the others) only decide whether that rule *shares* with the image, so the answer
    never needs the rest of the listing: the reads of a managed image can start with the
    page that lists it."""
    return image.state == ImageState.AVAILABLE and any(
        image.region in rule.regions and rule_matches(rule, image) for rule in manifest.rules)


def active_regions(rule: Rule, restrict: Iterable[str] | None) -> tuple[str, ...]:
    if restrict is None:
        return rule.regions
    allowed = set(restrict)
    return tuple(r for r in rule.regions if r in allowed)


def _declare(target: dict[Principal, list[str]], principals: Iterable[Principal], rule: str) -> None:
    for p in principals:
        names = target.setdefault(p, [])
        if rule not in names:
            names.append(rule)


_UNDATED = dt.datetime.min.replace(tzinfo=dt.UTC)


def _excluded(sel: Selector, img: Image) -> bool:
    """``exclude:``: any given criterion matching excludes the image."""
    tags = img.tag_map
    return (img.image_id in sel.ids
            or (sel.name is not None and fnmatch.fnmatchcase(img.name, sel.name))
            or (bool(sel.tags) and all(tags.get(k) == v for k, v in sel.tags)))


def _lifecycle_reason(sel: Selector, img: Image, now: dt.datetime | None, ours: str = "") -> str:
    """Why a rule's lifecycle conditions (other than ``latest``) keep it from sharing
    ``img`` ("" when they do not). ``ours``: the manifest's name; a deprecation it made
    itself (``deprecate_retired``, tagged so) is the consequence of a fall-out, not a cause."""
    created = parse_time(img.creation_date)
    day = created.date().isoformat() if created else "an unknown date"
    if sel.exclude is not None and _excluded(sel.exclude, img):
        return "it matches the rule's exclude"
    if sel.created_after is not None and (created is None or day < sel.created_after):
        return f"it was created {day}, before {sel.created_after}"
    if sel.created_before is not None and (created is None or day >= sel.created_before):
        return f"it was created {day}, not before {sel.created_before}"
    if sel.max_age_days is not None and now is not None and (
            created is None or now - created > dt.timedelta(days=sel.max_age_days)):
        return f"it was created {day}, more than {plural(sel.max_age_days, 'day')} ago"
    if not (sel.skip_deprecated and now is not None and img.deprecation_time):
        return ""
    deprecated = parse_time(img.deprecation_time)
    if deprecated is None or deprecated > now or (
            ours and img.tag_map.get(DEPRECATED_BY_TAG) == ours):
        return ""
    return f"it is deprecated since {img.deprecation_time}"


def creation_time(image: Image) -> dt.datetime | None:
    """The image's parsed ``CreationDate`` (None when it has none or it cannot be read)."""
    return parse_time(image.creation_date)


def newest_first(images: Iterable[Image]) -> list[Image]:
    """``latest``'s order: newest first by the parsed CreationDate (undated last), ties by
    the lowest image ID, so that plans stay deterministic."""
    by_id = sorted(images, key=lambda i: i.image_id)
    return sorted(by_id, key=lambda i: parse_time(i.creation_date) or _UNDATED, reverse=True)


def _sharing(rule: Rule, hits: Sequence[Image], now: dt.datetime | None,
             region: str, ours: str = "") -> tuple[list[Image], list[tuple[Image, str]]]:
    """Which of a rule's matches in one Region it shares, and why not the others."""
    sel = rule.select
    if not sel.lifecycle:
        return list(hits), []
    passing, dropped = [], []
    for img in hits:
        why = _lifecycle_reason(sel, img, now, ours) if img.state == ImageState.AVAILABLE else ""
        if why:
            dropped.append((img, why))
        else:
            passing.append(img)
    if sel.latest is not None:
        ranked = newest_first(i for i in passing if i.state == ImageState.AVAILABLE)
        newest = {i.key for i in ranked[:sel.latest]}
        glob = f" {sel.name}" if sel.name else ""
        dropped += [(i, f"it is not among the newest {sel.latest}{glob} in {region}")
                    for i in ranked[sel.latest:]]
        passing = [i for i in passing if i.key in newest or i.state != ImageState.AVAILABLE]
    return passing, dropped


def select(manifest: Manifest, images: Mapping[str, Sequence[Image]],
           restrict: Iterable[str] | None = None, now: str = "") -> Selection:
    """Match rules to images. ``images`` maps each listed Region to the caller's images there.

    Images that are not ``available`` are excluded with a warning (a disabled AMI cannot be
    shared). Explicit IDs that match nothing are errors; name/tag selectors that match
    nothing in a Region are warnings. A rule with lifecycle conditions (``latest``,
    ``exclude``, dates, ``deprecated``) manages every image its other selectors match and
    shares only with those that pass; ``now`` (ISO 8601) is the time the ages are taken at.
    """
    moment = parse_time(now) if now else None
    restrict = list(restrict) if restrict is not None else None
    found = _Matches()
    for rule in manifest.rules:
        _match_rule(rule, images, active_regions(rule, restrict), moment, found,
                    manifest.settings.name)
    managed: list[ManagedImage] = []
    # Images matched by the same rules declare the same principals: one (read-only) mapping
    # for all of them, not one per image (10,000 images x 50 principals adds up).
    by_rules: dict[tuple[tuple[str, ...], tuple[str, ...]],
                   tuple[Declared, Declared, bool]] = {}
    for key in sorted(found.matched):
        img, rules, sharing = found.matched[key]
        names = tuple(r.name for r in sharing)
        cache_key = (names, tuple(r.name for r in rules))
        if img.state != ImageState.AVAILABLE:
            found.findings.append(_not_available(img))
            continue
        if cache_key not in by_rules:
            by_rules[cache_key] = _declared(sharing, rules)
        launch, copy, manages_copy = by_rules[cache_key]
        held_launch, held_copy = _withheld(found.withheld.get(key, ()))
        managed.append(ManagedImage(img, names, launch, copy, manages_copy, held_launch,
                                    held_copy))
    matched_by = {key: tuple(r.name for r in rules)
                  for key, (_, rules, _) in found.matched.items()}
    return Selection(tuple(managed), tuple(found.findings), matched_by)


@dataclass
class _Matches:
    """What the rules matched: image -> (image, matching rules, rules sharing with it), the
    rules whose lifecycle conditions withhold an image (and why), and the findings."""

    matched: dict[tuple[str, str], tuple[Image, list[Rule], list[Rule]]] = field(
        default_factory=dict)
    withheld: dict[tuple[str, str], list[tuple[Rule, str]]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _match_rule(rule: Rule, images: Mapping[str, Sequence[Image]], regions: tuple[str, ...],
                moment: dt.datetime | None, found: _Matches, ours: str = "") -> None:
    """One rule's matches in ``regions``, with its no-match and image-not-found findings."""
    found_ids: set[str] = set()
    empty: list[str] = []
    for region in regions:
        hits = [img for img in images.get(region, ()) if rule_matches(rule, img)]
        found_ids.update(img.image_id for img in hits)
        if not hits and rule.select.by_attributes and not rule.select.ids:
            empty.append(region)
        passing, dropped = _sharing(rule, hits, moment, region, ours)
        for img in hits:
            found.matched.setdefault(img.key, (img, [], []))[1].append(rule)
        for img in passing:
            found.matched[img.key][2].append(rule)
        for img, why in dropped:
            found.withheld.setdefault(img.key, []).append((rule, why))
        found.findings.extend(
            Finding.of(Code.LIFECYCLE_UNSHARED, img.region, img.image_id,
                    f"{img.image_id} ({img.name}): rule {rule.name!r} manages it but shares "
                    f"nothing with it: {why}", rule=rule.name) for img, why in dropped)
    if empty:  # one finding per rule, naming every Region where it matched nothing
        found.findings.append(Finding.of(Code.NO_MATCH,
                                      empty[0] if len(empty) == 1 else "", rule.name,
                                      f"rule {rule.name!r} matches no image owned by the caller "
                                      f"in {', '.join(empty)}", rule=rule.name))
    # An ID is only known missing when every Region of the rule was searched.
    if regions == rule.regions:
        found.findings.extend(
            Finding.of(Code.IMAGE_NOT_FOUND, ",".join(regions), ami,
                    f"rule {rule.name!r}: {ami} is not an image owned by the caller in "
                    f"{', '.join(regions)} (it does not exist there, is owned by another "
                    f"account, or does not match the rule's name/tags)", rule=rule.name)
            for ami in rule.select.ids if ami not in found_ids)


def _not_available(img: Image) -> Finding:
    code = Code.IMAGE_DISABLED if img.state == ImageState.DISABLED else Code.IMAGE_NOT_AVAILABLE
    why = ("a disabled AMI has no launch permissions and cannot be shared; re-enable it "
           "(aws ec2 enable-image) or drop it from the rule"
           if img.state == ImageState.DISABLED else "only available AMIs are reconciled")
    return Finding.about(code, f"{img.image_id} ({img.name})", img.region, img.image_id,
                         f"{img.image_id} ({img.name}) is {img.state}; skipped: {why}")


def _withheld(dropped: Iterable[tuple[Rule, str]]
              ) -> tuple[dict[Principal, str], dict[Principal, str]]:
    """What the rules whose lifecycle conditions drop an image would declare, and why not."""
    launch: dict[Principal, str] = {}
    copy: dict[Principal, str] = {}
    for rule, why in dropped:
        for p in rule.launch:
            launch.setdefault(p, f"rule {rule.name}: {why}")
        for p in rule.copy:
            copy.setdefault(p, f"rule {rule.name}: {why}")
    return launch, copy


def _declared(sharing: Sequence[Rule],
              matching: Sequence[Rule]) -> tuple[Declared, Declared, bool]:
    """Union of what the ``sharing`` rules declare: principal -> names of the rules declaring
    it; copy permissions are reconciled when any ``matching`` rule has ``copy:``."""
    launch: dict[Principal, list[str]] = {}
    copy: dict[Principal, list[str]] = {}
    for r in sharing:
        _declare(launch, r.launch, r.name)
        _declare(copy, r.copy, r.name)
    return ({p: tuple(v) for p, v in launch.items()},
            {p: tuple(v) for p, v in copy.items()},
            any(r.manages_copy for r in matching))


# Findings about a rule rather than an image: a run restricted to some images (``--image``)
# lists only those (and their lifecycle families), so it cannot tell whether a selector
# matches nothing or an ID is missing; the whole run says so.
_ABOUT_THE_LISTING = frozenset({Code.NO_MATCH, Code.IMAGE_NOT_FOUND})


def only(selection: Selection, images: Iterable[tuple[str, str]]) -> Selection:
    """``selection`` restricted to ``images`` ((Region, image ID) keys): their managed
    entries, the findings about them, and the rules matching them. The listing it was
    selected from also held the other builds of their ``latest`` families, which decide
    whether a rule shares with them, and which this run does not manage."""
    keep = set(images)
    ids = {image_id for _, image_id in keep}
    return Selection(
        tuple(m for m in selection.managed if m.image.key in keep),
        tuple(f for f in selection.findings
              if f.code not in _ABOUT_THE_LISTING and f.resource in ids),
        {key: rules for key, rules in selection.matched_by.items() if key in keep})


def latest_rules(manifest: Manifest, image: Image) -> tuple[Rule, ...]:
    """The rules with ``latest: N`` that match ``image`` in its Region: whether they share
    with it depends on the other builds they match there (its family)."""
    return tuple(rule for rule in manifest.rules
                 if rule.select.latest is not None and image.region in rule.regions
                 and rule_matches(rule, image))


def displaced(manifest: Manifest, image: Image, family: Sequence[Image],
              now: str = "") -> tuple[Image, ...]:
    """The builds among ``family`` (the images the ``latest`` rules matching ``image`` match
    in its Region) whose shares ``image`` changes by being there: the ones a new build
    pushes out of a rule's newest N. Pure: two selections, with and without it."""
    others = sorted({i.image_id: i for i in family if i.image_id != image.image_id}.values(),
                    key=lambda i: i.image_id)
    region = [image.region]

    def shares(images: Sequence[Image]) -> dict[tuple[str, str], tuple[Any, Any]]:
        chosen = select(manifest, {image.region: images}, region, now)
        return {m.image.key: (dict(m.launch), dict(m.copy)) for m in chosen.managed}

    before = shares(others)
    after = shares(sorted([*others, image], key=lambda i: i.image_id))
    return tuple(i for i in others if before.get(i.key) != after.get(i.key))
