"""Findings about a normal stage of an image's life, said once instead of on every plan.

- A build a rule's lifecycle conditions withhold (``lifecycle-unshared``): one line per
  image when the plan removes something from it (the line explains the removal), else one
  line per rule and Region. A year of weekly builds is one line, not fifty.
- A disabled or pending image a name or tag selector matches (``image-disabled``,
  ``image-not-available``): a normal stage (EC2 API Reference, DisableImage: "Sets the AMI
  state to disabled and removes all launch permissions from the AMI"; an AMI is disabled
  before its snapshots are archived), so one ``images-skipped`` info line per Region, never a
  failure. An image a rule names by ID keeps its warning: the manifest asks for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from ..desired import Selection
from ..findings import Code, Finding
from ..manifest import Manifest
from ..model import Operation, plural

MOST = 5  # image IDs named in a summary line


def _ids(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - MOST} more" if len(ids) > MOST else ""
    return ", ".join(ids[:MOST]) + more


def skipped_condensed(findings: Iterable[Finding], manifest: Manifest) -> list[Finding]:
    """``findings`` with the disabled or pending images a name or tag selector matched
    folded into one info line per Region (an image a rule names by ID keeps its warning)."""
    by_id = {ami for rule in manifest.rules for ami in rule.select.ids}
    kept: list[Finding] = []
    skipped: dict[str, list[str]] = defaultdict(list)
    for f in findings:
        if f.code in (Code.IMAGE_DISABLED, Code.IMAGE_NOT_AVAILABLE) and f.resource not in by_id:
            skipped[f.region].append(f"{f.resource} ({_state_of(f)})")
        else:
            kept.append(f)
    return kept + [
        Finding.of(Code.IMAGES_SKIPPED, region, "",
                   f"{plural(len(ids), 'matched image')} in {region} "
                   f"{'is' if len(ids) == 1 else 'are'} disabled or not available and skipped "
                   "(disabling removes launch permissions; re-enable an image with aws ec2 "
                   f"enable-image to share it again): {_ids(sorted(ids))}")
        for region, ids in sorted(skipped.items())]


def withheld_condensed(findings: Iterable[Finding], ops: Iterable[Operation],
                       selection: Selection) -> list[Finding]:
    """``findings`` with the builds a rule's lifecycle conditions withhold, and that the plan
    removes nothing from, folded into one line per rule and Region."""
    changed = {op.resource for op in ops}
    snapshots_of = {m.image.image_id: set(m.image.snapshot_ids) for m in selection.managed}
    kept: list[Finding] = []
    withheld: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in findings:
        if f.code is Code.LIFECYCLE_UNSHARED and f.resource not in changed \
                and not snapshots_of.get(f.resource, set()) & changed:
            withheld[(f.rule, f.region)].append(f.resource)
        else:
            kept.append(f)
    return kept + [
        Finding.of(Code.LIFECYCLE_UNSHARED, region, rule,
                   f"rule {rule!r} manages {plural(len(ids), 'build')} in {region} that its "
                   "lifecycle conditions (latest, exclude, dates, deprecated) share nothing "
                   f"with: {_ids(sorted(ids))}", rule=rule)
        for (rule, region), ids in sorted(withheld.items())]


def _state_of(f: Finding) -> str:
    return "disabled" if f.code is Code.IMAGE_DISABLED else "not available"
