"""What moto lacks for this tool, added in-process, and the setters that give moto's
resources what AWS would report.

moto does not emulate everything this tool reads; :func:`install_moto_extensions` adds
what is missing, the same way the test suite does, so the sandbox behaves like AWS. The
``set_*`` functions and :func:`encrypt_image` set what moto cannot be asked for through
its API (chosen IDs, encryption, AWS managed keys, states, dates).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from . import usage_reports
from .state import parse_utc
from .usage_reports import IMAGE_USAGE_REPORTS as IMAGE_USAGE_REPORTS

# (account, region) -> Image Block Public Access state, read by the patched moto handler.
IMAGE_BLOCK_PUBLIC_ACCESS: dict[tuple[str, str], str] = {}
# The sandbox's pinned clock (its state file's `now:`), ISO 8601; empty: the real clock.
NOW: list[str] = []
# (account, Region) -> the AMIs in its Recycle Bin, as ListImagesInRecycleBin lists them
RECYCLE_BIN: dict[tuple[str, str], list[dict[str, Any]]] = {}


def install_moto_extensions() -> None:
    """Teach moto the EC2 calls it lacks (idempotent; patches the moto classes in-process)."""
    from moto.ec2.responses import EC2Response

    if getattr(EC2Response, "_reconciler_extended", False):
        return
    _patch_ec2()
    _patch_kms()
    EC2Response._reconciler_extended = True  # type: ignore[attr-defined]


def _patch_ec2() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses import EC2Response

    def block_device_mappings(self: Any) -> list[dict[str, Any]]:
        # Like AWS, report whether the backing snapshot is encrypted.
        snap = self.ebs_snapshot
        return [{"DeviceName": self.root_device_name,
                 "Ebs": {"SnapshotId": snap.id, "VolumeSize": 15, "DeleteOnTermination": False,
                         "VolumeType": "standard", "Encrypted": bool(snap.encrypted)}}]

    Ami.block_device_mappings = property(block_device_mappings)  # type: ignore[assignment,method-assign]

    # DescribeImages filter "block-device-mapping.snapshot-id" (EC2 API reference,
    # DescribeImages): the images a snapshot backs. moto knows no such filter.
    filter_value = Ami.get_filter_value

    def get_filter_value(self: Any, filter_name: str, method_name: str | None = None) -> Any:
        if filter_name == "block-device-mapping.snapshot-id":
            return self.ebs_snapshot.id if self.ebs_snapshot is not None else ""
        return filter_value(self, filter_name, method_name)

    Ami.get_filter_value = get_filter_value  # type: ignore[method-assign]

    def get_image_block_public_access_state(self: Any) -> Any:
        state = IMAGE_BLOCK_PUBLIC_ACCESS.get((self.current_account, self.region), "unblocked")
        return ActionResult({"ImageBlockPublicAccessState": state, "ManagedBy": "account"})

    EC2Response.get_image_block_public_access_state = get_image_block_public_access_state  # type: ignore[attr-defined]

    def get_snapshot_block_public_access_state(self: Any) -> Any:
        return ActionResult({"State": "unblocked", "ManagedBy": "account"})

    EC2Response.get_snapshot_block_public_access_state = get_snapshot_block_public_access_state  # type: ignore[attr-defined]

    # DescribeImages pages (EC2 API reference, DescribeImages: MaxResults, NextToken; "Pagination
    # in the Amazon EC2 API", EC2 developer guide): with MaxResults, at most that many images
    # and a NextToken while more are left. moto answers every image in one page whatever
    # MaxResults says.
    describe_images = EC2Response.describe_images

    def describe_images_paged(self: Any) -> Any:
        size, token = self._get_param("MaxResults"), self._get_param("NextToken")
        if size is None and token is None:
            return describe_images(self)
        if self._get_param("ImageIds"):
            raise EC2ClientError("InvalidParameterCombination",
                                 "The parameter ImageIds cannot be used with MaxResults")
        self.error_on_dryrun()
        images = self.ec2_backend.describe_images(
            filters=self._filters_from_querystring(), owners=self._get_param("Owners", []),
            exec_users=self._get_param("ExecutableUsers", []))
        start = int(token or 0)
        end = start + int(size or 1000)
        page: dict[str, Any] = {"Images": images[start:end]}
        if end < len(images):
            page["NextToken"] = str(end)
        return ActionResult(page)

    EC2Response.describe_images = describe_images_paged  # type: ignore[method-assign]

    # ListImagesInRecycleBin (EC2 API reference): ImageId, Name, Description,
    # RecycleBinEnterTime and RecycleBinExitTime of each AMI in the Recycle Bin, up to
    # MaxResults (1,000 at most) a page. moto has no Recycle Bin.
    def list_images_in_recycle_bin(self: Any) -> Any:
        listed = RECYCLE_BIN.get((self.current_account, self.region), [])
        size = int(self._get_param("MaxResults") or 1000)
        start = int(self._get_param("NextToken") or 0)
        page: dict[str, Any] = {"Images": listed[start:start + size]}
        if start + size < len(listed):
            page["NextToken"] = str(start + size)
        return ActionResult(page)

    EC2Response.list_images_in_recycle_bin = list_images_in_recycle_bin  # type: ignore[attr-defined]

    # CreateImageUsageReport, DescribeImageUsageReports, DescribeImageUsageReportEntries
    usage_reports.install()

    # EnableImageDeprecation (EC2 API reference): the AMI's DeprecationTime becomes
    # DeprecateAt, seconds rounded to the nearest minute; a time in the past is refused
    # ("You can't specify a date in the past"), as is an AMI the account does not own.
    # moto has no such action.
    def enable_image_deprecation(self: Any) -> Any:
        image_id = str(self._get_param("ImageId"))
        amis = self.ec2_backend.amis
        if image_id not in amis or amis[image_id].owner_id != self.current_account:
            raise InvalidAMIIdError(image_id)
        when = parse_utc(str(self._get_param("DeprecateAt")).replace(" ", "T"))
        if when is None:
            raise EC2ClientError("InvalidParameterValue", "DeprecateAt is not a date and time")
        when = (when + dt.timedelta(seconds=30)).replace(second=0, microsecond=0)
        now = (parse_utc(NOW[0]) if NOW else None) or dt.datetime.now(dt.UTC)
        if when < now:
            raise EC2ClientError("InvalidParameterValue",
                                 "DeprecateAt cannot be a date in the past")
        amis[image_id].deprecation_time = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return ActionResult({"Return": True})

    EC2Response.enable_image_deprecation = enable_image_deprecation  # type: ignore[attr-defined]

    # DisableImageDeprecation (EC2 API reference): the AMI has no DeprecationTime any more.
    def disable_image_deprecation(self: Any) -> Any:
        image_id = str(self._get_param("ImageId"))
        amis = self.ec2_backend.amis
        if image_id not in amis or amis[image_id].owner_id != self.current_account:
            raise InvalidAMIIdError(image_id)
        amis[image_id].deprecation_time = None
        return ActionResult({"Return": True})

    EC2Response.disable_image_deprecation = disable_image_deprecation  # type: ignore[attr-defined]

    # moto answers DescribeRegions with every Region of every partition (GovCloud and China
    # included); the emulated account has only ENABLED_REGIONS enabled, as a real one does.
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    every_region = RegionsAndZonesBackend.describe_regions

    def describe_regions(self: Any, region_names: list[str] | None = None) -> Any:
        found = every_region(self, region_names)
        return [r for r in found if r.name in ENABLED_REGIONS] if ENABLED_REGIONS else found

    RegionsAndZonesBackend.describe_regions = describe_regions  # type: ignore[method-assign]


def _patch_kms() -> None:
    # moto applies a key policy's Deny statements without their Condition, so an ordinary
    # "deny everyone outside the organization" statement refused the owner's own DescribeKey.
    # The emulated caller is the key's owner, whom such statements do not deny: skip it.
    from moto.kms.responses import KmsResponse

    KmsResponse._validate_key_policy = lambda self, key_id, action: None  # type: ignore[method-assign]

    # moto generates a 2,048-bit RSA key pair for every KMS key, symmetric ones included
    # (70 ms each). A symmetric key has no key pair on AWS (Sign, Verify and GetPublicKey
    # refuse it), and nothing here signs: symmetric keys get none.
    import moto.kms.models as kms_models

    key_pair = vars(kms_models)["generate_private_key"]

    def generate_private_key(key_spec: str) -> Any:
        return None if key_spec == "SYMMETRIC_DEFAULT" else key_pair(key_spec)

    vars(kms_models)["generate_private_key"] = generate_private_key


# The Regions the emulated account has enabled (DescribeRegions); the sandbox sets them to
# the Regions its state file names (and us-east-1).
ENABLED_REGIONS: set[str] = {"us-east-1", "us-west-2", "eu-west-1"}


def set_image_id(account: str, region: str, old: str, new: str) -> None:
    """Give a moto image a chosen ID (moto always picks a random one)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account][region]
    ami = backend.amis.pop(old)
    ami.id = new
    backend.amis[new] = ami


def set_snapshot_id(account: str, region: str, image_id: str, new: str) -> None:
    """Give a moto image's backing snapshot a chosen ID."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account][region]
    snap = backend.amis[image_id].ebs_snapshot
    backend.snapshots.pop(snap.id, None)
    snap.id = new
    backend.snapshots[new] = snap


def set_key_id(account: str, region: str, old: str, new: str) -> str:
    """Give a moto KMS key a chosen ID; return its new ARN."""
    from moto.kms.models import kms_backends

    backend = kms_backends[account][region]
    key = backend.keys.pop(old)
    key.id = new
    key.arn = key.arn.rsplit("/", 1)[0] + "/" + new
    backend.keys[new] = key
    return str(key.arn)


def encrypt_image(account: str, region: str, image_id: str, key_arn: str) -> str:
    """Make a moto image's backing snapshot encrypted with ``key_arn``; return its ID."""
    from moto.ec2.models import ec2_backends

    snap = ec2_backends[account][region].amis[image_id].ebs_snapshot
    snap.encrypted = True
    snap.kms_key_id = key_arn
    return str(snap.id)


def make_aws_managed(account: str, region: str, key_id: str) -> None:
    """Mark a moto key as AWS managed (moto reports every key as CUSTOMER)."""
    from moto.kms.models import kms_backends

    kms_backends[account][region].keys[key_id].key_manager = "AWS"


def set_image_state(account: str, region: str, image_id: str, state: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends[account][region].amis[image_id].state = state


def set_image_dates(account: str, region: str, image_id: str, created: str | None,
                    deprecated: str | None, last_launched: str | None = None) -> None:
    """Set CreationDate, DeprecationTime and LastLaunchedTime, which moto takes from its
    clock / never sets. AWS writes them as ``2026-11-01T10:00:00.000Z``."""
    from moto.ec2.models import ec2_backends

    ami = ec2_backends[account][region].amis[image_id]
    if created is not None and (when := parse_utc(created)) is not None:
        ami.creation_date = when
    if deprecated is not None and (when := parse_utc(deprecated)) is not None:
        ami.deprecation_time = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # type: ignore[attr-defined]
    if last_launched is not None and (when := parse_utc(last_launched)) is not None:
        ami.last_launched_time = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # type: ignore[attr-defined]
