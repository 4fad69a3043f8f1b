"""AMI usage reports (SPEC §7b, :mod:`reconciler.core.planning.usage`): what a plan reads with
``settings.usage_reports`` (:func:`consult`), and the reports ``reconcile usage-reports``
creates for the next plan (:func:`request`).

Calls: a plan makes none unless the setting is on and it removes an account's launch
permission from an image; then, per owner account and Region of such images, one paginated
``DescribeImageUsageReports`` (200 image IDs a call) and, for the reports that decide, one
paginated ``DescribeImageUsageReportEntries`` (200 report IDs a call), then plans again.
The request command adds, per owner and Region, one ``DescribeImageUsageReports`` (EC2 allows
one pending report per AMI: an image with one gets no other) and one
``CreateImageUsageReport`` per image (EC2 API Reference, CreateImageUsageReport: its
``ClientToken``, which botocore fills in, makes a retried call create one report).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..core.desired import Selection
from ..core.manifest import Manifest
from ..core.model import Identity, RegionKey, parse_time
from ..core.plan import Planned
from ..core.planning import CurrentState, PlanOptions, Settled, settle
from ..core.planning.usage import (
    CHECKED,
    KEPT_FOR,
    MAX_ACCOUNTS,
    PENDING,
    ImageUsage,
    UsageReport,
    requested,
    to_read,
    wanted,
)
from .aws import CallError, aws_call
from .listing import Owner
from .reader import Reader

# what a new report checks: EC2 instances, and launch templates (their 20 newest versions,
# EC2's default version-depth)
RESOURCE_TYPES = [{"ResourceType": t} for t in CHECKED]


def consult(manifest: Manifest, owners: Mapping[str, Owner], identity: Identity,
            selection: Selection, state: CurrentState, options: PlanOptions,
            settled: Settled) -> tuple[CurrentState, Settled]:
    """With ``settings.usage_reports``: the reports of the images ``settled`` removes an
    account from, and the settling again with them; else (or with no such image) as given,
    without a call."""
    if not manifest.settings.usage_reports:
        return state, settled
    want = wanted(settled, state, manifest)
    if not want:
        return state, settled
    owner_of = {RegionKey(*img.key): img.owner_id
                for img in (*(m.image for m in selection.managed), *state.released)}
    found = read_usage({a: o.reader for a, o in owners.items()}, want, owner_of, options.now)
    state = replace(state, usage=found)
    return state, settle(manifest, identity, selection, state, options)


def read_usage(readers: Mapping[str, Reader], want: Mapping[RegionKey, frozenset[str]],
               owner_of: Mapping[RegionKey, str], now: str) -> dict[RegionKey, ImageUsage]:
    """Image -> its reports and the entries of those that decide for the ``want``-ed
    accounts; an owner and Region whose reports cannot be read: every image there says why."""
    places: dict[tuple[str, str], list[RegionKey]] = defaultdict(list)
    for key in want:
        places[(owner_of.get(key, ""), key.region)].append(key)
    out: dict[RegionKey, ImageUsage] = {}
    for owner in sorted({o for o, _ in places}):
        reader = readers.get(owner)
        regions = sorted(r for o, r in places if o == owner)
        if reader is None:
            continue
        mine = {r: places[(owner, r)] for r in regions}
        for found in reader.map(functools.partial(_read_region, reader, mine, want, now),
                                regions):
            out.update(found)
    return out


def _read_region(reader: Reader, images: Mapping[str, Sequence[RegionKey]],
                 want: Mapping[RegionKey, frozenset[str]], now: str,
                 region: str) -> dict[RegionKey, ImageUsage]:
    keys = images[region]
    try:
        reports = reader.usage_reports(region, [k.resource for k in keys])
        by_image: dict[str, list[UsageReport]] = defaultdict(list)
        for r in reports:
            by_image[r.image_id].append(r)
        ids = set().union(*(to_read(by_image[k.resource], want[k], now) for k in keys))
        entries = reader.usage_entries(region, sorted(ids)) if ids else []
    except CallError as exc:
        return {k: ImageUsage(error=str(exc)) for k in keys}
    return {k: ImageUsage(tuple(by_image[k.resource]),
                          tuple(e for e in entries if e.report_id in
                                {r.report_id for r in by_image[k.resource]})) for k in keys}


@dataclass(frozen=True)
class Requested:
    """One image the next plan removes an account from, and the report asked for it."""

    region: str
    image_id: str
    name: str
    accounts: tuple[str, ...]
    report_id: str = ""  # the report created (or, when one was pending, that one)
    pending_since: str = ""  # a report was pending already: none was created
    error: str = ""
    expires: str = ""  # when EC2 deletes the report (30 days after its creation)

    @property
    def created(self) -> bool:
        return bool(self.report_id) and not self.pending_since and not self.error


def request(planned: Planned, readers: Mapping[str, Reader], dry_run: bool = False,
            now: str = "") -> list[Requested]:
    """Create a report for each image ``planned`` removes an account from (the accounts it
    removes or withholds; all accounts when more than 200), unless one is pending already."""
    asks = requested(planned.apply.consulted)
    names = planned.display.image_names
    places: dict[tuple[str, str], list[RegionKey]] = defaultdict(list)
    for key in asks:
        places[(planned.apply.resource_owner.get(key, ""), key.region)].append(key)
    at = parse_time(now) or dt.datetime.now(dt.UTC)
    expires = (at + KEPT_FOR).date().isoformat()
    out: list[Requested] = []
    for (owner, region), keys in sorted(places.items()):
        reader = readers[owner]
        pending = {r.image_id: r for r in reader.usage_reports(region, [k.resource for k in keys])
                   if r.state == PENDING}
        for key in sorted(keys):
            base = Requested(region, key.resource, names.get(key.resource, ""), asks[key])
            if (p := pending.get(key.resource)) is not None:
                out.append(replace(base, report_id=p.report_id, pending_since=p.created))
            elif dry_run:
                out.append(base)
            else:
                try:
                    rid = create_report(reader, region, key.resource, asks[key])
                    out.append(replace(base, report_id=rid, expires=expires))
                except CallError as exc:
                    out.append(replace(base, error=str(exc)))
    return out


def create_report(reader: Reader, region: str, image_id: str, accounts: Sequence[str]) -> str:
    """``CreateImageUsageReport`` of ``image_id`` for ``accounts`` (every account when there
    are more than one call takes), checking instances and launch templates: its ID."""
    with aws_call("ec2", "CreateImageUsageReport", f"{region} {image_id}"):
        extra = {"AccountIds": list(accounts)} if len(accounts) <= MAX_ACCOUNTS else {}
        resp = reader.clients.get("ec2", region).create_image_usage_report(
            ImageId=image_id, ResourceTypes=RESOURCE_TYPES, **extra)
        return str(resp["ReportId"])


