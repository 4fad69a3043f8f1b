"""Ownership tags (``settings.ownership: tag``), written after the operations of an apply:
what to tag and untag, and what became of it. :meth:`~.executor.Applier.tag_calls` makes
the calls, so that a stopped run settles them with the operations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...core.model import RegionKey
from ...core.plan import Ownership
from .executor import Applier, ApplyReport


@dataclass(frozen=True)
class TagReport:
    """The ownership-tag writes of one apply (bookkeeping, not operations)."""

    tagged: int = 0
    untagged: int = 0
    failed: tuple[str, ...] = ()  # one message per failed call


def write_tags(applier: Applier, ownership: Ownership, report: ApplyReport | None = None) -> TagReport:
    """Write the ownership tags after the operations: tag the managed images (and the
    snapshots whose copy permissions the tool manages); untag released ones whose
    revocations all went through (a failed one keeps its tag, so the next run retries it)."""
    if applier.stop.is_set():
        return TagReport()
    failed = {RegionKey(o.operation.region, o.operation.resource)
              for o in (report.failed if report else ())}
    failed |= {RegionKey(r, ownership.snapshot_of[RegionKey(r, sid)]) for r, sid in set(failed)
               if (r, sid) in ownership.snapshot_of}
    tag = [*ownership.tag, *ownership.tag_snapshots]
    untag = [k for k in (*ownership.untag, *ownership.untag_snapshots) if k not in failed]
    tagged, tag_errors = applier.tag_calls(tag, ownership.name, add=True)
    untagged, untag_errors = applier.tag_calls(untag, ownership.name, add=False)
    return TagReport(tagged, untagged, (*tag_errors, *untag_errors))
