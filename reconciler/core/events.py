"""Amazon EventBridge events as AWS delivers them (SPEC §7c), read from bytes: which
resource a change is about, who made it, and whether ``reconcile event`` acts on it.

Two kinds of event reach the tool:

- ``AWS API Call via CloudTrail`` (EventBridge User Guide, "AWS service events delivered via
  AWS CloudTrail"): ``detail`` is the CloudTrail record ("CloudTrail record contents":
  ``eventSource``, ``eventName``, ``awsRegion``, ``userIdentity``, ``requestParameters``,
  ``errorCode`` when the call failed, ``resources``);
- ``EC2 AMI State Change`` (EC2 User Guide, "Monitor AMI events using Amazon EventBridge"):
  ``detail`` holds ``ImageId`` and ``State``.

Pure: no I/O. A malformed event is an :class:`~.errors.InputError` with one problem.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError, Problem
from .kms import key_arn
from .model import AMI_ID_RE, REGION_RE, Arn

MAX_EVENT_BYTES = 256 * 1024  # EventBridge's limit for one event entry

CLOUDTRAIL = "AWS API Call via CloudTrail"
AMI_STATE = "EC2 AMI State Change"


class Subject(enum.Enum):
    """What an event is about, and so how the images it concerns are found."""

    IMAGE = "image"  # its launch permissions or tags changed
    SNAPSHOT = "snapshot"  # a snapshot's copy permissions: the images it backs
    KEY = "key"  # a key policy: the images encrypted with the key
    NEW_BUILD = "new build"  # an image became available: it, and the builds it displaces


# eventName -> (eventSource, what it changes)
CALLS: Mapping[str, tuple[str, Subject]] = {
    "ModifyImageAttribute": ("ec2.amazonaws.com", Subject.IMAGE),
    "ResetImageAttribute": ("ec2.amazonaws.com", Subject.IMAGE),
    "ModifySnapshotAttribute": ("ec2.amazonaws.com", Subject.SNAPSHOT),
    "ResetSnapshotAttribute": ("ec2.amazonaws.com", Subject.SNAPSHOT),
    "PutKeyPolicy": ("kms.amazonaws.com", Subject.KEY),
    "CreateTags": ("ec2.amazonaws.com", Subject.IMAGE),
    "DeleteTags": ("ec2.amazonaws.com", Subject.IMAGE),
}
# The attribute a call changes that the tool reconciles (CloudTrail records it under
# attributeType, or attribute for the Reset calls); another one changes nothing of ours.
_ATTRIBUTES = {"ModifyImageAttribute": "launchPermission", "ResetImageAttribute": "launchPermission",
               "ModifySnapshotAttribute": "createVolumePermission",
               "ResetSnapshotAttribute": "createVolumePermission"}


@dataclass(frozen=True)
class Event:
    """One event, as far as reconcile reads it."""

    event_id: str
    account: str
    region: str
    time: str
    call: str  # the eventName, or "EC2 AMI State Change"
    actor: str  # detail.userIdentity.arn ("" when AWS itself acted)
    session_issuer: str  # the role an assumed-role session belongs to ("" otherwise)
    subject: Subject | None  # None: ignored (``ignored`` says why)
    resources: tuple[str, ...] = ()  # image IDs, a snapshot ID or a key ARN
    ignored: str = ""

    @property
    def session_name(self) -> str:
        """The role session name of an ``assumed-role`` actor ("" for any other)."""
        parts = self.actor.split(":", 5)[-1].split("/")
        return parts[2] if len(parts) == 3 and parts[0] == "assumed-role" else ""

    def describe(self) -> str:
        """``ModifyImageAttribute on ami-… in us-east-1 by arn:… at 2026-…``."""
        what = f" on {', '.join(self.resources)}" if self.resources else ""
        by = f" by {self.actor}" if self.actor else ""
        return f"{self.call}{what} in {self.region}{by} at {self.time}"


def parse_event(raw: bytes, source: str) -> Event:
    """The event in ``raw`` (read from ``source``, named in errors)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _malformed(source, "it is not UTF-8 JSON") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(
            exc, json.JSONDecodeError) else ""
        raise _malformed(source, f"it is not valid JSON{where}") from None
    if not isinstance(doc, dict):
        raise _malformed(source, "it is not a JSON object")
    kind = _string(doc, "detail-type", source)
    account = _string(doc, "account", source)
    region = _string(doc, "region", source)
    if not (account.isdigit() and len(account) == 12):
        raise _malformed(source, f"account {account!r} is not a 12-digit account ID")
    if not REGION_RE.fullmatch(region):
        raise _malformed(source, f"region {region!r} is not an AWS Region name")
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        raise _malformed(source, "it has no detail object")
    base = {"event_id": str(doc.get("id") or ""), "account": account, "region": region,
            "time": str(doc.get("time") or "")}
    if kind == CLOUDTRAIL:
        return _api_call(detail, base, source)
    if kind == AMI_STATE:
        return _ami_state(detail, base, source)
    return _make(base, {"call": kind, "actor": "", "session_issuer": ""}, None,
                 ignored=f"a {kind!r} event is not one reconcile acts on (it acts on "
                         f"{CLOUDTRAIL!r} and {AMI_STATE!r})")


def _make(base: Mapping[str, str], who: Mapping[str, str], subject: Subject | None,
          resources: tuple[str, ...] = (), ignored: str = "") -> Event:
    return Event(base["event_id"], base["account"], base["region"], base["time"], who["call"],
                 who["actor"], who["session_issuer"], subject, resources, ignored)


def _malformed(source: str, why: str) -> InputError:
    return InputError([Problem(source, 1, 1, f"not an EventBridge event: {why}")])


def _string(doc: Mapping[str, Any], key: str, source: str, where: str = "") -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(source, f"{where}{key} is missing or not a string")
    return value


def _api_call(detail: Mapping[str, Any], base: dict[str, str], source: str) -> Event:
    name = _string(detail, "eventName", source, "detail.")
    identity = detail.get("userIdentity")
    identity = identity if isinstance(identity, dict) else {}
    context = identity.get("sessionContext")
    issuer = context.get("sessionIssuer") if isinstance(context, dict) else None
    who = {"call": name, "actor": str(identity.get("arn") or identity.get("invokedBy") or ""),
           "session_issuer": str(issuer.get("arn") or "") if isinstance(issuer, dict) else ""}
    if name not in CALLS:
        return _make(base, who, None,
                     ignored=f"{name} is not a call that changes what reconcile manages")
    service, subject = CALLS[name]
    if detail.get("eventSource") != service:
        return _make(base, who, None,
                     ignored=f"{name} from {detail.get('eventSource')!r}, not {service}")
    params = detail.get("requestParameters")
    if not isinstance(params, dict):
        if detail.get("errorCode"):
            params = {}
        else:
            raise _malformed(source, "detail.requestParameters is missing or not an object")
    resources = _resources(name, params, detail, base, source)
    if detail.get("errorCode"):
        return _make(base, who, None, resources=resources,
                     ignored=f"the call failed ({detail['errorCode']}): it changed nothing")
    if (other := _other_attribute(name, params)):
        return _make(base, who, None, resources=resources,
                     ignored=f"it changes the {other} attribute, which reconcile does not manage")
    if not resources:
        return _make(base, who, None,
                     ignored=f"{name} names no image (only image tags are managed)")
    return _make(base, who, subject, resources=resources)


def _resources(name: str, params: Mapping[str, Any], detail: Mapping[str, Any],
               base: Mapping[str, str], source: str) -> tuple[str, ...]:
    """The resources a call names: the image, the snapshot, the key (as its ARN), or the
    images among the tagged resources."""
    if detail.get("errorCode") and not params:
        return ()
    if name in ("CreateTags", "DeleteTags"):
        items = (params.get("resourcesSet") or {}).get("items") if isinstance(
            params.get("resourcesSet"), dict) else None
        if not isinstance(items, list):
            raise _malformed(source, "detail.requestParameters.resourcesSet.items is missing")
        ids = [str(i.get("resourceId", "")) for i in items if isinstance(i, dict)]
        return tuple(sorted({i for i in ids if AMI_ID_RE.fullmatch(i)}))
    if name == "PutKeyPolicy":
        return (_key_arn(params, detail, base, source),)
    key = "imageId" if "Image" in name else "snapshotId"
    value = params.get(key)
    ok = AMI_ID_RE.fullmatch if key == "imageId" else _snapshot_id
    if not isinstance(value, str) or not ok(value):
        raise _malformed(source, f"detail.requestParameters.{key} is missing or not "
                                 f"{'an AMI' if key == 'imageId' else 'a snapshot'} ID")
    return (value,)


def _snapshot_id(text: str) -> bool:
    rest = text.removeprefix("snap-")
    return rest != text and len(rest) in (8, 17) and all(c in "0123456789abcdef" for c in rest)


def _key_arn(params: Mapping[str, Any], detail: Mapping[str, Any], base: Mapping[str, str],
             source: str) -> str:
    """The key a PutKeyPolicy wrote, as its ARN: from the record's ``resources`` (CloudTrail
    lists the key there), else from ``keyId`` (an ID or an ARN)."""
    resources = detail.get("resources")
    for res in resources if isinstance(resources, list) else ():
        if isinstance(res, dict) and str(res.get("ARN", "")).startswith("arn:") \
                and ":key/" in str(res.get("ARN")):
            return str(res["ARN"])
    key = params.get("keyId")
    if not isinstance(key, str) or not key:
        raise _malformed(source, "detail.requestParameters.keyId is missing")
    if key.startswith("arn:"):
        if not Arn.parse(key).resource.startswith("key/"):
            raise _malformed(source, f"detail.requestParameters.keyId {key!r} is not a key ARN")
        return key
    return key_arn(key, base["account"], base["region"])


def _other_attribute(name: str, params: Mapping[str, Any]) -> str:
    """The attribute a Modify/Reset call changes when it is not the one reconcile manages
    ("" when it is, or when the record does not say)."""
    ours = _ATTRIBUTES.get(name)
    if ours is None:
        return ""
    said = params.get("attributeType") or params.get("attribute")
    if not isinstance(said, str) or not said:
        return ""
    normal = said.replace("_", "").lower()
    return "" if normal == ours.lower() else said


def _ami_state(detail: Mapping[str, Any], base: dict[str, str], source: str) -> Event:
    image = _string(detail, "ImageId", source, "detail.")
    state = _string(detail, "State", source, "detail.")
    if not AMI_ID_RE.fullmatch(image):
        raise _malformed(source, f"detail.ImageId {image!r} is not an AMI ID")
    who = {"call": f"{AMI_STATE} ({state})", "actor": "", "session_issuer": ""}
    if state != "available":
        return _make(base, who, None, resources=(image,),
                     ignored=f"{image} is {state}: there is nothing to share (a build it "
                             "displaced from a rule's `latest` is shared by the next apply)")
    return _make(base, who, Subject.NEW_BUILD, resources=(image,))


def own_write(event: Event, actors: Iterable[str], roles: Iterable[str],
              session_name: str) -> str:
    """Why ``event`` is reconcile's own write ("" when it is not): its actor is one of
    ``actors``, or a session named ``session_name`` of one of the owner ``roles`` the
    manifest assumes (anyone may name a session so: the role must match too)."""
    if event.actor and event.actor in set(actors):
        return f"{event.actor} is reconcile's own actor"
    if event.session_name == session_name and event.session_issuer in set(roles):
        return f"session {session_name} of {event.session_issuer} is reconcile's own"
    return ""
