"""Per-account usage (SPEC §7b, "Per-account usage reports may refine this"): with
``settings.usage_reports``, a planned removal of an account from an image waits while the
owner's newest AMI usage report lists instances or launch templates of that account.

The facts these tests build reports from:

- EC2 User Guide, "View your AMI usage"
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/your-ec2-ami-usage.html): a report is
  made per AMI for the accounts given (or all of them) and the resource types given (EC2
  instances, launch templates); its entries count, per account and resource type, the
  resources referencing the AMI; its entries can be read once it is ``available``; EC2 deletes
  it 30 days after creation.
- EC2 API Reference, ImageUsageReport
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ImageUsageReport.html): ``state``
  is ``available`` | ``pending`` | ``error``; ``accountIdSet`` and ``resourceTypeSet`` are those
  the report was created with; ``expirationTime`` is 30 days after creation.
- EC2 API Reference, ImageUsageReportEntry: ``resourceType`` is ``ec2:Instance`` |
  ``ec2:LaunchTemplate`` | ...; ``usageCount`` the number of resources of that type
  referencing the image in ``accountId``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import builders
from builders import P_PROD, P_STAGING, US, ami, image, listing, manifest, plan_for, state
from helpers import DEV, PROD, STAGING

from reconciler.core.planning import PlanOptions
from reconciler.core.planning.usage import (
    ImageUsage,
    UsageEntry,
    UsageReport,
    requested,
    wanted,
)

NOW = "2026-12-04T12:00:00+00:00"
OPTIONS = PlanOptions(now=NOW)
YESTERDAY = "2026-12-03T10:00:00+00:00"
LAST_WEEK = "2026-11-27T10:00:00+00:00"
TWO_MONTHS_AGO = "2026-10-01T10:00:00+00:00"
ON = "usage_reports: true"
# prod stays declared; staging, shared by hand, is pruned
RULE = '  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'


def report(created: str = YESTERDAY, *, rid: str = "amiur-0123456789abcdef0",
           state: str = "available", accounts: tuple[str, ...] = (),
           types: tuple[str, ...] = ("ec2:Instance", "ec2:LaunchTemplate"),
           image_id: str = "") -> UsageReport:
    return UsageReport(rid, image_id or ami(1), state, created, types, accounts)


def usage(*reports: UsageReport, **counts: dict[str, int]) -> ImageUsage:
    """Reports and the entries of the first one: ``counts`` maps a principal's name
    (prod, staging, dev) to resource type -> count."""
    ids = {"prod": PROD, "staging": STAGING, "dev": DEV}
    rid = reports[0].report_id if reports else ""
    return ImageUsage(reports, tuple(UsageEntry(rid, ids[who], rtype, n)
                                     for who, by_type in counts.items()
                                     for rtype, n in by_type.items()))


def _plan(found: ImageUsage | None, settings: str = ON, rule: str = RULE, **kw: Any) -> Any:
    read = {} if found is None else {(US, ami(1)): found}
    st = state({(US, ami(1)): {P_PROD, P_STAGING}}, usage=read, **kw)
    return plan_for(manifest(rule, settings=settings), listing(image(1)), st, OPTIONS)


def _ops(plan: Any) -> list[tuple[str, str, str]]:
    return [(action, resource, who) for action, resource, who, _ in builders.launch_ops(plan)]


def _codes(plan: Any) -> dict[str, Any]:
    return {f.code: f for f in plan.findings}


def _usage_codes(plan: Any) -> list[tuple[str, str, str]]:
    return [c for c in builders.codes(plan.findings)
            if c[1] in ("in-use-by-account", "usage-report-missing")]


def test_a_removal_waits_while_the_report_lists_the_accounts_instances_and_templates() -> None:
    plan = _plan(usage(report(), staging={"ec2:Instance": 3, "ec2:LaunchTemplate": 1}))
    assert _ops(plan) == [], "staging keeps its share while it uses the image"
    f = _codes(plan)["in-use-by-account"]
    assert (f.severity.value, f.region, f.resource) == ("warning", US, ami(1))
    assert STAGING in f.message and "3 instances, 1 launch template" in f.message
    assert "amiur-0123456789abcdef0" in f.message and "2026-12-03" in f.message
    assert "reconcile usage-reports" in f.message and "usage_reports: false" in f.message
    assert "usage-report-missing" not in _codes(plan)


def test_a_removal_goes_ahead_when_the_report_lists_no_use_by_that_account() -> None:
    plan = _plan(usage(report(), prod={"ec2:Instance": 4}))  # prod's use says nothing of staging
    assert _ops(plan) == [("remove", ami(1), STAGING)]
    assert _usage_codes(plan) == []


def test_without_a_usable_report_the_removal_goes_ahead_and_says_so() -> None:
    plan = _plan(ImageUsage())
    assert _ops(plan) == [("remove", ami(1), STAGING)]
    f = _codes(plan)["usage-report-missing"]
    assert (f.severity.value, f.resource) == ("info", ami(1))
    assert STAGING in f.message and "reconcile usage-reports" in f.message


def test_reports_that_could_not_be_read_hold_the_removal_with_why() -> None:
    """Nobody can say the account stopped using the image (a role without the Describe
    actions, a boto3 that predates them): the removal waits, as for an account in use."""
    plan = _plan(ImageUsage(error="AccessDenied: not allowed"))
    assert _ops(plan) == []
    f = _codes(plan)["usage-report-unreadable"]
    assert (f.severity.value, f.resource) == ("warning", ami(1))
    assert "AccessDenied: not allowed" in f.message and STAGING in f.message
    assert "usage-report-missing" not in _codes(plan)


def test_reports_a_plan_cannot_use() -> None:
    """Older than 30 days (EC2 deletes it then), still pending, failed, made for other
    accounts, or not checking launch templates while it lists no use: none is usable."""
    for found, why in [
        (usage(report(TWO_MONTHS_AGO), staging={"ec2:Instance": 2}), "30 days"),
        (usage(report(state="pending")), "pending"),
        (usage(report(state="error")), "error"),
        (usage(report(accounts=(DEV,)), dev={"ec2:Instance": 2}), "no available report"),
        (usage(report(types=("ec2:Instance",))), "launch templates"),
    ]:
        plan = _plan(found)
        assert _ops(plan) == [("remove", ami(1), STAGING)], why
        assert why in _codes(plan)["usage-report-missing"].message, why


def test_a_report_for_some_resource_types_still_withholds_what_it_lists() -> None:
    plan = _plan(usage(report(types=("ec2:Instance",)), staging={"ec2:Instance": 1}))
    assert _ops(plan) == []
    assert "1 instance" in _codes(plan)["in-use-by-account"].message


def test_the_newest_available_report_decides() -> None:
    older = report(LAST_WEEK, rid="amiur-000000000000000a1")
    newer = report(YESTERDAY, rid="amiur-000000000000000b2")
    used_last_week = ImageUsage((older, newer), (UsageEntry(older.report_id, STAGING,
                                                            "ec2:Instance", 5),))
    assert _ops(_plan(used_last_week)) == [("remove", ami(1), STAGING)], "it stopped"
    used_now = ImageUsage((older, newer), (UsageEntry(newer.report_id, STAGING,
                                                      "ec2:LaunchTemplate", 2),))
    assert _ops(_plan(used_now)) == []
    pending = report(NOW, rid="amiur-000000000000000c3", state="pending")
    assert _ops(_plan(ImageUsage((older, newer, pending), used_now.entries))) == [], \
        "a pending report changes nothing until it is available"


def test_the_setting_off_ignores_reports() -> None:
    plan = _plan(usage(report(), staging={"ec2:Instance": 3}), settings="")
    assert _ops(plan) == [("remove", ami(1), STAGING)]
    assert _usage_codes(plan) == []


def test_organizations_and_additions_are_not_checked() -> None:
    """A report counts per account: an organization's or OU's removal cannot be checked, and
    an image whose plan removes no account needs no report."""
    st = state({(US, ami(1)): {P_PROD}})
    m = manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod, staging]}\n',
                 settings=ON)
    plan = plan_for(m, listing(image(1)), st, OPTIONS)
    assert _ops(plan) == [("add", ami(1), STAGING)]
    assert _usage_codes(plan) == []


def test_a_lifecycle_fall_out_waits_for_the_accounts_using_it_with_its_copy_permission() -> None:
    rule = ('  - {name: g, select: {name: "golden-*", latest: 1}, launch: [prod, staging],'
            ' copy: [staging]}\n')
    old = image(1, creation_date="2026-11-01T00:00:00.000Z", snapshots=("snap-1",))
    new = image(2, creation_date="2026-11-08T00:00:00.000Z", snapshots=("snap-2",))
    st = state({(US, ami(1)): {P_PROD, P_STAGING}, (US, ami(2)): {P_PROD, P_STAGING}},
               snapshots={(US, s): builders.snapshot(s) for s in ("snap-1", "snap-2")},
               copy={(US, "snap-1"): frozenset({P_STAGING}), (US, "snap-2"): frozenset({P_STAGING})},
               usage={(US, ami(1)): usage(report(), staging={"ec2:Instance": 1})})
    plan = plan_for(manifest(rule, settings=ON), listing(old, new), st, OPTIONS)
    assert [(o.action.value, o.kind.value, o.resource, o.principal.label)
            for o in plan.operations] == [("remove", "launch_permission", ami(1), PROD)], \
        "staging keeps its launch and copy permissions"
    assert STAGING in _codes(plan)["in-use-by-account"].message


def test_the_key_access_of_a_withheld_removal_stays() -> None:
    img = image(1, snapshots=("snap-1",), encrypted=True)
    st = state({(US, ami(1)): {P_PROD, P_STAGING}},
               snapshots={(US, "snap-1"): builders.snapshot("snap-1", key=builders.KEY)},
               keys={(US, builders.KEY): builders.key_info(P_PROD, P_STAGING)},
               usage={(US, ami(1)): usage(report(), staging={"ec2:Instance": 1})})
    plan = plan_for(manifest(RULE, settings=ON), listing(img), st, OPTIONS)
    assert _ops(plan) == [], "staging keeps its share and the key access it launches with"


def test_the_report_a_plan_decided_by_is_part_of_its_state_digest() -> None:
    """A newer report between plan and apply makes the saved plan stale, not 'edited'."""
    first = _plan(usage(report(), staging={"ec2:Instance": 1}))
    same = _plan(usage(report(), staging={"ec2:Instance": 1}))
    newer = _plan(ImageUsage((report(), report(NOW, rid="amiur-000000000000000d4")),
                             (UsageEntry("amiur-0123456789abcdef0", STAGING, "ec2:Instance", 1),)))
    assert first.state_digest == same.state_digest != newer.state_digest


def test_which_images_need_reports_and_which_accounts_a_plan_asks_about() -> None:
    """What gathering reads (before any report is read) and what the request command asks
    for (from a plan's consulted state)."""
    from reconciler.core.desired import select
    from reconciler.core.planning import compute_plan, settle

    m = manifest(RULE, settings=ON)
    st = state({(US, ami(1)): {P_PROD, P_STAGING}, (US, ami(2)): {P_PROD}})
    sel = select(m, listing(image(1), image(2)), None, NOW)
    settled = settle(m, builders.IDENTITY, sel, st, OPTIONS)
    assert wanted(settled, st, m) == {(US, ami(1)): frozenset({STAGING})}
    planned = compute_plan(m, builders.IDENTITY, sel, st, OPTIONS)
    assert requested(planned.apply.consulted) == {(US, ami(1)): (STAGING,)}


def test_the_setting_is_a_boolean_and_a_bad_value_is_a_located_error() -> None:
    import pytest

    from reconciler.core.errors import InputError
    from reconciler.core.manifest import parse_manifest

    assert manifest(RULE, settings=ON).settings.usage_reports is True
    assert manifest(RULE).settings.usage_reports is False, "off unless asked for"
    with pytest.raises(InputError) as info:
        parse_manifest(b'version: 1\nsettings:\n  name: m\n  usage_reports: "yes"\nimages: []\n',
                       "m.yaml")
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == ("m.yaml", 4)
    assert "usage_reports" in str(problem) and "boolean" in str(problem)


TAG = {"reconciler:manifest": "m"}


def _released(found: ImageUsage | None, *, encrypted: bool = False, now: str = NOW) -> Any:
    """ami-9 carries this manifest's tag and no rule matches it: the plan releases it."""
    snaps = ("snap-9",) if encrypted else ()
    released = image(9, name="retired-9", tags=TAG, snapshots=snaps, encrypted=encrypted)
    managed = image(1, snapshots=("snap-1",) if encrypted else (), encrypted=encrypted)
    extra: dict[str, Any] = {}
    if encrypted:
        extra = dict(snapshots={(US, s): builders.snapshot(s, key=builders.KEY)
                                for s in ("snap-1", "snap-9")},
                     keys={(US, builders.KEY): builders.key_info(P_PROD, P_STAGING)})
    st = state({(US, ami(9)): {P_STAGING}, (US, ami(1)): {P_PROD}}, released=(released,),
               usage={} if found is None else {(US, ami(9)): found}, **extra)
    return plan_for(manifest(RULE, settings=ON), listing(released, managed), st,
                    PlanOptions(now=now))


def _image9(found: ImageUsage) -> ImageUsage:
    return ImageUsage(tuple(replace(r, image_id=ami(9)) for r in found.reports), found.entries)


def test_a_release_waits_tag_and_all_while_an_account_it_revokes_uses_the_image() -> None:
    plan = _released(_image9(usage(report(), staging={"ec2:Instance": 2})), encrypted=True)
    assert plan.operations == (), "staging keeps ami-9 and its key access"
    assert plan.ownership is not None and plan.ownership.untag == (), "the tag stays"
    f = _codes(plan)["in-use-by-account"]
    assert f.resource == ami(9) and "2 instances" in f.message and "release" in f.message


def test_a_release_goes_ahead_when_its_report_lists_no_use() -> None:
    plan = _released(_image9(usage(report(), prod={"ec2:Instance": 2})))
    assert _ops(plan) == [("remove", ami(9), STAGING)]
    assert plan.ownership is not None and plan.ownership.untag == ((US, ami(9)),)
    assert _usage_codes(plan) == []
    unread = _released(ImageUsage())
    assert _ops(unread) == [("remove", ami(9), STAGING)]
    assert _usage_codes(unread) == [("info", "usage-report-missing", ami(9))]


def test_gathering_reads_the_reports_of_the_images_a_plan_releases() -> None:
    from reconciler.core.desired import select
    from reconciler.core.planning import settle

    released = image(9, name="retired-9", tags=TAG)
    m = manifest(RULE, settings=ON)
    st = state({(US, ami(9)): {P_STAGING}, (US, ami(1)): {P_PROD}}, released=(released,))
    settled = settle(m, builders.IDENTITY, select(m, listing(released, image(1)), None, NOW),
                     st, OPTIONS)
    assert wanted(settled, st, m) == {(US, ami(9)): frozenset({STAGING})}
