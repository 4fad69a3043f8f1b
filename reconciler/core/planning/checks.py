"""The checks every managed image goes through before anything is planned for it.

Each check is a pure function of (manifest, image, state) returning a :class:`Check`: its
findings, whether the image must be left alone, and the principals that cannot be added to
it. A new check is one function in :data:`IMAGE_CHECKS`.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..desired import ManagedImage
from ..errors import ACCESS_DENIED_CODES
from ..findings import Code
from ..kms import KeyInfo, KeyManager, PolicyError, owned_grantees
from ..manifest import KmsMode, Manifest, OwnershipMode
from ..model import (
    OWNERSHIP_TAG,
    Blocking,
    BlockState,
    Finding,
    Image,
    OwnerRegion,
    Principal,
    RegionKey,
    Severity,
    plural,
)
from .state import CurrentState, encrypted


@dataclass(frozen=True)
class ImageView:
    """One managed image as planning sees it: what its rules declare, who may launch it
    now, the keys backing it, and what the checks decided. Phases return new views."""

    m: ManagedImage
    current: frozenset[Principal]
    keys: tuple[KeyInfo, ...] = ()  # the customer managed keys its consumers need
    blocked: bool = False  # left alone: nothing at all is written for it in this run
    cannot_add: frozenset[Principal] = frozenset()  # launch permissions that cannot be added
    copy_cannot_add: frozenset[Principal] = frozenset()
    # removals that wait: the build is still launched (SPEC §7b, :mod:`.inuse`)
    keep: frozenset[Principal] = frozenset()
    keep_copy: frozenset[Principal] = frozenset()
    # account removals that wait: a usage report lists the account using it (:mod:`.usage`)
    used: frozenset[Principal] = frozenset()
    used_copy: frozenset[Principal] = frozenset()

    @property
    def image(self) -> Image:
        return self.m.image


@dataclass(frozen=True)
class Check:
    """What one check found about one image."""

    findings: tuple[Finding, ...] = ()
    blocked: bool = False
    cannot_add: frozenset[Principal] = frozenset()
    copy_cannot_add: frozenset[Principal] = frozenset()
    keys: tuple[KeyInfo, ...] = field(default=())

    def applied_to(self, v: ImageView) -> ImageView:
        if not (self.blocked or self.cannot_add or self.copy_cannot_add or self.keys):
            return v  # most checks of most images: nothing to apply
        return replace(v, blocked=v.blocked or self.blocked,
                       cannot_add=v.cannot_add | self.cannot_add,
                       copy_cannot_add=v.copy_cannot_add | self.copy_cannot_add,
                       keys=tuple(dict.fromkeys((*v.keys, *self.keys))))


def finding(code: Code, img: Image, message: str) -> Finding:
    return Finding.about(code, label(img), img.region, img.image_id, message)


def label(img: Image) -> str:
    return f"{img.image_id} ({img.name})"


def _check_quota(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """EC2 quota "AMI sharing" (share_quota): entities after the plan, public not counted."""
    m, img = v.m, v.image
    after = set(m.launch) if manifest.settings.prune else set(m.launch) | v.current
    entities = len(after - {Principal.public()})
    if entities <= manifest.settings.share_quota:
        return Check()
    kept = "" if manifest.settings.prune else " (with the permissions prune: false keeps)"
    return Check((finding(Code.SHARE_QUOTA, img,
                          f"{label(img)} would be shared with {entities} entities by "
                          f"{'rule' if len(m.rules) == 1 else 'rules'} "
                          f"{', '.join(m.rules)}{kept}; share_quota is "
                          f"{manifest.settings.share_quota}"),), blocked=True)


def _check_snapshots(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    img = v.image
    missing = tuple(finding(Code.SNAPSHOT_NOT_FOUND, img,
                            f"{label(img)}: backing snapshot {sid} was not found or is not "
                            "readable by the caller (ec2:DescribeSnapshots)")
                    for sid in img.snapshot_ids if (img.region, sid) not in state.snapshots)
    return Check(missing, blocked=bool(missing))


def _check_keys(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """The KMS key of each encrypted snapshot: one the tool can work with, or an error."""
    if manifest.settings.kms is KmsMode.OFF or not encrypted(v.m, state.snapshots):
        return Check()
    img = v.image
    found: list[Finding] = []
    keys: list[KeyInfo] = []
    for sid in img.snapshot_ids:
        snap = state.snapshots.get(RegionKey(img.region, sid))
        if snap is None or not snap.encrypted:
            continue
        info = state.keys.get(RegionKey(img.region, snap.kms_key_id))
        if info is None:
            found.append(finding(Code.KEY_UNKNOWN, img,
                                 f"{label(img)}: snapshot {sid} is encrypted but its KMS key is "
                                 "not reported (ec2:DescribeSnapshots returned no KmsKeyId)"))
            continue
        problem = key_problem(info, img.owner_id, img)
        if problem:
            code, why = problem
            found.append(finding(code, img,
                                 f"{label(img)}: snapshot {sid} uses KMS key {info.label}: {why}"))
        else:
            keys.append(info)
    return Check(tuple(found), blocked=bool(found), keys=tuple(dict.fromkeys(keys)))


def key_problem(info: KeyInfo, caller: str, img: Image) -> tuple[Code, str] | None:
    """Why the tool cannot share through this key: (finding code, reason); None if it can.
    Only the image's owner account can edit its key policies (``caller``)."""
    if info.error:
        code = (Code.KMS_ACCESS_DENIED if info.error_code in ACCESS_DENIED_CODES
                else Code.KEY_UNREADABLE)
        return code, info.error
    if info.manager == KeyManager.AWS:
        return (Code.AWS_MANAGED_KEY,
                "it is the AWS managed key (aws/ebs), whose policy cannot be changed, so the "
                "image cannot be shared. Copy it re-encrypted with a customer managed key and "
                "share the copy: aws ec2 copy-image --source-image-id "
                f"{img.image_id} --source-region {img.region} --region {img.region} "
                f"--name {shlex.quote(img.name + '-cmk')} --encrypted --kms-key-id <customer-key-arn>")
    if info.account and info.account != caller:
        return (Code.FOREIGN_KEY,
                f"the key belongs to account {info.account}, not the caller {caller}; its policy "
                "must be managed there (grant the consumers kms:Decrypt, kms:DescribeKey, "
                "kms:ReEncrypt*, kms:GenerateDataKey*, kms:CreateGrant)")
    if info.state and info.state != "Enabled":
        return Code.KEY_UNUSABLE, f"the key is {info.state}; launches from this image would fail"
    if info.policy is None:
        return Code.KEY_UNREADABLE, "its key policy could not be read (kms:GetKeyPolicy)"
    try:
        owned_grantees(info.document())
    except PolicyError as exc:
        return Code.KEY_POLICY_UNPARSEABLE, f"{exc}; refusing to edit it"
    return None


def _block_problem(block: BlockState, what: str, region: str, fix: str) -> str:
    if block.managed_by == "declarative-policy":
        return (f"{what} Block Public Access is {block.state} in {region}, set by an AWS "
                "Organizations declarative policy: it cannot be changed from this account "
                "(ask the organization's administrators)")
    return f"{what} Block Public Access is {block.state} in {region} ({fix})"


def _check_public_launch(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """EC2 User Guide, "Make your AMI public" and "Understand block public access for AMIs"."""
    m, img, public = v.m, v.image, Principal.public()
    if public not in m.launch or public in v.current:
        return Check()
    rules = ", ".join(m.launch[public])
    refused = frozenset({public})
    if encrypted(m, state.snapshots):
        return Check((finding(Code.ENCRYPTED_PUBLIC, img,
                              f"{label(img)} is backed by encrypted snapshots and can never be "
                              f"made public; remove `public` from rules {rules}"),),
                     cannot_add=refused)
    if img.product_codes:
        return Check((finding(Code.PUBLIC_PRODUCT_CODE, img,
                              f"{label(img)} has AWS Marketplace product codes "
                              f"({', '.join(img.product_codes)}); images with product codes "
                              f"cannot be made public. Remove `public` from rules {rules}, or "
                              "share with accounts"),), cannot_add=refused)
    block = state.public_access.get(OwnerRegion(img.owner_id, img.region),
                                    BlockState(None, why="not read"))
    if block.state == Blocking.BLOCK_NEW_SHARING:
        return Check((finding(Code.PUBLIC_ACCESS_BLOCKED, img,
                              f"{label(img)} cannot be made public: " + _block_problem(
                                  block, "Image", img.region, "EC2 console > AMIs > Block public "
                                  "access, or aws ec2 disable-image-block-public-access --region "
                                  f"{img.region}")),), cannot_add=refused)
    if block.state is None:
        return Check((finding(Code.PUBLIC_ACCESS_UNKNOWN, img,
                              f"could not read Image Block Public Access in {img.region} "
                              f"({block.why}); if it blocks new public sharing, making "
                              f"{img.image_id} public will fail at apply"),))
    return Check()


def _check_public_copy(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """EC2 API ModifySnapshotAttribute: encrypted snapshots and snapshots with product codes
    cannot be made public; Snapshot Block Public Access may forbid it."""
    m, img, public = v.m, v.image, Principal.public()
    if public not in m.copy:
        return Check()
    rules = ", ".join(m.copy[public])
    refused = frozenset({public})
    if encrypted(m, state.snapshots):
        return Check((finding(Code.ENCRYPTED_PUBLIC, img,
                              f"{label(img)}: encrypted snapshots cannot be shared publicly; "
                              f"remove `public` from `copy` in rules {rules}"),),
                     copy_cannot_add=refused)
    if not m.manages_copy:
        return Check()
    block = state.snapshot_public_access.get(OwnerRegion(img.owner_id, img.region),
                                             BlockState(None, why="not read"))
    if all(public in state.copy.get(RegionKey(img.region, s), frozenset())
           for s in img.snapshot_ids):
        return _public_copy_in_effect(img, block, rules)
    if img.product_codes:
        return Check((finding(Code.PUBLIC_PRODUCT_CODE, img,
                              f"{label(img)}: snapshots with AWS Marketplace product codes "
                              f"cannot be made public; remove `public` from `copy` in rules "
                              f"{rules}"),), copy_cannot_add=refused)
    if block.state in (Blocking.BLOCK_NEW_SHARING, Blocking.BLOCK_ALL_SHARING):
        return Check((finding(Code.SNAPSHOT_PUBLIC_ACCESS_BLOCKED, img,
                              f"{label(img)}: its snapshots cannot be made public: "
                              + _block_problem(block, "Snapshot", img.region,
                                               "aws ec2 disable-snapshot-block-public-access "
                                               f"--region {img.region}")),),
                     copy_cannot_add=refused)
    if block.state is None:
        return Check((finding(Code.SNAPSHOT_PUBLIC_ACCESS_UNKNOWN, img,
                              f"could not read Snapshot Block Public Access in {img.region} "
                              f"({block.why}); if it blocks public sharing, the public copy "
                              f"permission on the snapshots of {img.image_id} will fail at "
                              "apply"),))
    return Check()


def _public_copy_in_effect(img: Image, block: BlockState, rules: str) -> Check:
    """Snapshots that already show a public copy permission. EC2 API Reference,
    EnableSnapshotBlockPublicAccess: under block-all-sharing "the attributes for these
    snapshots still indicate that they are publicly shared, even though they are not
    publicly available" (block-new-sharing leaves them available)."""
    if block.state != Blocking.BLOCK_ALL_SHARING:
        return Check()
    return Check((finding(Code.SNAPSHOT_PUBLIC_NOT_IN_EFFECT, img,
                          f"{label(img)}: its snapshots show the public copy permission rules "
                          f"{rules} declare, but Snapshot Block Public Access is "
                          f"block-all-sharing in {img.region}, so they are not publicly "
                          "available: the public copy permission is not in effect until the "
                          "setting is changed"),))


def _check_copy_marketplace(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """EC2 User Guide, "Copy an AMI": an AMI derived from AWS Marketplace cannot be copied to
    another account, so a copy grant does not let the consumer copy it."""
    m, img = v.m, v.image
    grantees = [p for p in m.copy if not p.is_public]
    if not (img.product_codes and grantees):
        return Check()
    return Check((finding(Code.COPY_MARKETPLACE, img,
                          f"{label(img)} has AWS Marketplace product codes "
                          f"({', '.join(img.product_codes)}): consumers cannot copy it to their "
                          "account, so the copy permission of rules "
                          f"{', '.join(sorted({r for p in grantees for r in m.copy[p]}))} only "
                          "lets them create volumes from its snapshots"),))


def _check_copy_impossible(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """EC2 User Guide, "Copy an Amazon EC2 AMI" (CopyingAMIs.html#copy-ami-across-accounts):
    "You can't copy an AMI with an associated billingProduct code that was shared with you"
    (its UsageOperation is not plain RunInstances: Windows, RHEL, SQL Server...); and an
    instance-store-backed AMI has no EBS snapshot whose createVolumePermission could be
    granted. `copy:` on either is a mistake in the manifest: an error, the image left alone."""
    m, img = v.m, v.image
    grantees = [p for p in m.copy if not p.is_public]
    if not (m.manages_copy and grantees):
        return Check()
    rules = ", ".join(sorted({r for p in grantees for r in m.copy[p]}))
    if img.root_device_type == "instance-store":
        return Check((finding(Code.COPY_INSTANCE_STORE, img,
                              f"{label(img)} is backed by instance store: it has no snapshot "
                              f"to grant copy permission on; remove `copy:` from rules "
                              f"{rules}"),), blocked=True)
    if img.usage_operation and img.usage_operation != "RunInstances":
        return Check((finding(Code.COPY_BILLING_PRODUCT, img,
                              f"{label(img)} has a billing product (UsageOperation "
                              f"{img.usage_operation}): an AMI with a billing product shared "
                              "with another account cannot be copied there; remove `copy:` "
                              f"from rules {rules} (launching works without it)"),),
                     blocked=True)
    return Check()


def _check_undeclared_public(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    img, public = v.image, Principal.public()
    if public in v.current and public not in v.m.launch and not manifest.settings.prune:
        return Check((finding(Code.UNDECLARED_PUBLIC, img,
                              f"{label(img)} is public but no rule declares `public`; it stays "
                              "public because settings.prune is false"),))
    return Check()


def _check_other_manifest(manifest: Manifest, v: ImageView, state: CurrentState) -> Check:
    """An image another manifest's ownership tag claims: two manifests managing one image
    undo each other's changes on every run (with --strict, the image is left alone)."""
    name, img = manifest.settings.name, v.image
    other = img.tag_map.get(OWNERSHIP_TAG)
    if manifest.settings.ownership != OwnershipMode.TAG or other is None or other == name:
        return Check()
    return Check((finding(Code.OTHER_MANIFEST, img,
                          f"{label(img)} carries {OWNERSHIP_TAG}={other}: a manifest named "
                          f"{other!r} manages it too, or this manifest was renamed (then set "
                          f"settings.name: {other} to keep its images). Apply retags it "
                          f"{name!r}; two manifests that manage one image undo each other's "
                          "changes on every run"),))


# The checks every managed image goes through, in this order (their findings are reported
# in it). Each is independent of the others; a new check is one function here.
IMAGE_CHECKS: tuple[Callable[[Manifest, ImageView, CurrentState], Check], ...] = (
    _check_quota, _check_snapshots, _check_keys, _check_public_launch, _check_public_copy,
    _check_copy_marketplace, _check_copy_impossible, _check_undeclared_public,
    _check_other_manifest)


def check_image(manifest: Manifest, v: ImageView,
                state: CurrentState) -> tuple[ImageView, tuple[Finding, ...]]:
    """``v`` after every check of :data:`IMAGE_CHECKS`, and what they found."""
    findings: list[Finding] = []
    for check in IMAGE_CHECKS:
        result = check(manifest, v, state)
        v = result.applied_to(v)
        findings += result.findings
    return v, tuple(findings)


def check_public_quota(manifest: Manifest, views: Sequence[ImageView],
                       state: CurrentState) -> tuple[tuple[ImageView, ...], tuple[Finding, ...]]:
    """EC2 quota "Public AMIs" (5 per Region by default, public_quota here): the images the
    plan would make public, counted with those that already are and stay public. Over the
    quota, none of them is made public."""
    public = Principal.public()
    gaining: dict[OwnerRegion, list[ImageView]] = defaultdict(list)
    losing: dict[OwnerRegion, int] = defaultdict(int)
    for v in views:
        place = OwnerRegion(v.image.owner_id, v.image.region)
        if public in v.m.launch and public not in v.current and public not in v.cannot_add \
                and not v.blocked:
            gaining[place].append(v)
        elif public in v.current and public not in v.m.launch and manifest.settings.prune \
                and not v.blocked:
            losing[place] += 1
    limit = manifest.settings.public_quota
    refused: list[Finding] = []
    warned: list[Finding] = []
    for place, new in sorted(gaining.items()):
        after = state.public_images.get(place, 0) - losing[place] + len(new)
        if after > limit:
            refused += [finding(Code.PUBLIC_QUOTA, v.image,
                                f"{label(v.image)} cannot be made public: {v.image.region} "
                                f"would have {after} public AMIs, over the quota of {limit} "
                                "(EC2 quota \"Public AMIs\"); make others private, or raise "
                                "the quota (Service Quotas, L-0E3CBAB9) and "
                                "settings.public_quota") for v in new]
        else:
            warned += _recycle_bin_warnings(place, new, after, limit, state)
    over = {(f.region, f.resource) for f in refused}
    return (tuple(replace(v, cannot_add=v.cannot_add | {public})
                  if v.image.key in over else v for v in views), (*refused, *warned))


def _recycle_bin_warnings(place: OwnerRegion, new: Sequence[ImageView], after: int, limit: int,
                          state: CurrentState) -> list[Finding]:
    """The public AMIs quota counts public AMIs in the Recycle Bin too, and
    ListImagesInRecycleBin does not say which of them were public: when those could take
    the room the new public shares need, say so (a warning: the count is an upper bound)."""
    binned = state.recycle_bin.get(place)
    if binned is None:
        return []
    if binned.count is None:
        why = (f"the Recycle Bin of {place.region} could not be listed ({binned.why}); public "
               "AMIs there count towards it")
    elif after + binned.count > limit:
        why = (f"the Recycle Bin of {place.region} holds {plural(binned.count, 'AMI')}, and "
               "those of them that were public count towards it (ListImagesInRecycleBin does not say "
               "which); if the share is refused, raise the quota or make another AMI private")
    else:
        return []
    return [finding(Code.PUBLIC_QUOTA_RECYCLE_BIN, v.image,
                    f"making {label(v.image)} public may be refused at apply: {place.region} "
                    f"would have {plural(after, 'public AMI')} of the quota of {limit} "
                    f"(EC2 quota \"Public AMIs\"), and {why}") for v in new]


def errored_images(findings: Iterable[Finding]) -> frozenset[str]:
    """One rule for error findings: an image (or key) with one gets no write at all."""
    return frozenset(f.resource for f in findings if f.severity is Severity.ERROR)
