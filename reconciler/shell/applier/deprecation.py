"""Retired builds deprecated before the operations (``settings.deprecate_retired``), and the
manifest's deprecation taken back from builds a rule shares again.

Deprecating is the tag ``reconciler:deprecated-by=<name>`` (so that the manifest knows the
deprecation is its own), then ``EnableImageDeprecation`` with ``DeprecateAt`` the start of
the next minute (EC2 API reference, EnableImageDeprecation: seconds are rounded to the
minute, and a time in the past is refused). Taking it back is ``DisableImageDeprecation``,
then the tag removed. One image at a time; a failed call is reported, and the operations
still run (without the setting they would run anyway).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...core.errors import AwsError
from ...core.model import DEPRECATED_BY_TAG, RegionKey
from ..aws import aws_call
from ..concurrency import parallel_map
from .executor import Applier, Result
from .writes import WriteError


@dataclass(frozen=True)
class DeprecationReport:
    deprecated: int = 0
    undeprecated: int = 0
    failed: tuple[str, ...] = ()  # one message per failed call


def deprecate_at(now: dt.datetime) -> dt.datetime:
    """The whole minute after ``now``: never in the past, nothing for EC2 to round."""
    return now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)


def deprecate(applier: Applier, images: Sequence[RegionKey], name: str,
              undo: Sequence[RegionKey] = (),
              clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
              ) -> DeprecationReport:
    """Deprecate ``images`` now and take the deprecation back from ``undo`` (one call
    each, one at a time on a worker, so that a signal never lands between a call and its
    log line)."""
    if not (images or undo) or applier.stop.is_set():
        return DeprecationReport()
    tag = [{"Key": DEPRECATED_BY_TAG, "Value": name}]

    def call(job: tuple[bool, RegionKey]) -> tuple[bool, str] | None:
        """(deprecated rather than taken back, the error or ""); None: not started."""
        on, (region, image_id) = job
        api = "EnableImageDeprecation" if on else "DisableImageDeprecation"
        when = deprecate_at(clock()) if on else None
        with applier.in_flight():
            if applier.stop.is_set():
                return None
            try:
                # The tag is there whenever the deprecation is: set before it, removed after.
                # A tag without a deprecation is harmless; a deprecation without the tag
                # would not be known as the manifest's own.
                ec2 = applier.client("ec2", region, image_id)
                if on:
                    with aws_call("ec2", "CreateTags", f"{region} {image_id}"):
                        ec2.create_tags(Resources=[image_id], Tags=tag)
                    with aws_call("ec2", api, f"{region} {image_id}"):
                        ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=when)
                else:
                    with aws_call("ec2", api, f"{region} {image_id}"):
                        ec2.disable_image_deprecation(ImageId=image_id)
                    with aws_call("ec2", "DeleteTags", f"{region} {image_id}"):
                        ec2.delete_tags(Resources=[image_id], Tags=tag)
            except (AwsError, WriteError) as exc:
                applier.log_bookkeeping(_record(api, region, image_id, when, str(exc)))
                return on, str(exc)
            applier.log_bookkeeping(_record(api, region, image_id, when, ""))
            return on, ""

    done = [r for r in parallel_map(call, [*((True, k) for k in images),
                                          *((False, k) for k in undo)], 1) if r is not None]
    return DeprecationReport(sum(1 for on, error in done if on and not error),
                             sum(1 for on, error in done if not on and not error),
                             tuple(error for _, error in done if error))


def _record(api: str, region: str, image_id: str, when: dt.datetime | None,
            error: str) -> dict[str, object]:
    return {"api": api, "action": "deprecate" if when else "undeprecate",
            "kind": "deprecation", "region": region, "resource": image_id,
            **({"deprecate_at": when.strftime("%Y-%m-%dT%H:%M:%SZ")} if when else {}),
            "result": (Result.FAILED if error else Result.APPLIED).value,
            **({"error": error} if error else {})}
