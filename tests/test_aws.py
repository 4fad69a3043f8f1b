"""Reader and applier against in-process moto: call counts, grouping, failure isolation,
retries."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.awsrequest
import botocore.exceptions
import botocore.retries.bucket
import botocore.retries.standard
import pytest
from builders import IDENTITY
from helpers import ACCOUNT, HAND, PROD, STAGING, Images, counted_clients

from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Action, Operation, OpKind, Principal
from reconciler.core.planning import PlanOptions
from reconciler.shell.applier import Applier
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader

MANIFEST = f"""\
version: 1
settings: {{name: m, regions: [us-east-1, eu-west-1]}}
principals: {{prod: "{PROD}", staging: "{STAGING}"}}
images:
  - name: golden
    select: {{name: "golden-*"}}
    launch: [prod, staging]
""".encode()


def test_plan_makes_exactly_the_minimal_calls(aws: Images) -> None:
    managed = [aws.create(f"golden-{i}", region=r) for i in range(3)
               for r in ("us-east-1", "eu-west-1")]
    unmanaged = [aws.create(f"other-{i}") for i in range(5)]
    enabled = len(boto3.client("ec2", region_name="us-east-1").describe_regions()["Regions"])
    clients, calls = counted_clients()
    plan = build_plan(parse_manifest(MANIFEST, "m.yaml"), Reader(clients, 4))
    assert dict(calls.by_op) == {
        "GetCallerIdentity": 1,
        # one listing per Region of the rules (a single page here), and one tag-filtered
        # listing per other enabled Region: where images this manifest released may be
        "DescribeRegions": 1,
        "DescribeImages": 2 + (enabled - 2),
        "DescribeImageAttribute": len(managed),  # only managed images
        "DescribeSnapshots": 2,  # one batch per Region; unencrypted: no KMS calls
    }
    described = {p["ImageId"] for op, p in calls.params if op == "DescribeImageAttribute"}
    assert described == set(managed) and not described & set(unmanaged)
    assert all(p["Owners"] == ["self"] for op, p in calls.params if op == "DescribeImages")
    scans = [p["Filters"] for op, p in calls.params if op == "DescribeImages" and "Filters" in p]
    assert len(scans) == enabled - 2
    assert all(f == [{"Name": "tag:reconciler:manifest", "Values": ["m"]}] for f in scans)
    assert plan.summary.images == 6 and plan.summary.add == 12

    # --region: only that Region is read, no scan; ownership: none: no scan at all
    clients, calls = counted_clients()
    build_plan(parse_manifest(MANIFEST, "m.yaml"), Reader(clients, 4),
               PlanOptions(regions=("us-east-1",)))
    assert "DescribeRegions" not in calls.by_op and calls.by_op["DescribeImages"] == 1
    clients, calls = counted_clients()
    build_plan(parse_manifest(MANIFEST.replace(b"settings: {", b"settings: {ownership: none, "),
                              "m.yaml"), Reader(clients, 4))
    assert "DescribeRegions" not in calls.by_op and calls.by_op["DescribeImages"] == 2


def test_public_access_state_read_only_when_a_public_share_is_added(aws: Images) -> None:
    aws.create("golden-1")
    aws.create("golden-2", region="eu-west-1", launch=[{"Group": "all"}])
    m = parse_manifest(MANIFEST.replace(b"allow_public", b"x").replace(
        b"settings: {", b"settings: {allow_public: true, ").replace(
        b"[prod, staging]", b"[public]"), "m.yaml")
    clients, calls = counted_clients()
    plan = build_plan(m, Reader(clients))
    # eu-west-1's image is already public: only us-east-1 needs the check.
    assert calls.by_op["GetImageBlockPublicAccessState"] == 1
    assert [(o.region, o.principal) for o in plan.operations] == [("us-east-1", Principal.public())]


def _ops(image_id: str, adds: list[str], removes: list[str]) -> list[Operation]:
    return ([Operation(Action.ADD, OpKind.LAUNCH, "us-east-1", image_id, Principal.account(a),
                       ("golden",)) for a in adds]
            + [Operation(Action.REMOVE, OpKind.LAUNCH, "us-east-1", image_id,
                         Principal.account(r)) for r in removes])


def test_one_modify_call_per_image_with_adds_and_removes(aws: Images) -> None:
    a = aws.create("golden-a", launch=[{"UserId": HAND}])
    b = aws.create("golden-b")
    clients, calls = counted_clients()
    log: list[dict[str, Any]] = []
    report = Applier(clients, IDENTITY, log=log.append).apply(
        _ops(a, [PROD, STAGING], [HAND]) + _ops(b, [PROD], []))
    assert calls.by_op == {"ModifyImageAttribute": 2}
    sent = {p["ImageId"]: p["LaunchPermission"] for op, p in calls.params
            if op == "ModifyImageAttribute"}
    assert sent[a] == {"Add": [{"UserId": PROD}, {"UserId": STAGING}], "Remove": [{"UserId": HAND}]}
    assert sent[b] == {"Add": [{"UserId": PROD}]}
    assert len(report.applied) == 4 and not report.failed
    assert aws.launch(a) == [{"UserId": PROD}, {"UserId": STAGING}]
    assert [r["result"] for r in log] == ["applied"] * 4
    assert all(r["caller"].endswith(":user/ci") and r["api"] == "ModifyImageAttribute" for r in log)


def test_a_failing_image_does_not_stop_the_others(aws: Images) -> None:
    good = [aws.create(f"golden-{i}") for i in range(4)]
    bad = aws.create("golden-bad")
    clients, _ = counted_clients()

    def deny(params: dict[str, Any], **_: Any) -> None:
        if params.get("ImageId") == bad:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "UnauthorizedOperation", "Message": "denied"}},
                "ModifyImageAttribute")

    clients.session.events.register("provide-client-params.ec2.ModifyImageAttribute", deny)
    ops = [op for i in [*good, bad] for op in _ops(i, [PROD], [])]
    report = Applier(clients, IDENTITY).apply(ops)
    assert [o.operation.resource for o in report.failed] == [bad]
    assert "ec2:ModifyImageAttribute" in report.failed[0].error
    assert "UnauthorizedOperation" in report.failed[0].error
    for i in good:
        assert aws.launch(i) == [{"UserId": PROD}]
    assert aws.launch(bad) == []


def test_throttling_is_retried_by_botocore(aws: Images, monkeypatch: pytest.MonkeyPatch) -> None:
    image = aws.create("golden-1")
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount",
                        lambda self, context: 0)
    # adaptive mode's client-side rate limiter would otherwise sleep after a throttle
    monkeypatch.setattr(botocore.retries.bucket.TokenBucket, "acquire", lambda self, *a, **k: True)
    clients, calls = counted_clients()
    throttled = {"n": 0}

    def throttle(request: Any, event_name: str, **_: Any) -> Any:
        if event_name.endswith(".ModifyImageAttribute") and throttled["n"] < 2:
            throttled["n"] += 1
            body = (b'<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
                    b'<Message>slow down</Message></Error></Errors></Response>')
            return botocore.awsrequest.AWSResponse(request.url, 503, {}, _Raw(body))
        return None

    clients.session.events.register_first("before-send.ec2", throttle)
    report = Applier(clients, IDENTITY).apply(_ops(image, [PROD], []))
    assert throttled["n"] == 2
    assert not report.failed
    assert aws.launch(image) == [{"UserId": PROD}]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_disabled_image_is_listed_and_excluded_with_a_warning(aws: Images) -> None:
    from reconciler.shell.sandbox import set_image_state

    image = aws.create("golden-1")
    set_image_state(ACCOUNT, "us-east-1", image, "disabled")
    clients, calls = counted_clients()
    plan = build_plan(parse_manifest(MANIFEST, "m.yaml"), Reader(clients),
                      PlanOptions(regions=("us-east-1",)))
    assert plan.operations == ()
    assert [(f.severity.value, f.code, f.resource) for f in plan.findings] == [
        ("warning", "image-disabled", image)]
    assert calls.by_op["DescribeImageAttribute"] == 0


def test_apply_never_undoes_a_change_made_since_the_plan(aws: Images) -> None:
    """Writes are Add/Remove deltas: a share someone adds by hand between plan and apply
    survives the apply (the next plan shows it as drift), and apply makes no extra read."""
    changed = aws.create("golden-changed")
    steady = aws.create("golden-steady")
    clients, calls = counted_clients()
    reader = Reader(clients, 4)
    plan = build_plan(parse_manifest(MANIFEST, "m.yaml"), reader, PlanOptions(regions=("us-east-1",)))
    reads = calls.by_op["DescribeImageAttribute"]
    boto3.client("ec2", region_name="us-east-1").modify_image_attribute(
        ImageId=changed, Attribute="launchPermission", LaunchPermission={"Add": [{"UserId": HAND}]})
    report = Applier(clients, reader.identity()).apply(plan.operations)
    assert report.failed == ()
    assert aws.launch(changed) == [{"UserId": PROD}, {"UserId": STAGING}, {"UserId": HAND}]
    assert aws.launch(steady) == [{"UserId": PROD}, {"UserId": STAGING}]
    assert calls.by_op["DescribeImageAttribute"] == reads, "no re-read before writing"
    again = build_plan(parse_manifest(MANIFEST, "m.yaml"), reader,
                       PlanOptions(regions=("us-east-1",)))
    assert [(o.action.value, o.resource, o.principal.value) for o in again.operations] == [
        ("remove", changed, HAND)]


def test_stop_event_prevents_new_writes(aws: Images) -> None:
    import threading

    images = [aws.create(f"golden-{i}") for i in range(3)]
    clients, calls = counted_clients()
    stop = threading.Event()
    stop.set()
    ops = [op for i in images for op in _ops(i, [PROD], [])]
    report = Applier(clients, IDENTITY, stop=stop).apply(ops)
    assert not report.applied and len(report.failed) == 3
    assert all(o.error.startswith("not applied: interrupted") for o in report.failed)
    assert "ModifyImageAttribute" not in calls.by_op
