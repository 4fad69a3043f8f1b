"""Findings about a normal stage of an image's life, said once instead of on every plan:
a build a rule's lifecycle conditions withhold (``lifecycle-unshared``) is one line per
image when the plan removes something from it (the line explains the removal), else one
line per rule and Region. A year of weekly builds is one line, not fifty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from ..desired import Selection
from ..findings import Code, Finding
from ..model import Operation, plural

MOST = 5  # image IDs named in a summary line


def _ids(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - MOST} more" if len(ids) > MOST else ""
    return ", ".join(ids[:MOST]) + more


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
