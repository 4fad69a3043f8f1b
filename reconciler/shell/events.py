"""Which managed images an EventBridge event concerns, in the event's Region (SPEC §7c),
found with a few requests whatever the size of the estate:

- an image (its launch permissions or tags): that image, one ``DescribeImages`` filtered
  on ``image-id``; a tag change or a new build also concerns the builds of its ``latest``
  rules that it pushes out of their newest N (one filtered ``DescribeImages`` per rule);
- a snapshot: the images it backs (``DescribeImages`` filtered on
  ``block-device-mapping.snapshot-id``);
- a key: the images encrypted with it (the owner's encrypted snapshots, then the images
  they back).

An image concerns the manifest when a rule manages it or it carries the manifest's
ownership tag (a rule may have let it go: it is released).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core.desired import displaced, is_managed, latest_rules
from ..core.events import Event, Subject
from ..core.manifest import Manifest, OwnershipMode
from ..core.model import Arn, Image
from ..core.planning.ownership import tagged
from .gather import Scope
from .reader import Reader
from .targeted import families


@dataclass(frozen=True)
class Affected:
    """The images to apply the manifest to, or why there are none."""

    images: tuple[str, ...] = ()
    ignored: str = ""


def affected(event: Event, manifest: Manifest, scopes: Sequence[Scope], now: str) -> Affected:
    """The managed (or released) images ``event`` concerns."""
    scope = next((s for s in scopes if s.reader.identity().account == event.account), None)
    if scope is None:
        accounts = ", ".join(sorted(s.reader.identity().account for s in scopes))
        return Affected(ignored=f"it happened in account {event.account}, which is not an "
                                f"owner account of the manifest ({accounts})")
    covered = scope.regions or manifest.regions
    releases = manifest.settings.ownership == OwnershipMode.TAG
    if event.region not in covered and not releases:
        return Affected(ignored=f"the manifest names no Region {event.region} "
                                f"(its Regions: {', '.join(covered)})")
    reader = scope.reader
    found = [img for img in _found(event, reader) if img.owner_id == event.account]

    def concerns(img: Image) -> bool:
        return ((img.region in covered and is_managed(manifest, img))
                or (releases and tagged(img, manifest.settings.name)))

    chosen = {img.image_id: img for img in found if concerns(img)}
    if event.subject is Subject.NEW_BUILD or event.call in ("CreateTags", "DeleteTags"):
        for img in found:
            if img.region in covered and latest_rules(manifest, img):
                family = families(reader, manifest, [img])
                chosen.update((i.image_id, i) for i in displaced(manifest, img, family, now)
                              if concerns(i))
    if not chosen:
        what = ", ".join(event.resources)
        images = f" (it concerns {', '.join(i.image_id for i in found)})" if found and \
            event.subject is not Subject.IMAGE and event.subject is not Subject.NEW_BUILD else ""
        return Affected(ignored=f"{what} concerns no image the manifest manages in "
                                f"{event.region}{images}")
    return Affected(tuple(sorted(chosen)))


def _found(event: Event, reader: Reader) -> list[Image]:
    """The images the event's resources name or back."""
    region = event.region
    if event.subject in (Subject.IMAGE, Subject.NEW_BUILD):
        return reader.images_by(region, "image-id", event.resources)
    if event.subject is Subject.SNAPSHOT:
        return reader.images_by(region, "block-device-mapping.snapshot-id", event.resources)
    if event.subject is Subject.KEY:
        key = _key_id(event.resources[0])
        snaps = sorted(sid for sid, snap in reader.encrypted_snapshots(region).items()
                       if _key_id(snap.kms_key_id) == key)
        return reader.images_by(region, "block-device-mapping.snapshot-id", snaps) if snaps \
            else []
    return []


def _key_id(key: str) -> str:
    """A key's ID, from its ID or ARN (snapshots name their key either way)."""
    return Arn.parse(key).resource_id if key.startswith("arn:") else key
