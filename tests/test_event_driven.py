"""``examples/event-driven/``: the CloudFormation template passes ``cfn-lint``, each of its
EventBridge rules routes exactly its kind of sample event (``sample_events``, shaped as the
AWS pages it cites show them) through moto's EventBridge backend (``PutEvents`` matches rule
patterns and delivers to SQS targets; its ``TestEventPattern`` is a stub), and the function's
role is the README's read and write policies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import ACCOUNT, EXAMPLES, HAND, US, readme_policies, readme_write_statements
from sample_events import (
    ami_state,
    cloudtrail,
    modify_image,
    modify_snapshot,
    put_key_policy,
    reset_image,
    reset_snapshot,
    tags,
)

TEMPLATE = EXAMPLES / "event-driven" / "template.yaml"
IMAGE, SNAP = "ami-0123456789abcdef0", "snap-0123456789abcdef0"
KEY = f"arn:aws:kms:{US}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    doc, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    return json.loads(json.dumps(doc))  # plain dicts and lists


def test_the_template_passes_cfn_lint() -> None:
    lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _resolve(value: Any) -> Any:
    """The pattern as EventBridge gets it in this account: ``!Ref AWS::AccountId`` resolved."""
    if value == {"Ref": "AWS::AccountId"}:
        return ACCOUNT
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def _rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: res["Properties"] for name, res in template["Resources"].items()
            if res["Type"] == "AWS::Events::Rule"}


@pytest.fixture
def routed(template: dict[str, Any]) -> Iterator[Any]:
    """Each rule of the template in moto's EventBridge, targeting a queue of its own; yields
    a function that puts one event and says which rules delivered it."""
    from moto import mock_aws

    with mock_aws():
        events = boto3.client("events", region_name=US)
        sqs = boto3.client("sqs", region_name=US)
        queues = {}
        for name, props in _rules(template).items():
            url = sqs.create_queue(QueueName=f"{name}.fifo", Attributes={
                "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            events.put_rule(Name=name, EventPattern=json.dumps(_resolve(props["EventPattern"])))
            target = props["Targets"][0]
            events.put_targets(Rule=name, Targets=[{
                "Id": target["Id"], "Arn": arn, "SqsParameters": target["SqsParameters"]}])
            queues[name] = url

        def put(event: dict[str, Any]) -> list[str]:
            entry = {"Source": event["source"], "DetailType": event["detail-type"],
                     "Detail": json.dumps(event["detail"]), "Resources": event["resources"]}
            assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
            hit = []
            for name, url in queues.items():
                for msg in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
                        "Messages", []):
                    hit.append(name)
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
            return sorted(hit)

        yield put


@pytest.mark.parametrize("event, rule", [
    (modify_image(IMAGE, add=[{"UserId": HAND}]), "ImagePermissionsRule"),
    (reset_image(IMAGE), "ImagePermissionsRule"),
    (modify_snapshot(SNAP, add=[HAND]), "SnapshotPermissionsRule"),
    (reset_snapshot(SNAP), "SnapshotPermissionsRule"),
    (put_key_policy(KEY, "{}"), "KeyPoliciesRule"),
    (tags("CreateTags", [IMAGE], {"reconciler:manifest": "m"}), "ImageTagsRule"),
    (tags("DeleteTags", [IMAGE], {"reconciler:manifest": "m"}), "ImageTagsRule"),
    (ami_state(IMAGE), "NewBuildsRule"),
    (ami_state(IMAGE, "deregistered"), None),
    (cloudtrail("RunInstances", {"instancesSet": {"items": [{"imageId": IMAGE}]}}), None),
    (cloudtrail("ScheduleKeyDeletion", {"keyId": KEY}, service="kms"), None),
], ids=["modify-image", "reset-image", "modify-snapshot", "reset-snapshot", "put-key-policy",
        "create-tags", "delete-tags", "available", "deregistered", "run-instances",
        "schedule-key-deletion"])
def test_each_rule_routes_exactly_its_kind_of_event(routed: Any, event: dict[str, Any],
                                                    rule: str | None) -> None:
    assert routed(event) == ([rule] if rule else [])


def test_every_rule_takes_only_the_owner_accounts_events_into_the_fifo_queue(
        template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for name, props in _rules(template).items():
        assert props["EventPattern"]["account"] == [{"Ref": "AWS::AccountId"}], name
        (target,) = props["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["EventsQueue", "Arn"]}, name
        assert target["DeadLetterConfig"] and target["RetryPolicy"], name
    queue = resources["EventsQueue"]["Properties"]
    assert queue["FifoQueue"] and queue["ContentBasedDeduplication"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    function = resources["Function"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == 1
    assert function["Handler"] == "reconciler.cli.aws_lambda.handler"
    from reconciler.cli import aws_lambda

    assert callable(aws_lambda.handler)
    mapping = resources["EventsToFunction"]["Properties"]
    assert mapping["BatchSize"] == 1 and mapping["FunctionResponseTypes"] == [
        "ReportBatchItemFailures"]


def test_the_function_role_is_the_readmes_read_and_write_policies(
        template: dict[str, Any]) -> None:
    (policy,) = template["Resources"]["FunctionRole"]["Properties"]["Policies"]
    statements = {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]
                  if isinstance(st, dict) and "Sid" in st}
    read, _ = readme_policies()
    assert set(statements["AmiShareReconcilerRead"]["Action"]) == read
    for st in readme_write_statements():  # the same statements, conditions included
        mine = statements[st["Sid"]]
        assert set(mine["Action"]) == set(st["Action"]), st["Sid"]
        assert mine.get("Condition") == st.get("Condition"), st["Sid"]
    others = {a for sid, st in statements.items() if not sid.startswith("AmiShareReconciler")
              for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert others == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                      "logs:CreateLogStream", "logs:PutLogEvents"}


def test_the_function_may_assume_the_owner_role_and_its_plan_role_when_given(
        template: dict[str, Any]) -> None:
    """`event` corrects through the manifest's role_arn; `event --detect-only` (DetectOnly)
    reads through its plan_role_arn: each is granted only when its parameter is set."""
    (policy,) = template["Resources"]["FunctionRole"]["Properties"]["Policies"]
    granted = {st["Fn::If"][0]: st["Fn::If"][1] for st in policy["PolicyDocument"]["Statement"]
               if "Fn::If" in st}
    conditions = template["Conditions"]
    for condition, parameter in (("AssumesOwnerRole", "OwnerRoleArn"),
                                 ("AssumesOwnerPlanRole", "OwnerPlanRoleArn")):
        assert granted[condition]["Action"] == "sts:AssumeRole"
        assert granted[condition]["Resource"] == {"Ref": parameter}
        assert conditions[condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
        assert template["Parameters"][parameter]["Default"] == ""
    deploy = (EXAMPLES / "event-driven" / "deploy.sh").read_text()
    assert '"OwnerPlanRoleArn=${OWNER_PLAN_ROLE_ARN:-}"' in deploy


def test_the_deploy_script_is_valid_shell() -> None:
    script = EXAMPLES / "event-driven" / "deploy.sh"
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
