"""Per-account usage (SPEC §7b): with ``settings.usage_reports``, a planned removal of an
account from an image waits while the owner's newest AMI usage report lists instances or
launch templates of that account.

What AWS documents (EC2 User Guide, "View your AMI usage",
https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/your-ec2-ami-usage.html; EC2 API
Reference, CreateImageUsageReport, DescribeImageUsageReports,
DescribeImageUsageReportEntries, ImageUsageReport):

- the owner creates a report per AMI, for the accounts it names (at most 200; none: all
  accounts) and the resource types it names (``ec2:Instance``, ``ec2:LaunchTemplate``; for
  launch templates the 20 newest versions unless ``version-depth`` says otherwise);
- a report is ``pending``, then ``available`` (its entries can be read) or ``error``;
  EC2 does not say how long that takes;
- its entries count, per account and resource type, the resources referencing the AMI (a
  launch template referencing it in several versions counts once);
- it "might not contain the most recent activity": instances of the past 24 hours and
  launch templates of the past few days may be missing;
- EC2 deletes it 30 days after creation (``ExpirationTime``);
- at most one ``pending`` report per AMI, and 2,000 per account, per Region.

So the newest ``available`` report of the last 30 days that covers an account decides for
that account: one listing its instances or launch templates withholds the removal (a
``warning[in-use-by-account]``); one listing none lets it go ahead. Without such a report
(or when one lists no use but did not check launch templates) the removal goes ahead and
an ``info[usage-report-missing]`` says how to request reports. Organizations and OUs are
never checked: a report counts accounts, not who belongs to an organization.

Only the launch permissions of an account are checked; when one waits, the account also
keeps the copy permission it has on the image's snapshots and its key access. A released
image (no rule matches it any more) is released whole or not at all: while its report lists
an account it would revoke using it, the release waits, shares and ownership tag with it
(as it does while the build is launched, :mod:`.inuse`). Pure.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..findings import Code, Finding
from ..model import Image, Principal, PrincipalKind, RegionKey, parse_time, plural
from .checks import ImageView, label
from .state import CurrentState

if TYPE_CHECKING:
    from ..manifest import Manifest
    from .pipeline import Settled

INSTANCE, LAUNCH_TEMPLATE = "ec2:Instance", "ec2:LaunchTemplate"
CHECKED = (INSTANCE, LAUNCH_TEMPLATE)  # what the request command asks a report to check
AVAILABLE, PENDING = "available", "pending"
KEPT_FOR = dt.timedelta(days=30)  # EC2 deletes a report 30 days after creation
MAX_ACCOUNTS = 200  # AccountIds of one CreateImageUsageReport
USAGE = "usage-report"  # digest entry: the report each removed account was decided by
_NOUNS = {INSTANCE: "instance", LAUNCH_TEMPLATE: "launch template"}
HOW = ("request them with `reconcile usage-reports MANIFEST` (settings.usage_reports; EC2 "
       "keeps a report 30 days)")


@dataclass(frozen=True)
class UsageReport:
    """One AMI usage report as DescribeImageUsageReports describes it."""

    report_id: str
    image_id: str
    state: str  # available | pending | error
    created: str  # CreationTime, ISO 8601
    resource_types: tuple[str, ...] = CHECKED
    accounts: tuple[str, ...] = ()  # the AccountIds it was created for; (): every account
    reason: str = ""  # StateReason, for a report in error

    def covers(self, account: str) -> bool:
        return not self.accounts or account in self.accounts

    @property
    def day(self) -> str:
        when = parse_time(self.created)
        return when.date().isoformat() if when else self.created


@dataclass(frozen=True)
class UsageEntry:
    """One entry of a report (DescribeImageUsageReportEntries): ``count`` resources of
    ``resource_type`` in ``account`` reference the image."""

    report_id: str
    account: str
    resource_type: str
    count: int


@dataclass(frozen=True)
class ImageUsage:
    """What the owner's reports say about one image: its reports, and the entries of those
    read (the ones that decide); ``error``: they could not be read, and why."""

    reports: tuple[UsageReport, ...] = ()
    entries: tuple[UsageEntry, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Verdict:
    """What the reports say about one account's use of one image."""

    account: str
    report: UsageReport | None = None  # the report that decides (None: none can)
    counts: tuple[tuple[str, int], ...] = ()  # resource type -> count, the ones in use
    why: str = ""  # why no report decides
    unreadable: bool = False  # the reports could not be read: the removal waits

    @property
    def in_use(self) -> bool:
        return bool(self.counts)

    @property
    def holds(self) -> bool:
        """Whether the account's removal waits: in use, or nobody could tell."""
        return self.in_use or self.unreadable

    @property
    def conclusive(self) -> bool:
        return self.report is not None and not self.why


@dataclass(frozen=True)
class AccountUse:
    """The reports gathering read, for the images the plan removes an account from."""

    enabled: bool = False
    images: Mapping[RegionKey, ImageUsage] = field(default_factory=dict)
    now: str = ""

    def verdict(self, key: RegionKey, account: str) -> Verdict:
        found = self.images.get(key)
        if found is None:
            return Verdict(account, why="its usage reports were not read")
        if found.error:
            return Verdict(account, why=found.error, unreadable=True)
        report = deciding(found.reports, account, self.now)
        if report is None:
            return Verdict(account, why=_none_usable(found.reports, account, self.now))
        counts: dict[str, int] = defaultdict(int)
        for e in found.entries:
            if e.report_id == report.report_id and e.account == account and e.count > 0:
                counts[e.resource_type] += e.count
        if not counts and not set(CHECKED) <= set(report.resource_types):
            return Verdict(account, report, why=f"report {report.report_id} of {report.day} "
                                                "did not check launch templates and instances")
        return Verdict(account, report, tuple(sorted(counts.items())))


def fresh(report: UsageReport, now: str) -> bool:
    """Created within the 30 days EC2 keeps a report (a report of unknown age is not)."""
    created, at = parse_time(report.created), parse_time(now) if now else None
    return created is not None and (at is None or created + KEPT_FOR > at)


def deciding(reports: Iterable[UsageReport], account: str, now: str) -> UsageReport | None:
    """The newest available report of the last 30 days that covers ``account``."""
    usable = [r for r in reports if r.state == AVAILABLE and r.covers(account) and fresh(r, now)]
    return max(usable, key=lambda r: (parse_time(r.created), r.report_id), default=None)


def _none_usable(reports: Sequence[UsageReport], account: str, now: str) -> str:
    mine = sorted((r for r in reports if r.covers(account) and fresh(r, now)),
                  key=lambda r: (r.created, r.report_id))
    if mine and mine[-1].state == PENDING:
        return f"report {mine[-1].report_id} of {mine[-1].day} is still pending"
    if mine and mine[-1].state != AVAILABLE:
        reason = f": {mine[-1].reason}" if mine[-1].reason else ""
        return f"report {mine[-1].report_id} of {mine[-1].day} is in {mine[-1].state}{reason}"
    old = " (those older than 30 days are not used)" if any(
        r.covers(account) for r in reports) else ""
    return f"no available report of the last 30 days covers it{old}"


def account_removals(v: ImageView, prune: bool) -> frozenset[Principal]:
    """The accounts whose launch permission the plan removes from ``v`` (before usage is
    taken into account): those it holds that no rule declares, pruned or withdrawn by a
    rule's lifecycle conditions, unless their removal waits already (:mod:`.inuse`)."""
    if v.blocked:
        return frozenset()
    m = v.m
    return frozenset(p for p in v.current if p.kind is PrincipalKind.ACCOUNT
                     and p not in m.launch and (prune or p in m.withheld_launch)
                     and p not in v.keep)


def release_removals(img: Image, state: CurrentState) -> frozenset[Principal]:
    """The accounts a release revokes: every account with a launch permission on it."""
    return frozenset(p for p in state.launch.get(RegionKey(*img.key), frozenset())
                     if p.kind is PrincipalKind.ACCOUNT)


def _removals(settled: Settled, state: CurrentState, manifest: Manifest
              ) -> dict[RegionKey, frozenset[Principal]]:
    """Image -> the accounts the plan removes from it (before usage is taken into account):
    managed images, and the released images it revokes unless their build is launched."""
    from .ownership import releasing

    out = {RegionKey(*v.image.key): removed for v in settled.views
           if (removed := account_removals(v, manifest.settings.prune))}
    out |= {RegionKey(*img.key): removed
            for img in releasing(manifest, state, settled.in_use)
            if (removed := release_removals(img, state))}
    return dict(sorted(out.items()))


def wanted(settled: Settled, state: CurrentState, manifest: Manifest
           ) -> dict[RegionKey, frozenset[str]]:
    """Image -> the accounts the plan removes from it: the images whose reports are read."""
    return {key: frozenset(p.value for p in removed)
            for key, removed in _removals(settled, state, manifest).items()}


def to_read(found: Sequence[UsageReport], accounts: Iterable[str], now: str) -> set[str]:
    """The reports whose entries decide for ``accounts``."""
    return {r.report_id for a in accounts if (r := deciding(found, a, now)) is not None}


def withhold(v: ImageView, use: AccountUse, prune: bool) -> tuple[ImageView, list[Finding]]:
    """``v`` with the account removals its reports withhold, and the findings that say so."""
    if not use.enabled:
        return v, []
    removed = account_removals(v, prune)
    if not removed:
        return v, []
    key = RegionKey(*v.image.key)
    verdicts = [use.verdict(key, p.value) for p in sorted(removed)]
    used = frozenset(Principal.account(x.account) for x in verdicts if x.holds)
    findings = []
    if in_use := [x for x in verdicts if x.in_use]:
        findings.append(_in_use_finding(v.image, in_use))
    if unread := [x for x in verdicts if x.unreadable]:
        findings.append(_unreadable_finding(v.image, unread))
    if unknown := [x for x in verdicts if not x.conclusive and not x.unreadable]:
        findings.append(_missing_finding(v.image, unknown))
    return (replace(v, used=used, used_copy=used) if used else v), findings


def _release_verdicts(img: Image, state: CurrentState, use: AccountUse) -> list[Verdict]:
    key = RegionKey(*img.key)
    return [use.verdict(key, p.value) for p in sorted(release_removals(img, state))]


def release_waits(img: Image, state: CurrentState, use: AccountUse) -> bool:
    """Whether the release of ``img`` waits: its report lists an account it revokes using it."""
    return use.enabled and any(x.holds for x in _release_verdicts(img, state, use))


def release_findings(img: Image, state: CurrentState, use: AccountUse) -> list[Finding]:
    """What the reports say about a release the plan would make (nothing when off)."""
    if not use.enabled:
        return []
    verdicts = _release_verdicts(img, state, use)
    if used := [x for x in verdicts if x.in_use]:
        return [_in_use_finding(img, used, release=True)]
    if unread := [x for x in verdicts if x.unreadable]:
        return [_unreadable_finding(img, unread, release=True)]
    unknown = [x for x in verdicts if not x.conclusive]
    return [_missing_finding(img, unknown)] if unknown else []


def _in_use_finding(img: Image, verdicts: Sequence[Verdict], release: bool = False) -> Finding:
    who = "; ".join(
        f"{x.account} ({', '.join(plural(n, _NOUNS.get(t, t)) for t, n in x.counts)} in report "
        f"{x.report.report_id} of {x.report.day})" for x in verdicts if x.report is not None)
    one = len(verdicts) == 1
    users = ",".join(f"{{UserId={x.account}}}" for x in verdicts)
    what = (f"its release (no rule matches it) waits, shares and ownership tag with it, "
            f"while {who} {'uses' if one else 'use'} it" if release else
            f"the removal of {who} waits")
    return Finding.about(
        Code.IN_USE_BY_ACCOUNT, label(img), img.region, img.image_id,
        f"{label(img)}: {what}: the image's newest AMI usage report lists "
        f"{'the account' if one else 'these accounts'} using it (settings.usage_reports). It "
        f"goes ahead once a newer report lists no use: have {'it' if one else 'them'} stop "
        "using the image, then request a new report with `reconcile usage-reports MANIFEST`; "
        "or set settings.usage_reports: false, or remove it by hand: aws ec2 "
        f"modify-image-attribute --region {img.region} --image-id {img.image_id} "
        f"--launch-permission 'Remove=[{users}]'")


def _unreadable_finding(img: Image, verdicts: Sequence[Verdict], release: bool = False
                        ) -> Finding:
    """The reports could not be read: nobody can say the accounts stopped using the image,
    so their removal waits (as it would while a report lists them)."""
    who = ", ".join(x.account for x in verdicts)
    what = ("its release (no rule matches it) waits, shares and ownership tag with it"
            if release else f"the removal of {who} waits")
    return Finding.about(
        Code.USAGE_REPORT_UNREADABLE, label(img), img.region, img.image_id,
        f"{label(img)}: {what}: its AMI usage reports could not be read ({verdicts[0].why}); "
        "settings.usage_reports needs ec2:DescribeImageUsageReports and "
        "ec2:DescribeImageUsageReportEntries, and a boto3 that knows them. Fix the access, "
        "or set settings.usage_reports: false to remove without checking")


def _missing_finding(img: Image, verdicts: Sequence[Verdict]) -> Finding:
    by_why: dict[str, list[str]] = defaultdict(list)
    for x in verdicts:
        by_why[x.why].append(x.account)
    why = "; ".join(f"{', '.join(accounts)}: {reason}" for reason, accounts in by_why.items())
    return Finding.about(
        Code.USAGE_REPORT_MISSING, label(img), img.region, img.image_id,
        f"{label(img)}: no AMI usage report says whether the accounts it is removed from still "
        f"use it ({why}); the removal goes ahead unchecked. To check it first, {HOW}")


def consulted(settled: Settled, state: CurrentState, manifest: Manifest
              ) -> dict[tuple[str, str, str], Any]:
    """Digest entries: per image an account is removed from, the report each removed account
    was decided by ("" for none), so that a newer report makes a saved plan stale."""
    use = settled.account_use
    if not use.enabled:
        return {}
    out: dict[tuple[str, str, str], Any] = {}
    for key, removed in _removals(settled, state, manifest).items():
        verdicts = (use.verdict(key, p.value) for p in sorted(removed))
        out[(USAGE, key.region, key.resource)] = {
            x.account: x.report.report_id if x.report is not None and x.conclusive else ""
            for x in verdicts}
    return out


def requested(state: Mapping[tuple[str, str, str], Any]) -> dict[RegionKey, tuple[str, ...]]:
    """From a plan's consulted state: image -> the accounts it removes (or withholds), whose
    use a new report should check."""
    return {RegionKey(region, image_id): tuple(sorted(accounts))
            for (kind, region, image_id), accounts in sorted(state.items()) if kind == USAGE}
