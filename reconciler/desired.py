"""Desired state: which owned images the rules select, and what each must be shared with.

Pure functions over the manifest and the image listing; no AWS.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .manifest import Manifest, Rule
from .model import Finding, Image, Principal, Severity

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


@dataclass(frozen=True)
class Selection:
    managed: tuple[ManagedImage, ...]
    findings: tuple[Finding, ...]


def rule_matches(rule: Rule, image: Image) -> bool:
    sel = rule.select
    if sel.ids and image.image_id not in sel.ids:
        return False
    if sel.name is not None and not fnmatch.fnmatchcase(image.name, sel.name):
        return False
    tags = image.tag_map
    return all(tags.get(k) == v for k, v in sel.tags)


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


def select(manifest: Manifest, images: Mapping[str, Sequence[Image]],
           restrict: Iterable[str] | None = None) -> Selection:
    """Match rules to images. ``images`` maps each listed Region to the caller's images there.

    Images that are not ``available`` are excluded with a warning (a disabled AMI cannot be
    shared). Explicit IDs that match nothing are errors; name/tag selectors that match
    nothing in a Region are warnings.
    """
    restrict = list(restrict) if restrict is not None else None
    findings: list[Finding] = []
    matched: dict[tuple[str, str], tuple[Image, list[Rule]]] = {}
    for rule in manifest.rules:
        regions = active_regions(rule, restrict)
        found_ids: set[str] = set()
        empty: list[str] = []
        for region in regions:
            hits = [img for img in images.get(region, ()) if rule_matches(rule, img)]
            found_ids.update(img.image_id for img in hits)
            if not hits and rule.select.by_attributes and not rule.select.ids:
                empty.append(region)
            for img in hits:
                matched.setdefault(img.key, (img, []))[1].append(rule)
        if empty:  # one finding per rule, naming every Region where it matched nothing
            findings.append(Finding(Severity.WARNING, "no-match",
                                    empty[0] if len(empty) == 1 else "", rule.name,
                                    f"rule {rule.name!r} matches no image owned by the caller "
                                    f"in {', '.join(empty)}"))
        # An ID is only known missing when every Region of the rule was searched.
        if regions == rule.regions:
            for ami in rule.select.ids:
                if ami not in found_ids:
                    findings.append(Finding(
                        Severity.ERROR, "image-not-found", ",".join(regions), ami,
                        f"rule {rule.name!r}: {ami} is not an image owned by the caller in "
                        f"{', '.join(regions)} (it does not exist there, is owned by another "
                        f"account, or does not match the rule's name/tags)"))
    managed: list[ManagedImage] = []
    # Images matched by the same rules declare the same principals: one (read-only) mapping
    # for all of them, not one per image (10,000 images x 50 principals adds up).
    by_rules: dict[tuple[str, ...], tuple[Declared, Declared, bool]] = {}
    for key in sorted(matched):
        img, rules = matched[key]
        names = tuple(r.name for r in rules)
        if img.state != "available":
            code = "image-disabled" if img.state == "disabled" else "image-not-available"
            why = ("a disabled AMI has no launch permissions and cannot be shared; re-enable it "
                   "(aws ec2 enable-image) or drop it from the rule"
                   if img.state == "disabled" else "only available AMIs are reconciled")
            findings.append(Finding(Severity.WARNING, code, img.region, img.image_id,
                                    f"{img.image_id} ({img.name}) is {img.state}; skipped: {why}"))
            continue
        if names not in by_rules:
            by_rules[names] = _declared(rules)
        launch, copy, manages_copy = by_rules[names]
        managed.append(ManagedImage(img, names, launch, copy, manages_copy))
    return Selection(tuple(managed), tuple(findings))


def _declared(rules: Sequence[Rule]) -> tuple[Declared, Declared, bool]:
    """Union of what ``rules`` declare: principal -> names of the rules declaring it."""
    launch: dict[Principal, list[str]] = {}
    copy: dict[Principal, list[str]] = {}
    for r in rules:
        _declare(launch, r.launch, r.name)
        _declare(copy, r.copy, r.name)
    return ({p: tuple(v) for p, v in launch.items()},
            {p: tuple(v) for p, v in copy.items()},
            any(r.manages_copy for r in rules))
