"""AMI usage reports against the emulator: the three actions moto lacks, emulated to the EC2
API Reference and botocore's model; the reader; a plan that withholds an account's removal
(and the calls it makes); and ``reconcile usage-reports``.

The documents every test here fakes AWS to:

- EC2 User Guide, "View your AMI usage"
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/your-ec2-ami-usage.html): a report is
  made for one AMI, some or all accounts, and EC2 instances and/or launch templates; "The
  initial value of the State field is pending. To be able to view the report entries, the
  state must be available"; EC2 deletes a report 30 days after creation; one pending report
  per AMI.
- EC2 API Reference: CreateImageUsageReport
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImageUsageReport.html:
  ``AccountId.N`` at most 200, ``ResourceType.N`` required), DescribeImageUsageReports and
  DescribeImageUsageReportEntries (``ImageId.N``/``ReportId.N`` at most 200 each,
  ``MaxResults``/``NextToken``, their filters), ImageUsageReport and ImageUsageReportEntry
  (the shapes answered).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers import (
    ACCOUNT,
    DEV,
    PROD,
    STAGING,
    US,
    Calls,
    Images,
    MotoServer,
    Runner,
    counted_clients,
    manifest_yaml,
)

from reconciler.core.manifest import parse_manifest
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader
from reconciler.shell.sandbox import IMAGE_USAGE_REPORTS

INSTANCES = {"ec2:Instance": 3, "ec2:LaunchTemplate": 1}
USAGE_CALLS = {"DescribeImageUsageReports", "DescribeImageUsageReportEntries",
               "CreateImageUsageReport"}
RULE = '- {name: g, select: {name: "golden-*"}, launch: [prod]}'


def _ago(**delta: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(**delta)


def _report(image_id: str, created: dt.datetime | None = None, **kw: Any) -> str:
    return IMAGE_USAGE_REPORTS.add(ACCOUNT, US, image_id, created=created or _ago(hours=2), **kw)


# --------------------------------------------------------------------------- the emulation


def test_a_report_is_pending_first_then_available_with_its_entries(aws: Images) -> None:
    """CreateImageUsageReport answers ReportId; DescribeImageUsageReports shows the report
    pending, then available, with the accounts and resource types it was made for and an
    ExpirationTime 30 days after its CreationTime; the entries show once it is available."""
    ec2 = boto3.client("ec2", region_name=US)
    image = aws.create("golden-1")
    IMAGE_USAGE_REPORTS.set_usage(ACCOUNT, US, image, {STAGING: INSTANCES, DEV: {"ec2:Instance": 2}})
    rid = ec2.create_image_usage_report(
        ImageId=image, AccountIds=[STAGING],
        ResourceTypes=[{"ResourceType": "ec2:Instance"},
                       {"ResourceType": "ec2:LaunchTemplate", "ResourceTypeOptions": [
                           {"OptionName": "version-depth", "OptionValues": ["100"]}]}],
        TagSpecifications=[{"ResourceType": "image-usage-report",
                            "Tags": [{"Key": "team", "Value": "images"}]}])["ReportId"]
    assert rid.startswith("amiur-")
    (first,) = ec2.describe_image_usage_reports(ImageIds=[image])["ImageUsageReports"]
    assert first["State"] == "pending"
    assert ec2.describe_image_usage_report_entries(ReportIds=[rid])["ImageUsageReportEntries"] == []
    IMAGE_USAGE_REPORTS.finish()  # EC2 gives no duration: the test says when it is done
    (report,) = ec2.describe_image_usage_reports(ReportIds=[rid])["ImageUsageReports"]
    assert report["State"] == "available" and report["AccountIds"] == [STAGING]
    assert report["ExpirationTime"] - report["CreationTime"] == dt.timedelta(days=30)
    assert report["ResourceTypes"][1] == {"ResourceType": "ec2:LaunchTemplate", "ResourceTypeOptions": [
        {"OptionName": "version-depth", "OptionValues": ["100"]}]}
    assert report["Tags"] == [{"Key": "team", "Value": "images"}]
    entries = ec2.describe_image_usage_report_entries(ImageIds=[image])["ImageUsageReportEntries"]
    assert sorted((e["AccountId"], e["ResourceType"], e["UsageCount"]) for e in entries) == [
        (STAGING, "ec2:Instance", 3), (STAGING, "ec2:LaunchTemplate", 1)], "only the accounts asked"
    assert {e["ReportId"] for e in entries} == {rid}


def test_the_emulation_refuses_what_the_reference_refuses(aws: Images) -> None:
    ec2 = boto3.client("ec2", region_name=US)
    image = aws.create("golden-1")
    instances = [{"ResourceType": "ec2:Instance"}]
    for kw, code in [
        (dict(ImageId="ami-0123456789abcdef0", ResourceTypes=instances), "InvalidAMIID.NotFound"),
        (dict(ImageId=image, ResourceTypes=[{"ResourceType": "ec2:Volume"}]), "InvalidParameterValue"),
        (dict(ImageId=image, ResourceTypes=[{"ResourceType": "ec2:Instance", "ResourceTypeOptions": [
            {"OptionName": "version-depth", "OptionValues": ["5"]}]}]), "InvalidParameterValue"),
        (dict(ImageId=image, ResourceTypes=instances, AccountIds=[f"{n:012d}" for n in range(201)]),
         "InvalidParameterValue"),
        (dict(ImageId=image, ResourceTypes=instances,
              TagSpecifications=[{"ResourceType": "image", "Tags": []}]), "InvalidParameterValue"),
    ]:
        with pytest.raises(ClientError) as exc:
            ec2.create_image_usage_report(**kw)
        assert exc.value.response["Error"]["Code"] == code, kw
    with pytest.raises(ClientError):
        ec2.describe_image_usage_reports(Filters=[{"Name": "owner", "Values": ["x"]}])


def test_pages_filters_and_the_thirty_days(aws: Images) -> None:
    """MaxResults/NextToken page through both lists; the filters the reference lists work;
    a report older than 30 days is gone."""
    ec2 = boto3.client("ec2", region_name=US)
    image = aws.create("golden-1")
    for n in range(5):
        _report(image, _ago(days=n), usage={STAGING: {"ec2:Instance": n + 1}},
                state="pending" if n == 4 else "available")
    _report(image, _ago(days=31))
    pages = list(ec2.get_paginator("describe_image_usage_reports").paginate(
        ImageIds=[image], PaginationConfig={"PageSize": 2}))
    assert [len(p["ImageUsageReports"]) for p in pages] == [2, 2, 1]
    states = ec2.describe_image_usage_reports(Filters=[{"Name": "state", "Values": ["pending"]}])
    assert len(states["ImageUsageReports"]) == 1
    day = _ago(days=1).strftime("%Y-%m-%dT*")
    assert len(ec2.describe_image_usage_reports(Filters=[
        {"Name": "creation-time", "Values": [day]}])["ImageUsageReports"]) == 1
    entries = list(ec2.get_paginator("describe_image_usage_report_entries").paginate(
        Filters=[{"Name": "account-id", "Values": [STAGING]},
                 {"Name": "resource-type", "Values": ["ec2:Instance"]}],
        PaginationConfig={"PageSize": 3}))
    assert [len(p["ImageUsageReportEntries"]) for p in entries] == [3, 1], "not the pending one"


# --------------------------------------------------------------------------- the reader


def test_the_reader_reads_reports_200_images_a_call(aws: Images) -> None:
    clients, calls = counted_clients()
    reader = Reader(clients, 4)
    images = [f"ami-{n:017x}" for n in range(1, 202)]
    created = _ago(hours=1)
    for image in images:
        _report(image, created, report_id=f"amiur-{int(image[4:], 16):017x}",
                usage={STAGING: {"ec2:Instance": 1}})
    reports = reader.usage_reports(US, images)
    assert len(reports) == 201 and calls.by_op["DescribeImageUsageReports"] == 2
    assert reports[0].state == "available" and reports[0].resource_types == (
        "ec2:Instance", "ec2:LaunchTemplate")
    assert reports[0].created == created.replace(microsecond=0).isoformat() or \
        reports[0].created.startswith(created.strftime("%Y-%m-%dT%H:%M"))
    entries = reader.usage_entries(US, [r.report_id for r in reports])
    assert len(entries) == 201 and calls.by_op["DescribeImageUsageReportEntries"] == 2
    assert entries[0].account == STAGING and entries[0].count == 1


def _counted_plan(settings: str, launch: list[str]) -> tuple[Any, Calls]:
    clients, calls = counted_clients()
    text = manifest_yaml(RULE, settings=settings).encode()
    return build_plan(parse_manifest(text, "m.yaml"), Reader(clients, 4)), calls


def test_no_usage_call_when_the_setting_is_off_or_no_account_is_removed(aws: Images) -> None:
    image = aws.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    _report(image, usage={STAGING: INSTANCES})
    plan, calls = _counted_plan("", [PROD, STAGING])
    assert [o.principal.label for o in plan.operations] == [STAGING], "off: removed"
    assert not USAGE_CALLS & set(calls.by_op)
    aws.client(US).modify_image_attribute(ImageId=image, Attribute="launchPermission",
                                          LaunchPermission={"Remove": [{"UserId": STAGING}]})
    plan, calls = _counted_plan("usage_reports: true", [PROD])
    assert plan.operations == () and not USAGE_CALLS & set(calls.by_op), "nothing removed"


def test_a_plan_reads_the_reports_once_for_the_images_it_removes_an_account_from(
        aws: Images) -> None:
    image = aws.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    aws.create("golden-2", launch=[{"UserId": PROD}])
    _report(image, usage={STAGING: INSTANCES})
    plan, calls = _counted_plan("usage_reports: true", [PROD, STAGING])
    assert plan.operations == ()
    assert [f.code for f in plan.findings] == ["in-use-by-account"]
    assert calls.by_op["DescribeImageUsageReports"] == 1
    assert calls.by_op["DescribeImageUsageReportEntries"] == 1
    assert [p["ImageIds"] for op, p in calls.params if op == "DescribeImageUsageReports"] == [
        [image]]


# --------------------------------------------------------------------------- the command line


def _manifest(tmp_path: Path, settings: str = "usage_reports: true", rule: str = RULE) -> str:
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_yaml(rule, settings=settings, name="amis"))
    return str(path)


def test_a_removal_waits_while_the_account_uses_the_image_and_converges(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    image = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    rid = _report(image, usage={STAGING: INSTANCES})
    m = _manifest(tmp_path)
    r = run_cli("plan", m, "--format", "json", "--out", str(tmp_path / "plan.json"))
    doc = json.loads(r.out)
    assert doc["operations"] == []
    [f] = [f for f in doc["findings"] if f["code"] == "in-use-by-account"]
    assert f["severity"] == "warning" and f["resource"] == image
    assert f"{STAGING} (3 instances, 1 launch template in report {rid} of " in f["message"]
    r = run_cli("apply", m, "--plan", str(tmp_path / "plan.json"), "--auto-approve")
    assert r.code == 0, r.err
    assert images.launch(image) == [{"UserId": PROD}, {"UserId": STAGING}]
    r = run_cli("plan", m, "--detailed-exitcode", "--no-color")
    assert r.code == 0, "converged: the withheld removal is no change"
    assert "warning[in-use-by-account]" in r.out
    _report(image, _ago(minutes=5), usage={})  # staging stopped using it
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0 and images.launch(image) == [{"UserId": PROD}]


def test_a_newer_report_makes_a_saved_plan_stale(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    image = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    _report(image, usage={STAGING: INSTANCES})
    m = _manifest(tmp_path)
    assert run_cli("plan", m, "--out", str(tmp_path / "plan.json")).code == 0
    _report(image, _ago(minutes=5), usage={})
    r = run_cli("apply", m, "--plan", str(tmp_path / "plan.json"), "--auto-approve")
    assert r.code == 1 and "stale" in r.err, r.err
    assert images.launch(image) == [{"UserId": PROD}, {"UserId": STAGING}]


def test_a_removal_goes_ahead_when_the_report_lists_no_use_by_that_account(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    image = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    _report(image, usage={PROD: INSTANCES})
    r = run_cli("apply", _manifest(tmp_path), "--auto-approve", "--no-color")
    assert r.code == 0, r.err
    assert "in-use-by-account" not in r.out and "usage-report-missing" not in r.out
    assert images.launch(image) == [{"UserId": PROD}]


def test_without_a_report_the_removal_goes_ahead_with_an_info(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    image = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    r = run_cli("apply", _manifest(tmp_path), "--auto-approve", "--no-color")
    assert r.code == 0, r.err
    assert f"info[usage-report-missing] {US} {image}" in r.out
    assert "reconcile usage-reports" in r.out
    assert images.launch(image) == [{"UserId": PROD}]


def test_usage_reports_requests_reports_only_for_the_accounts_a_plan_removes(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    pruned = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING},
                                               {"UserId": DEV}])
    images.create("golden-2", launch=[{"UserId": PROD}])  # converged: no report
    IMAGE_USAGE_REPORTS.set_usage(ACCOUNT, US, pruned, {STAGING: INSTANCES})
    m = _manifest(tmp_path, settings="")
    r = run_cli("usage-reports", m, "--dry-run")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [f"{US} {pruned} (golden-1): would request a report of "
                                  f"{STAGING}, {DEV} (instances, launch templates)"]
    assert "settings.usage_reports is false" in r.err
    assert IMAGE_USAGE_REPORTS.reports == {}, "a dry run creates none"
    r = run_cli("usage-reports", m)
    assert r.code == 0, r.err
    (report,) = IMAGE_USAGE_REPORTS.reports[(ACCOUNT, US)]
    assert report["ImageId"] == pruned and report["AccountIds"] == [STAGING, DEV]
    assert [t["ResourceType"] for t in report["ResourceTypes"]] == ["ec2:Instance",
                                                                   "ec2:LaunchTemplate"]
    rid = report["ReportId"]
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).date().isoformat()
    first, ready = r.out.splitlines()
    assert first == (f"{US} {pruned} (golden-1): requested report {rid} of {STAGING}, {DEV} "
                     f"(instances, launch templates): pending, usable once available and "
                     f"until {expires}")
    assert "aws ec2 wait image-usage-report-available" in ready
    r = run_cli("usage-reports", m)
    assert r.code == 0 and f"report {rid} is pending since" in r.out
    assert len(IMAGE_USAGE_REPORTS.reports[(ACCOUNT, US)]) == 1, "one pending report per AMI"
    IMAGE_USAGE_REPORTS.finish()
    doc = json.loads(run_cli("plan", _manifest(tmp_path), "--format", "json").out)
    assert [o["principal"] for o in doc["operations"]] == [{"UserId": DEV}], \
        "the report made: staging uses the image, dev does not"
    assert rid in next(f["message"] for f in doc["findings"] if f["code"] == "in-use-by-account")


def test_usage_reports_with_nothing_to_request(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    images.create("golden-1", launch=[{"UserId": PROD}])
    r = run_cli("usage-reports", _manifest(tmp_path))
    assert (r.code, r.out) == (0, "No planned removal of an account: no report to request.\n")
    r = run_cli("usage-reports", _manifest(tmp_path), "--strict")
    assert r.code == 1 and "--strict would be ignored" in r.err


def test_report_ids_from_aws_are_printed_inert(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """A report ID is a string from AWS like any other (SPEC §7d)."""
    _, images = server
    image = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    hostile = "amiur-1\n::error::forged\u202e`@octocat [x](/evil)"
    _report(image, report_id=hostile, usage={STAGING: INSTANCES})
    m = _manifest(tmp_path)
    for fmt in ("text", "markdown", "json"):
        r = run_cli("plan", m, "--format", fmt)
        assert r.code == 0, r.err
        assert "\n::error" not in r.out and "\u202e" not in r.out, fmt
    _report(image, _ago(minutes=1), state="pending", report_id=hostile + "-pending",
            tags={"Name": "x\n::warning::t"})
    r = run_cli("usage-reports", m)
    assert r.code == 0, r.err
    assert "pending since" in r.out
    assert not any(line.lstrip().startswith("::") for line in r.out.splitlines())
    assert "\u202e" not in r.out


def test_the_request_command_calls_only_what_the_readme_grants(aws: Images) -> None:
    """Least privilege: the plan's reads (README's read policy) and CreateImageUsageReport
    (README's statement for `reconcile usage-reports`)."""
    import re

    from helpers import ROOT, readme_policies

    from reconciler.shell.usage import request

    aws.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    clients, calls = counted_clients()
    reader = Reader(clients, 4)
    m = parse_manifest(manifest_yaml(RULE, settings="usage_reports: true").encode(), "m.yaml")
    (done,) = request(build_plan(m, reader), {ACCOUNT: reader})
    assert done.created and done.accounts == (STAGING,)
    section = (ROOT / "README.md").read_text().split("## IAM permissions", 1)[1]
    usage_statement = json.loads(re.findall(r"```json\n(.*?)```", section, flags=re.S)[2])
    assert usage_statement["Action"] == ["ec2:CreateImageUsageReport"]
    read, _ = readme_policies()
    called = {f"{'sts' if op == 'GetCallerIdentity' else 'ec2'}:{op}" for op in calls.by_op}
    assert called <= read | set(usage_statement["Action"]), called - read
    assert calls.by_op["CreateImageUsageReport"] == 1


def test_a_release_waits_while_an_account_it_revokes_uses_the_image(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """A deleted rule releases its images (README, "Ownership"); with usage_reports the
    release waits, tag and all, while the image's report lists an account it revokes."""
    _, images = server
    image = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}],
                          tags={"reconciler:manifest": "amis"})
    images.create("other-1")
    _report(image, usage={STAGING: {"ec2:LaunchTemplate": 2}})
    m = _manifest(tmp_path, rule='- {name: o, select: {name: "other-*"}, launch: [prod]}')
    doc = json.loads(run_cli("plan", m, "--format", "json").out)
    assert [o for o in doc["operations"] if o["resource"] == image] == []
    assert image not in doc["ownership"]["untag"]
    [f] = [f for f in doc["findings"] if f["code"] == "in-use-by-account"]
    assert f["resource"] == image and "2 launch templates" in f["message"]
