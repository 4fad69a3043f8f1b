"""EventBridge events shaped as AWS delivers them, for the ``reconcile event`` tests.

- "AWS API Call via CloudTrail": the envelope of
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
  (``detail-type``, ``source`` ``aws.<service>``, ``account``, ``region``, ``resources``),
  whose ``detail`` is the CloudTrail record of
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
  (``eventVersion``, ``userIdentity`` as in
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html,
  ``eventTime``, ``eventSource``, ``eventName``, ``awsRegion``, ``requestParameters``,
  ``responseElements``, ``errorCode`` for a failed call, ``resources`` for KMS). The request
  parameters are the API's, in CloudTrail's lowerCamelCase with EC2's ``items`` lists (EC2 API
  reference: ModifyImageAttribute, ResetImageAttribute, ModifySnapshotAttribute,
  ResetSnapshotAttribute, CreateTags, DeleteTags; KMS API reference: PutKeyPolicy, and the
  KMS Developer Guide's PutKeyPolicy CloudTrail example).
- "EC2 AMI State Change": https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitor-ami-events.html
  (``detail``: ``RequestId``, ``ImageId``, ``State``, ``ErrorMessage``; ``resources``: the
  image's ARN).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from helpers import ACCOUNT, US

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
_ids = itertools.count(1)


def user(arn: str = ALICE) -> dict[str, Any]:
    """An IAM user's ``userIdentity``."""
    return {"type": "IAMUser", "principalId": "AIDACKCEVSQ6C2EXAMPLE", "arn": arn,
            "accountId": arn.split(":")[4], "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "userName": arn.rsplit("/", 1)[-1]}


def assumed_role(role_arn: str, session: str) -> dict[str, Any]:
    """An assumed-role session's ``userIdentity`` (``sessionContext.sessionIssuer`` is the
    role)."""
    account = role_arn.split(":")[4]
    role = role_arn.rsplit("/", 1)[-1]
    return {"type": "AssumedRole", "principalId": f"AROAIDPPEZS35WEXAMPLE:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
            "accountId": account, "accessKeyId": "ASIAIOSFODNN7EXAMPLE",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROAIDPPEZS35WEXAMPLE",
                                  "arn": role_arn, "accountId": account, "userName": role},
                "attributes": {"creationDate": "2026-12-01T09:58:00Z",
                               "mfaAuthenticated": "false"}}}


def cloudtrail(name: str, params: dict[str, Any] | None, *, service: str = "ec2",
               region: str = US, account: str = ACCOUNT,
               identity: dict[str, Any] | None = None, error: str | None = None,
               resources: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An "AWS API Call via CloudTrail" event."""
    n = next(_ids)
    detail: dict[str, Any] = {
        "eventVersion": "1.09", "userIdentity": identity or user(),
        "eventTime": "2026-12-01T10:00:00Z", "eventSource": f"{service}.amazonaws.com",
        "eventName": name, "awsRegion": region, "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.0", "requestParameters": params,
        "responseElements": None if error else {"requestId": f"req-{n}", "_return": True},
        "requestID": f"req-{n}", "eventID": f"00000000-0000-0000-0000-{n:012d}",
        "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True,
        "recipientAccountId": account, "eventCategory": "Management"}
    if error:
        detail |= {"errorCode": error, "errorMessage": "You are not authorized to perform "
                                                       "this operation."}
    if resources is not None:
        detail["resources"] = resources
    return {"version": "0", "id": f"6a7e8feb-b491-4cf7-a9f1-{n:012d}",
            "detail-type": "AWS API Call via CloudTrail", "source": f"aws.{service}",
            "account": account, "time": "2026-12-01T10:00:00Z", "region": region,
            "resources": [], "detail": detail}


def modify_image(image_id: str, add: list[dict[str, str]] | None = None,
                 remove: list[dict[str, str]] | None = None, **kw: Any) -> dict[str, Any]:
    """ModifyImageAttribute with a ``launchPermission`` Add / Remove (``userId``, ``group``,
    ``organizationArn``, ``organizationalUnitArn`` items)."""
    change: dict[str, Any] = {}
    if add:
        change["add"] = {"items": add}
    if remove:
        change["remove"] = {"items": remove}
    return cloudtrail("ModifyImageAttribute", {"imageId": image_id, "launchPermission": change,
                                               "attributeType": "launchPermission"}, **kw)


def reset_image(image_id: str, **kw: Any) -> dict[str, Any]:
    return cloudtrail("ResetImageAttribute", {"imageId": image_id, "attribute": "launchPermission"},
                      **kw)


def modify_snapshot(snapshot_id: str, add: list[str] = (), remove: list[str] = (),  # type: ignore[assignment]
                    **kw: Any) -> dict[str, Any]:
    """ModifySnapshotAttribute with a ``createVolumePermission`` Add / Remove."""
    change: dict[str, Any] = {}
    if add:
        change["add"] = {"items": [{"userId": a} for a in add]}
    if remove:
        change["remove"] = {"items": [{"userId": a} for a in remove]}
    return cloudtrail("ModifySnapshotAttribute", {
        "snapshotId": snapshot_id, "createVolumePermission": change,
        "attributeType": "CREATE_VOLUME_PERMISSION"}, **kw)


def reset_snapshot(snapshot_id: str, **kw: Any) -> dict[str, Any]:
    return cloudtrail("ResetSnapshotAttribute", {"snapshotId": snapshot_id,
                                                 "attribute": "CREATE_VOLUME_PERMISSION"}, **kw)


def put_key_policy(key_arn: str, policy: str, **kw: Any) -> dict[str, Any]:
    """PutKeyPolicy: ``keyId`` as the caller gave it (here the key ID), the key's ARN among
    the record's ``resources``."""
    return cloudtrail("PutKeyPolicy", {"keyId": key_arn.rsplit("/", 1)[-1],
                                       "policyName": "default", "policy": policy,
                                       "bypassPolicyLockoutSafetyCheck": False},
                      service="kms", resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key",
                                                 "ARN": key_arn}], **kw)


def tags(name: str, resource_ids: list[str], tag_set: dict[str, str], **kw: Any) -> dict[str, Any]:
    """CreateTags or DeleteTags (``resourcesSet`` and ``tagSet`` items)."""
    return cloudtrail(name, {
        "resourcesSet": {"items": [{"resourceId": r} for r in resource_ids]},
        "tagSet": {"items": [{"key": k, "value": v} for k, v in tag_set.items()]}}, **kw)


def ami_state(image_id: str, state: str = "available", region: str = US,
              account: str = ACCOUNT) -> dict[str, Any]:
    """An "EC2 AMI State Change" event."""
    n = next(_ids)
    return {"version": "0", "id": f"example-9f07-51db-246b-{n:012d}",
            "detail-type": "EC2 AMI State Change", "source": "aws.ec2", "account": account,
            "time": "2026-12-01T10:00:00Z", "region": region,
            "resources": [f"arn:aws:ec2:{region}::image/{image_id}"],
            "detail": {"RequestId": f"example-9dcc-40a6-aa77-{n:012d}", "ImageId": image_id,
                       "State": state, "ErrorMessage": ""}}


def dump(event: dict[str, Any]) -> str:
    return json.dumps(event)
