"""Reads current state from AWS. The only module besides the applier that calls AWS.

Calls made by a plan (and nothing else):
* ``sts:GetCallerIdentity`` once;
* ``ec2:DescribeImages`` (``Owners=['self']``) per Region, in pages of 20, 100, 500, then
  1,000 images (:meth:`Reader.image_pages`);
* ``ec2:DescribeImageAttribute launchPermission`` once per *managed* image;
* ``ec2:GetImageBlockPublicAccessState`` once per Region, only where a public share
  would be added;
* ``ec2:DescribeSnapshots`` for the managed images' snapshots, batched by ID list;
* ``ec2:DescribeSnapshotAttribute createVolumePermission`` once per snapshot of an image
  whose rules use ``copy``;
* ``kms:DescribeKey`` and ``kms:GetKeyPolicy`` once per distinct key, and
  ``kms:ListAliases`` once per Region that has such keys (KMS mode not ``off``);
* with ``settings.usage_reports``, only for images the plan removes an account from:
  ``ec2:DescribeImageUsageReports`` (200 image IDs a call, paginated) and
  ``ec2:DescribeImageUsageReportEntries`` for the reports that decide (200 a call) per
  owner and Region (see :mod:`reconciler.shell.usage`);
* only when the plan would take a principal out of a key's statements (see
  :func:`reconciler.shell.gather.build_plan`): ``ec2:DescribeSnapshots`` (the owner's encrypted
  snapshots, paginated) once per such owner and Region, ``DescribeSnapshotAttribute`` per
  snapshot encrypted with such a key whose copy permissions were not read yet, and
  ``DescribeImageAttribute`` per unmanaged image backed by one.

Every call runs inside :func:`reconciler.shell.aws.aws_call`: whatever fails (an AWS error, a
connection, an answer that is not an AWS response) becomes one line naming the call.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from ..core.errors import AwsError
from ..core.kms import KeyInfo, KeyManager
from ..core.model import BlockState, Counted, Identity, Image, Principal, RegionKey, Snapshot
from ..core.pacing import with_eta
from ..core.planning.usage import UsageEntry, UsageReport
from .aws import CallError, Clients, aws_call
from .concurrency import parallel_map
from .progress import NoProgress, Progress

SNAPSHOT_BATCH = 200
# DescribeImages listing pages: a small first one, each next one GROWTH times larger, up to
# the largest page EC2 answers.
FIRST_PAGE = 20
GROWTH = 5
PAGE = 1000
USAGE_BATCH = 200  # image or report IDs of one DescribeImageUsageReports / ...Entries call
FILTER_VALUES = 200  # values of one DescribeImages filter per call
T = TypeVar("T")
R = TypeVar("R")


def parse_image(raw: dict[str, Any], region: str) -> Image:
    snaps: list[str] = []
    encrypted = False
    for bdm in raw.get("BlockDeviceMappings") or []:
        ebs = bdm.get("Ebs") or {}
        if ebs.get("SnapshotId"):
            snaps.append(ebs["SnapshotId"])
        encrypted = encrypted or bool(ebs.get("Encrypted"))
    tags = _tags(raw)
    return Image(
        image_id=raw["ImageId"],
        region=region,
        owner_id=raw.get("OwnerId", ""),
        name=raw.get("Name", ""),
        state=raw.get("State", "available"),
        public=bool(raw.get("Public")),
        tags=tags,
        snapshot_ids=tuple(snaps),
        encrypted=encrypted,
        product_codes=tuple(sorted(str(c.get("ProductCodeId", "")) for c in
                                   raw.get("ProductCodes") or [])),
        creation_date=str(raw.get("CreationDate") or ""),
        deprecation_time=str(raw.get("DeprecationTime") or ""),
        last_launched=str(raw.get("LastLaunchedTime") or ""),
        usage_operation=str(raw.get("UsageOperation") or ""),
        root_device_type=str(raw.get("RootDeviceType") or "ebs"),
    )


def _tags(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(t["Key"]), str(t.get("Value", ""))) for t in raw.get("Tags") or []))


def parse_snapshot(raw: dict[str, Any], region: str) -> Snapshot:
    return Snapshot(raw["SnapshotId"], region, bool(raw.get("Encrypted")),
                    raw.get("KmsKeyId", "") or "", raw.get("OwnerId", ""), _tags(raw))


def parse_launch_permissions(entries: Iterable[dict[str, Any]], image_id: str) -> frozenset[Principal]:
    """Launch or create-volume permission entries (one shape for both) as principals."""
    out = set()
    for entry in entries:
        try:
            out.add(Principal.from_dict(entry))
        except ValueError as exc:
            # Refuse to plan rather than prune a permission we do not understand.
            raise AwsError(f"{image_id}: unexpected launch permission {entry!r}: {exc}") from None
    return frozenset(out)


def region_of(item: object) -> str:
    """The Region a read's item is in: an image, a (Region, ID) pair, or a Region name."""
    if isinstance(item, Image):
        return item.region
    if isinstance(item, tuple) and item and isinstance(item[0], str):
        return item[0]
    return item if isinstance(item, str) else ""


class Reader:
    def __init__(self, clients: Clients, concurrency: int = 16) -> None:
        self.clients = clients
        self.concurrency = max(1, concurrency)
        self._identity: Identity | None = None
        self._identity_lock = threading.Lock()
        self._identity_error: Exception | None = None
        self.progress: Progress = NoProgress()

    def map(self, fn: Callable[[T], R], items: Sequence[T], label: str = "",
            call: tuple[str, str] | None = None) -> list[R]:
        """Run ``fn`` over ``items`` on the bounded pool, the Regions' items interleaved (each
        Region has its own request buckets); results keep the input order.

        With a ``label``, progress is reported (a bar on a terminal for long runs); with the
        (service, action) each item calls, the label says how long the request rate makes it."""
        if label:
            if call is not None:
                counts = collections.Counter((region_of(i), *call) for i in items)
                label = with_eta(label, self.clients.pacer.estimate(counts))
            self.progress.start(label, len(items))
            inner = fn

            def fn(item: T) -> R:
                result = inner(item)
                self.progress.advance()
                return result

        try:
            return parallel_map(fn, items, self.concurrency, region_of)
        finally:
            if label:
                self.progress.finish()

    def prepare(self, region: str | None = None) -> None:
        """Make the EC2 client of ``region`` (the session's by default) now, or wait for the
        thread making it (its service model is megabytes of JSON to parse)."""
        self.clients.get("ec2", region)

    def identity(self) -> Identity:
        """The caller, from one ``GetCallerIdentity`` call per run (threads asking at the same
        time wait for that one; when it failed, they get its error without asking again)."""
        with self._identity_lock:
            if self._identity_error is not None:
                raise self._identity_error
            try:
                return self._read_identity()
            except Exception as exc:
                self._identity_error = exc
                raise

    def _read_identity(self) -> Identity:
        if self._identity is None:
            with aws_call("sts", "GetCallerIdentity"):
                sts = self.clients.get("sts")
                # A run's first request: EC2's client, which every run needs next, is made
                # while it is on its way.
                self.clients.preload("ec2")
                resp = sts.get_caller_identity()
                self._identity = Identity(account=str(resp["Account"]), arn=str(resp["Arn"]))
        return self._identity

    def list_images(self, region: str) -> list[Image]:
        """Every image the caller owns in ``region`` (disabled ones included, to warn on them)."""
        return sorted(itertools.chain.from_iterable(self.image_pages(region)),
                      key=lambda i: i.image_id)

    def image_pages(self, region: str) -> Iterator[list[Image]]:
        """:meth:`list_images`, one page of the listing at a time, as AWS answers them.

        A page takes AWS longer the more images it holds ("Pagination in the Amazon EC2 API",
        EC2 developer guide), and the reads of a page's images start as it arrives: a small
        first page (``FIRST_PAGE``) starts them sooner; each next page is ``GROWTH`` times
        larger (up to ``PAGE``), so that it comes while the reads of the last go on and a
        large listing still takes few calls (20, 100, 500, then 1,000 a page)."""
        with aws_call("ec2", "DescribeImages", region):
            ec2 = self.clients.get("ec2", region)
            size, token = FIRST_PAGE, ""
            seen: set[str] = set()  # page tokens
            listed: set[str] = set()  # image IDs
            while True:
                page = ec2.describe_images(Owners=["self"], IncludeDisabled=True,
                                           IncludeDeprecated=True, MaxResults=size,
                                           **({"NextToken": token} if token else {}))
                images = [parse_image(raw, region) for raw in page.get("Images", [])]
                # an image listed again on a later page (the listing changed meanwhile) once
                yield [img for img in images if img.image_id not in listed]
                listed.update(img.image_id for img in images)
                token = str(page.get("NextToken") or "")
                if not token:
                    return
                if token in seen:  # an answer that would list the same page for ever
                    raise AwsError(f"DescribeImages in {region} returned the same NextToken "
                                   "twice")
                seen.add(token)
                size = min(PAGE, size * GROWTH)

    def enabled_regions(self) -> list[str]:
        """The Regions enabled for the account (``DescribeRegions``), sorted."""
        with aws_call("ec2", "DescribeRegions"):
            resp = self.clients.get("ec2").describe_regions()
            return sorted(str(r["RegionName"]) for r in resp.get("Regions", []))

    def tagged_images(self, region: str, key: str, value: str) -> list[Image]:
        """The caller's images in ``region`` carrying the tag ``key=value``."""
        return self.filtered_images(region, [{"Name": f"tag:{key}", "Values": [value]}])

    def filtered_images(self, region: str, filters: Sequence[Mapping[str, Any]]) -> list[Image]:
        """The caller's images in ``region`` that every one of ``filters`` (EC2
        ``DescribeImages`` filters, ANDed) matches: one paginated call."""
        images: list[Image] = []
        with aws_call("ec2", "DescribeImages", region):
            ec2 = self.clients.get("ec2", region)
            for page in ec2.get_paginator("describe_images").paginate(
                    Owners=["self"], IncludeDisabled=True, IncludeDeprecated=True,
                    Filters=[dict(f) for f in filters]):
                images.extend(parse_image(raw, region) for raw in page.get("Images", []))
        return sorted(images, key=lambda i: i.image_id)

    def images_by(self, region: str, name: str, values: Sequence[str]) -> list[Image]:
        """The caller's images in ``region`` whose filter ``name`` (``image-id``,
        ``block-device-mapping.snapshot-id``) is one of ``values``: a filter, not
        ``ImageIds``, so that an ID that is gone is left out instead of failing the call;
        ``FILTER_VALUES`` values per call."""
        wanted = sorted(set(values))
        batches = [wanted[i:i + FILTER_VALUES] for i in range(0, len(wanted), FILTER_VALUES)]
        found: dict[str, Image] = {}
        for batch in batches:
            found.update((img.image_id, img) for img in self.filtered_images(
                region, [{"Name": name, "Values": batch}]))
        return [found[i] for i in sorted(found)]

    def public_image_count(self, region: str) -> int:
        """How many of the caller's images in ``region`` are public (EC2's "Public AMIs"
        quota counts them all): one ``DescribeImages`` filtered on ``is-public``."""
        return len(self.filtered_images(region, [{"Name": "is-public", "Values": ["true"]}]))

    def list_all_images(self, regions: Sequence[str]) -> dict[str, list[Image]]:
        return dict(zip(regions, self.map(self.list_images, list(regions)), strict=True))

    def launch_permissions(self, image: Image) -> frozenset[Principal]:
        with aws_call("ec2", "DescribeImageAttribute", f"{image.region} {image.image_id}"):
            resp = self.clients.get("ec2", image.region).describe_image_attribute(
                ImageId=image.image_id, Attribute="launchPermission")
            entries = resp.get("LaunchPermissions") or []
        return parse_launch_permissions(entries, image.image_id)

    def all_launch_permissions(self, images: Sequence[Image]) -> dict[RegionKey, frozenset[Principal]]:
        results = self.map(self.launch_permissions, list(images), "Reading launch permissions",
                           ("ec2", "DescribeImageAttribute"))
        return {img.key: perms for img, perms in zip(images, results, strict=True)}

    def public_access_block(self, region: str) -> BlockState:
        """Image Block Public Access of ``region``. Any failure to read it is "unknown"
        (a warning finding), never a stop."""
        try:
            with aws_call("ec2", "GetImageBlockPublicAccessState"):
                resp = self.clients.get("ec2", region).get_image_block_public_access_state()
                return _block_state(resp, "ImageBlockPublicAccessState")
        except CallError as exc:
            return BlockState(None, why=str(exc))

    def snapshot_public_access_block(self, region: str) -> BlockState:
        """Snapshot Block Public Access of ``region`` (read only where a public copy
        permission would be added); unknown on any failure, like the image one."""
        try:
            with aws_call("ec2", "GetSnapshotBlockPublicAccessState"):
                resp = self.clients.get("ec2", region).get_snapshot_block_public_access_state()
                return _block_state(resp, "State")
        except CallError as exc:
            return BlockState(None, why=str(exc))

    def recycle_bin_images(self, region: str) -> Counted:
        """How many of the account's AMIs are in ``region``'s Recycle Bin
        (``ListImagesInRecycleBin``, 1,000 a page); unknown on any failure."""
        try:
            with aws_call("ec2", "ListImagesInRecycleBin", region):
                pages = self.clients.get("ec2", region).get_paginator(
                    "list_images_in_recycle_bin").paginate(PaginationConfig={"PageSize": 1000})
                return Counted(sum(len(page.get("Images") or []) for page in pages))
        except CallError as exc:
            return Counted(None, why=str(exc))

    def usage_reports(self, region: str, image_ids: Sequence[str]) -> list[UsageReport]:
        """The AMI usage reports of ``image_ids`` (``DescribeImageUsageReports``,
        ``USAGE_BATCH`` image IDs a call, paginated)."""
        ids = sorted(set(image_ids))
        out: list[UsageReport] = []
        with aws_call("ec2", "DescribeImageUsageReports", region):
            pages = self.clients.get("ec2", region).get_paginator("describe_image_usage_reports")
            for i in range(0, len(ids), USAGE_BATCH):
                for page in pages.paginate(ImageIds=ids[i:i + USAGE_BATCH]):
                    out += [parse_usage_report(raw) for raw in page.get("ImageUsageReports") or []]
        return out

    def usage_entries(self, region: str, report_ids: Sequence[str]) -> list[UsageEntry]:
        """The entries of the given reports (``DescribeImageUsageReportEntries``,
        ``USAGE_BATCH`` report IDs a call, paginated)."""
        ids = sorted(set(report_ids))
        out: list[UsageEntry] = []
        with aws_call("ec2", "DescribeImageUsageReportEntries", region):
            pages = self.clients.get("ec2", region).get_paginator(
                "describe_image_usage_report_entries")
            for i in range(0, len(ids), USAGE_BATCH):
                for page in pages.paginate(ReportIds=ids[i:i + USAGE_BATCH]):
                    out += [UsageEntry(str(e.get("ReportId", "")), str(e.get("AccountId", "")),
                                       str(e.get("ResourceType", "")), int(e.get("UsageCount") or 0))
                            for e in page.get("ImageUsageReportEntries") or []]
        return out

    def snapshots(self, region: str, snapshot_ids: Sequence[str]) -> dict[str, Snapshot]:
        """The given snapshots, ``SNAPSHOT_BATCH`` IDs per call. Missing ones are left out."""
        ids = sorted(set(snapshot_ids))
        batches = [ids[i:i + SNAPSHOT_BATCH] for i in range(0, len(ids), SNAPSHOT_BATCH)]
        out: dict[str, Snapshot] = {}
        for found in self.map(lambda batch: self._snapshot_batch(region, batch), batches):
            out.update(found)
        return out

    def _snapshot_batch(self, region: str, ids: list[str]) -> dict[str, Snapshot]:
        # Naming the snapshots keeps the call out of EC2's smaller bucket for DescribeSnapshots
        # made with neither a filter nor pagination (see core/pacing's rate table).
        raws: list[dict[str, Any]] = []
        try:
            with aws_call("ec2", "DescribeSnapshots", region):
                ec2 = self.clients.get("ec2", region)
                for page in ec2.get_paginator("describe_snapshots").paginate(SnapshotIds=ids):
                    raws.extend(page.get("Snapshots", []))
                found = {r["SnapshotId"]: parse_snapshot(r, region) for r in raws}
        except CallError as exc:
            if exc.code != "InvalidSnapshot.NotFound":
                raise
            if len(ids) == 1:
                return {}
            # One missing ID fails the whole call: split to find the ones that exist.
            mid = len(ids) // 2
            return {**self._snapshot_batch(region, ids[:mid]),
                    **self._snapshot_batch(region, ids[mid:])}
        return {sid: snap for sid, snap in found.items() if sid in ids}

    def encrypted_snapshots(self, region: str) -> dict[str, Snapshot]:
        """Every encrypted snapshot the caller owns in ``region`` (paginated)."""
        out: dict[str, Snapshot] = {}
        with aws_call("ec2", "DescribeSnapshots", region):
            ec2 = self.clients.get("ec2", region)
            for page in ec2.get_paginator("describe_snapshots").paginate(
                    OwnerIds=["self"], Filters=[{"Name": "encrypted", "Values": ["true"]}]):
                for raw in page.get("Snapshots", []):
                    snap = parse_snapshot(raw, region)
                    if snap.encrypted:
                        out[snap.snapshot_id] = snap
        return out

    def copy_permissions(self, key: tuple[str, str]) -> frozenset[Principal]:
        region, snapshot_id = key
        with aws_call("ec2", "DescribeSnapshotAttribute", f"{region} {snapshot_id}"):
            resp = self.clients.get("ec2", region).describe_snapshot_attribute(
                SnapshotId=snapshot_id, Attribute="createVolumePermission")
            entries = resp.get("CreateVolumePermissions") or []
        return parse_launch_permissions(entries, snapshot_id)

    def key_info(self, key: tuple[str, str]) -> KeyInfo:
        """``DescribeKey`` then (for a customer key the caller owns) ``GetKeyPolicy``.

        Failures become :attr:`KeyInfo.error` (a finding for the images the key backs),
        not exceptions: one unreadable key must not stop the plan for every other image.
        """
        region, key_id = key
        try:
            with aws_call("kms", "DescribeKey"):
                meta = self.clients.get("kms", region).describe_key(KeyId=key_id)["KeyMetadata"]
                info = KeyInfo(key_id, region, arn=str(meta.get("Arn", key_id)),
                               account=str(meta.get("AWSAccountId", "")),
                               manager=KeyManager.parse(meta.get("KeyManager")),
                               state=str(meta.get("KeyState", "")))
        except CallError as exc:
            return KeyInfo(key_id, region, error=str(exc), error_code=exc.code)
        if info.manager != KeyManager.CUSTOMER or info.account != self.identity().account:
            return info
        try:
            with aws_call("kms", "GetKeyPolicy"):
                policy = self.clients.get("kms", region).get_key_policy(
                    KeyId=info.arn, PolicyName="default")["Policy"]
                if not isinstance(policy, str):
                    raise TypeError(f"Policy is {type(policy).__name__}, not a string")
        except CallError as exc:
            return replace(info, error=str(exc), error_code=exc.code)
        return replace(info, policy=policy)

    def aliases(self, region: str) -> dict[str, str]:
        """Key ID → first alias name (sorted), for display. Empty if aliases cannot be listed."""
        out: dict[str, list[str]] = {}
        try:
            with aws_call("kms", "ListAliases"):
                for page in self.clients.get("kms", region).get_paginator("list_aliases").paginate():
                    for a in page.get("Aliases", []):
                        if a.get("TargetKeyId"):
                            out.setdefault(str(a["TargetKeyId"]), []).append(str(a["AliasName"]))
        except CallError:
            return {}
        return {k: sorted(v)[0] for k, v in out.items()}


def parse_usage_report(raw: Mapping[str, Any]) -> UsageReport:
    """One ``ImageUsageReport`` of DescribeImageUsageReports (times as UTC ISO 8601)."""
    return UsageReport(
        str(raw.get("ReportId", "")), str(raw.get("ImageId", "")), str(raw.get("State", "")),
        _utc(raw.get("CreationTime")),
        tuple(str(t.get("ResourceType", "")) for t in raw.get("ResourceTypes") or []),
        tuple(str(a) for a in raw.get("AccountIds") or []), str(raw.get("StateReason") or ""))


def _utc(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(
            dt.UTC).isoformat()
    return str(value or "")


def _block_state(resp: dict[str, Any], field: str) -> BlockState:
    """A Block Public Access answer; one without its state is "unknown" (a warning where
    it matters), never a KeyError."""
    state = resp.get(field)
    if not isinstance(state, str) or not state:
        return BlockState(None, why=f"the answer has no {field}")
    return BlockState(state, str(resp.get("ManagedBy") or ""))
