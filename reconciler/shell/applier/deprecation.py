"""Retired builds deprecated before the operations (``settings.deprecate_retired``): one
``EnableImageDeprecation`` per image, ``DeprecateAt`` the start of the next minute (EC2 API
reference, EnableImageDeprecation: seconds are rounded to the minute, and a time in the
past is refused). A failed deprecation is reported; the operations still run (without the
setting they would run anyway).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...core.errors import AwsError
from ...core.model import RegionKey
from ..aws import aws_call
from ..concurrency import parallel_map
from .executor import Applier, Result
from .writes import WriteError

API = "EnableImageDeprecation"


@dataclass(frozen=True)
class DeprecationReport:
    deprecated: int = 0
    failed: tuple[str, ...] = ()  # one message per failed call


def deprecate_at(now: dt.datetime) -> dt.datetime:
    """The whole minute after ``now``: never in the past, nothing for EC2 to round."""
    return now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def deprecate(applier: Applier, images: Sequence[RegionKey],
              clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
              ) -> DeprecationReport:
    """Deprecate ``images`` now (one call each, one at a time on a worker, so that a signal
    never lands between a call and its log line)."""
    if not images or applier.stop.is_set():
        return DeprecationReport()

    def call(key: RegionKey) -> str:
        region, image_id = key
        with applier.in_flight():
            if applier.stop.is_set():
                return ""
            when = deprecate_at(clock())
            try:
                with aws_call("ec2", API, f"{region} {image_id}"):
                    applier.client("ec2", region, image_id).enable_image_deprecation(
                        ImageId=image_id, DeprecateAt=when)
            except (AwsError, WriteError) as exc:
                applier.log_bookkeeping(_record(key, when, str(exc)))
                return f"{API} on {region} {image_id}: {exc}"
            applier.log_bookkeeping(_record(key, when, ""))
            return "-"

    results = parallel_map(call, list(images), 1)
    return DeprecationReport(sum(1 for r in results if r == "-"),
                             tuple(r for r in results if r not in ("", "-")))


def _record(key: RegionKey, when: dt.datetime, error: str) -> dict[str, object]:
    return {"api": API, "action": "deprecate", "kind": "deprecation", "region": key.region,
            "resource": key.resource,
            "deprecate_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "result": (Result.FAILED if error else Result.APPLIED).value,
            **({"error": error} if error else {})}
