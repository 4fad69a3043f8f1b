"""AMI usage reports, which moto lacks: ``CreateImageUsageReport``,
``DescribeImageUsageReports`` and ``DescribeImageUsageReportEntries``, answered in the shapes
of botocore's EC2 model (ImageUsageReport, ImageUsageReportEntry) from a store tests and the
sandbox fill.

What they do, from the EC2 API Reference (CreateImageUsageReport,
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateImageUsageReport.html;
DescribeImageUsageReports, DescribeImageUsageReportEntries, ImageUsageReport,
ImageUsageResourceTypeRequest, ImageUsageResourceTypeOptionRequest) and the EC2 User Guide,
"View your AMI usage" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/your-ec2-ami-usage.html):

- a report is made for one AMI of the caller, the resource types it names (``ec2:Instance``,
  ``ec2:LaunchTemplate``, ``imagebuilder:ImageRecipe``, ``imagebuilder:ContainerRecipe``;
  options only for ``ec2:LaunchTemplate``: ``version-depth``, 1 to 10,000) and the accounts it
  names (at most 200; none: every account); tags only with ``ResourceType``
  ``image-usage-report``, "any other value will cause the report creation to fail";
- it starts ``pending`` ("The initial value of the State field is pending") and becomes
  ``available``; EC2 gives no duration: here a report made through the API stays pending
  until :meth:`UsageReportStore.finish` (a test's "later"); its entries are shown once it is
  available;
- ``ExpirationTime`` is 30 days after creation, when EC2 deletes it;
- the Describe calls take at most 200 image IDs and 200 report IDs, ``MaxResults`` (at least
  1) and ``NextToken``, and the filters the reference lists: ``creation-time`` (ISO 8601 in
  UTC, ``*`` wildcards), ``state``, ``tag:<key>``, ``tag-key`` for reports; ``account-id``,
  ``creation-time``, ``resource-type`` for entries.

Not emulated: the quotas of pending reports (one per AMI, 2,000 per account and Region),
whose refusal the documents do not name.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

RESOURCE_TYPES = ("ec2:Instance", "ec2:LaunchTemplate", "imagebuilder:ImageRecipe",
                  "imagebuilder:ContainerRecipe")
KEPT_FOR = dt.timedelta(days=30)
MAX_IDS = 200
_ACCOUNT = re.compile(r"\d{12}")


class UsageReportStore:
    """The emulated account's reports, by (account, Region), and what a report made now
    would find (consumer account -> resource type -> count, per image)."""

    def __init__(self) -> None:
        self.reports: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.entries: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.usage: dict[tuple[str, str, str], dict[str, dict[str, int]]] = {}
        self.finishing: set[str] = set()  # made through the API, pending until finish()
        self.tokens: dict[tuple[str, str, str], str] = {}  # ClientToken -> report ID

    def clear(self) -> None:
        for store in (self.reports, self.entries, self.usage, self.tokens):
            store.clear()
        self.finishing.clear()

    def finish(self) -> None:
        """Every report made through the API is available from now on."""
        for reports in self.reports.values():
            for r in reports:
                if r["ReportId"] in self.finishing:
                    r["State"] = "available"
        self.finishing.clear()

    def set_usage(self, account: str, region: str, image_id: str,
                  usage: Mapping[str, Mapping[str, int]]) -> None:
        """What a report created from now on finds: consumer account -> type -> count."""
        self.usage[(account, region, image_id)] = {a: dict(c) for a, c in usage.items()}

    def add(self, account: str, region: str, image_id: str, *, created: dt.datetime,
            state: str = "available", accounts: Iterable[str] = (),
            resource_types: Iterable[str] = ("ec2:Instance", "ec2:LaunchTemplate"),
            usage: Mapping[str, Mapping[str, int]] | None = None, report_id: str = "",
            reason: str = "", tags: Mapping[str, str] | None = None) -> str:
        """A report as EC2 would describe it (its entries from ``usage``, else from what
        :meth:`set_usage` said); its ID."""
        rid = report_id or f"amiur-{secrets.token_hex(9)[:17]}"
        types = list(resource_types)
        report: dict[str, Any] = {
            "ImageId": image_id, "ReportId": rid,
            "ResourceTypes": [{"ResourceType": t} for t in types],
            "State": state, "CreationTime": created, "ExpirationTime": created + KEPT_FOR,
            "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}
        if accounts:
            report["AccountIds"] = list(accounts)
        if reason:
            report["StateReason"] = reason
        found = usage if usage is not None else self.usage.get((account, region, image_id), {})
        self.reports.setdefault((account, region), []).append(report)
        self.entries.setdefault((account, region), []).extend(
            {"ResourceType": t, "ReportId": rid, "UsageCount": n, "AccountId": consumer,
             "ImageId": image_id, "ReportCreationTime": created}
            for consumer, counts in sorted(found.items())
            if not accounts or consumer in report.get("AccountIds", ())
            for t, n in sorted(counts.items()) if t in types and n > 0)
        return rid


IMAGE_USAGE_REPORTS = UsageReportStore()


def install() -> None:
    """Add the three actions to moto's EC2 responses (called once, from moto_extensions)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    def create_image_usage_report(self: Any) -> Any:
        self.error_on_dryrun()
        image_id, account, region = self._get_param("ImageId"), self.current_account, self.region
        ami = self.ec2_backend.amis.get(image_id) if image_id else None
        if ami is None or str(ami.owner_id) != account:
            from moto.ec2.exceptions import InvalidAMIIdError

            raise InvalidAMIIdError(image_id or "")
        types = _resource_types(self._get_param("ResourceTypes") or [])
        accounts = [str(a) for a in self._get_param("AccountIds") or []]
        if len(accounts) > MAX_IDS or any(not _ACCOUNT.fullmatch(a) for a in accounts):
            _invalid(f"AccountIds: at most {MAX_IDS} 12-digit account IDs")
        tags: dict[str, str] = {}
        for spec in self._get_param("TagSpecifications") or []:
            if spec.get("ResourceType") != "image-usage-report":
                _invalid(f"TagSpecifications: ResourceType {spec.get('ResourceType')!r} must be "
                         "image-usage-report")
            tags.update({t["Key"]: t.get("Value", "") for t in spec.get("Tags") or []})
        token = self._get_param("ClientToken")
        if token and (account, region, token) in IMAGE_USAGE_REPORTS.tokens:
            return ActionResult({"ReportId": IMAGE_USAGE_REPORTS.tokens[(account, region, token)]})
        rid = IMAGE_USAGE_REPORTS.add(account, region, image_id,
                                      created=dt.datetime.now(dt.UTC),
                                      state="pending", accounts=accounts,
                                      resource_types=[t for t, _ in types], tags=tags)
        report = IMAGE_USAGE_REPORTS.reports[(account, region)][-1]
        report["ResourceTypes"] = [{"ResourceType": t, **({"ResourceTypeOptions": o} if o else {})}
                                   for t, o in types]
        IMAGE_USAGE_REPORTS.finishing.add(rid)
        if token:
            IMAGE_USAGE_REPORTS.tokens[(account, region, token)] = rid
        return ActionResult({"ReportId": rid})

    def describe_image_usage_reports(self: Any) -> Any:
        self.error_on_dryrun()
        key = (self.current_account, self.region)
        now = dt.datetime.now(dt.UTC)
        kept = [r for r in IMAGE_USAGE_REPORTS.reports.get(key, []) if r["ExpirationTime"] > now]
        if key in IMAGE_USAGE_REPORTS.reports:  # EC2 deletes a report 30 days after creation
            IMAGE_USAGE_REPORTS.reports[key] = kept
        chosen = _chosen(self, kept, {
            "state": lambda r: [r["State"]],
            "creation-time": lambda r: [_iso(r["CreationTime"])],
            "tag-key": lambda r: [t["Key"] for t in r.get("Tags", [])]},
            tags=lambda r: [(t["Key"], t["Value"]) for t in r.get("Tags", [])])
        return ActionResult(_page(self, chosen, "ImageUsageReports"))

    def describe_image_usage_report_entries(self: Any) -> Any:
        self.error_on_dryrun()
        key = (self.current_account, self.region)
        available = {r["ReportId"] for r in IMAGE_USAGE_REPORTS.reports.get(key, [])
                     if r["State"] == "available"}
        entries = [e for e in IMAGE_USAGE_REPORTS.entries.get(key, [])
                   if e["ReportId"] in available]
        chosen = _chosen(self, entries, {
            "account-id": lambda e: [e["AccountId"]],
            "creation-time": lambda e: [_iso(e["ReportCreationTime"])],
            "resource-type": lambda e: [e["ResourceType"]]})
        return ActionResult(_page(self, chosen, "ImageUsageReportEntries"))

    EC2Response.create_image_usage_report = create_image_usage_report  # type: ignore[attr-defined]
    EC2Response.describe_image_usage_reports = describe_image_usage_reports  # type: ignore[attr-defined]
    EC2Response.describe_image_usage_report_entries = describe_image_usage_report_entries  # type: ignore[attr-defined]


def _invalid(message: str) -> NoReturn:
    from moto.ec2.exceptions import InvalidParameterValue

    raise InvalidParameterValue(message)


def _resource_types(given: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """ResourceTypes, checked as ImageUsageResourceTypeRequest documents them."""
    if not given:
        from moto.ec2.exceptions import MissingParameterError

        raise MissingParameterError("ResourceTypes")
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for item in given:
        rtype = item.get("ResourceType", "")
        if rtype not in RESOURCE_TYPES:
            _invalid(f"ResourceType {rtype!r} is not one of {', '.join(RESOURCE_TYPES)}")
        options = item.get("ResourceTypeOptions") or []
        for option in options:
            values = option.get("OptionValues") or []
            if rtype != "ec2:LaunchTemplate" or option.get("OptionName") != "version-depth" \
                    or not all(str(v).isdigit() and 1 <= int(v) <= 10000 for v in values):
                _invalid("ResourceTypeOptions: only version-depth (1 to 10000), only for "
                         "ec2:LaunchTemplate")
        out.append((rtype, [{"OptionName": o["OptionName"],
                             "OptionValues": [str(v) for v in o.get("OptionValues") or []]}
                            for o in options]))
    return out


def _iso(when: dt.datetime) -> str:
    """YYYY-MM-DDThh:mm:ss.sssZ, the form the creation-time filter takes."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _chosen(response: Any, items: list[dict[str, Any]],
            filters: Mapping[str, Callable[[dict[str, Any]], list[str]]],
            tags: Callable[[dict[str, Any]], list[tuple[str, str]]] | None = None
            ) -> list[dict[str, Any]]:
    """``items`` the request's ImageIds, ReportIds and Filters keep."""
    image_ids = response._get_param("ImageIds") or []
    report_ids = response._get_param("ReportIds") or []
    if len(image_ids) > MAX_IDS or len(report_ids) > MAX_IDS:
        _invalid(f"ImageIds and ReportIds take at most {MAX_IDS} IDs each")
    out = [i for i in items if (not image_ids or i["ImageId"] in image_ids)
           and (not report_ids or i["ReportId"] in report_ids)]
    for f in response._get_param("Filters") or []:
        name, values = f.get("Name", ""), [str(v) for v in f.get("Values") or []]
        if name.startswith("tag:") and tags is not None:
            key = name[4:]

            def of(i: dict[str, Any]) -> list[str]:
                return [v for k, v in tags(i) if k == key]  # noqa: B023 (used at once)
        elif name in filters:
            of = filters[name]  # type: ignore[assignment]
        else:
            _invalid(f"The filter '{name}' is invalid")
        out = [i for i in out if any(fnmatch.fnmatchcase(x, v) for x in of(i) for v in values)]
    return out


def _page(response: Any, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One page of ``items``: ``MaxResults`` (at least 1) from ``NextToken``."""
    size = response._get_param("MaxResults")
    if size is not None and int(size) < 1:
        _invalid("MaxResults must be at least 1")
    token = response._get_param("NextToken")
    if token is not None and not str(token).isdigit():
        from moto.ec2.exceptions import InvalidNextToken

        raise InvalidNextToken(token)
    start, size = int(token or 0), int(size or 1000)
    page: dict[str, Any] = {key: items[start:start + size]}
    if start + size < len(items):
        page["NextToken"] = str(start + size)
    return page
