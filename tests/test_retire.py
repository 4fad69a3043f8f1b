"""Retiring a build the documented way (settings.deprecate_retired): deprecate, let use
drain, unshare.

EC2 User Guide, "Deprecate an AMI" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/
ami-deprecate.html): a deprecated AMI no longer shows in other accounts' DescribeImages
unless they ask for deprecated images or name its ID, and launch templates and Auto Scaling
groups that reference it keep launching it. EC2 API reference, EnableImageDeprecation
(API_EnableImageDeprecation.html): DeprecateAt is rounded to the minute and cannot be in
the past; moto has no such action, the emulation (sandbox/moto_extensions) follows that page.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from builders import P_PROD, P_STAGING, US, ami, image, listing, manifest, plan_for, state
from helpers import PROD, Images, MotoServer, Runner
from test_inuse import MONTH_AGO, NOW, ROTATION, YESTERDAY

from reconciler.core.planfile import to_dict
from reconciler.core.planning import PlanOptions
from reconciler.shell.applier.deprecation import deprecate_at

RETIRE = "deprecate_retired: true"


def _rotation(*, settings: str = RETIRE, last_launched: str = YESTERDAY, deprecated: str = "",
              rules: str = ROTATION, shared: bool = True, new_tags: dict[str, str] | None = None,
              new_deprecated: str = "") -> Any:
    old = image(1, creation_date="2026-11-01T00:00:00.000Z", last_launched=last_launched,
                deprecation_time=deprecated)
    new = image(2, creation_date="2026-11-08T00:00:00.000Z", tags=new_tags,
                deprecation_time=new_deprecated)
    st = state({(US, ami(1)): {P_PROD, P_STAGING} if shared else set(),
                (US, ami(2)): {P_PROD, P_STAGING}})
    return plan_for(manifest(rules, settings=settings), listing(old, new), st,
                    PlanOptions(now=NOW))


def test_a_retired_build_still_launched_is_deprecated_and_keeps_its_shares() -> None:
    plan = _rotation()
    assert plan.plan.deprecate == ((US, ami(1)),)
    assert plan.operations == (), "the shares wait while it is launched"
    assert "in-use" in {f.code for f in plan.findings}
    assert plan.has_changes, "a deprecation is a change (plan --detailed-exitcode exits 2)"
    assert to_dict(plan.plan)["deprecate"] == [ami(1)]


@pytest.mark.parametrize("last, settings", [(MONTH_AGO, RETIRE), ("", RETIRE),
                                            (YESTERDAY, RETIRE + "\nkeep_launched_within_days: 0")],
                         ids=["drained", "never-launched", "no-drain-window"])
def test_a_retired_build_whose_shares_go_at_once_is_not_deprecated(last: str,
                                                                    settings: str) -> None:
    """Nothing to drain: the share goes in this apply, a deprecation would only linger."""
    plan = _rotation(last_launched=last, settings=settings)
    assert plan.plan.deprecate == ()
    assert sorted((o.action.value, o.principal.label) for o in plan.operations) == [
        ("remove", PROD), ("remove", "444455556666")]


@pytest.mark.parametrize("case", ["setting-off", "already-deprecated", "deprecated-next-minute",
                                  "not-shared", "another-rule-shares-it", "no-successor"])
def test_no_deprecation(case: str) -> None:
    kwargs: dict[str, Any] = {
        "setting-off": {"settings": ""},
        "already-deprecated": {"deprecated": "2026-11-20T00:00:00.000Z"},
        # what the last apply did: DeprecateAt is the next whole minute
        "deprecated-next-minute": {"deprecated": "2026-12-04T12:01:00.000Z"},
        "not-shared": {"shared": False},
        # deprecation hides a build from every consumer: not while a rule still shares it
        "another-rule-shares-it": {"rules": ROTATION + "  - name: everything\n"
                                                       '    select: {name: "golden-*"}\n'
                                                       "    launch: [dev]\n"},
        # a selector that keeps every build out is a mistake: consumers would find none
        "no-successor": {"rules": ROTATION.replace("latest: 1", 'created_after: "2027-11-01"')},
    }[case]
    plan = _rotation(**kwargs)
    assert plan.plan.deprecate == ()
    assert "deprecate" not in to_dict(plan.plan)


def test_deprecations_count_towards_max_removals() -> None:
    plan = _rotation(settings=RETIRE + "\nmax_removals: 0")
    [guard] = [f for f in plan.findings if f.code == "max-removals"]
    assert "removes 0 permissions and deprecates 1 build" in guard.message


def test_a_build_the_manifest_deprecated_and_a_rule_shares_again_is_undeprecated() -> None:
    """An exclude added for an incident, then reverted: the build it retired comes back,
    deprecated: false does not count the manifest's own deprecation against it, and the
    deprecation is taken back."""
    rules = ROTATION.replace("latest: 1", "latest: 1, deprecated: false")
    ours = {"reconciler:deprecated-by": "m"}
    plan = _rotation(rules=rules, new_tags=ours, new_deprecated="2026-12-01T00:00:00.000Z")
    assert plan.plan.undeprecate == ((US, ami(2)),)
    assert plan.plan.deprecate == ((US, ami(1)),), "the older one retires in its place"
    assert to_dict(plan.plan)["undeprecate"] == [ami(2)]
    # with the setting turned off since, the manifest's own deprecation is still taken back
    off = _rotation(settings="", rules=rules, new_tags=ours,
                    new_deprecated="2026-12-01T00:00:00.000Z")
    assert off.plan.undeprecate == ((US, ami(2)),) and off.plan.deprecate == ()
    # someone else's deprecation (no tag) still keeps a build out under deprecated: false
    other = _rotation(rules=rules, new_deprecated="2026-12-01T00:00:00.000Z")
    assert other.plan.undeprecate == ()
    assert (US, ami(2)) not in {(o.region, o.resource) for o in other.operations
                                if o.action.value == "add"}


def test_a_deprecation_time_still_to_come_is_brought_forward() -> None:
    """Public AMIs get a DeprecationTime two years after creation: not deprecated yet."""
    plan = _rotation(deprecated="2028-11-01T00:00:00.000Z")
    assert plan.plan.deprecate == ((US, ami(1)),)


def test_the_deprecation_time_is_part_of_the_state_a_saved_plan_is_checked_against() -> None:
    before = _rotation()
    after = _rotation(deprecated="2026-12-04T12:30:00.000Z")  # deprecated by hand meanwhile
    assert before.plan.state_digest != after.plan.state_digest


@pytest.mark.parametrize("now, at", [
    ("2026-12-04T12:00:00+00:00", "2026-12-04T12:01:00+00:00"),
    ("2026-12-04T12:00:59.999+00:00", "2026-12-04T12:01:00+00:00"),
    ("2026-12-31T23:59:30+00:00", "2027-01-01T00:00:00+00:00"),
])
def test_deprecate_at_is_the_next_whole_minute(now: str, at: str) -> None:
    assert deprecate_at(dt.datetime.fromisoformat(now)) == dt.datetime.fromisoformat(at)


# --------------------------------------------------------------------------- CLI, moto server


def _set_last_launched(image_id: str, when: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends["123456789012"][US].amis[image_id].last_launched_time = when


def _deprecation(srv: MotoServer, image_id: str) -> str:
    return str(srv.client("ec2").describe_images(ImageIds=[image_id])["Images"][0]
               .get("DeprecationTime", ""))


def test_deprecate_drain_unshare_against_the_moto_server(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from reconciler.shell.sandbox.moto_extensions import set_image_dates

    srv, images = server
    old = images.create("golden-1", launch=[{"UserId": PROD}])
    other = images.create("scratch-1", launch=[{"UserId": PROD}])
    new = images.create("golden-2")
    set_image_dates("123456789012", US, old, "2026-11-01", None)
    set_image_dates("123456789012", US, new, "2026-11-08", None)
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _set_last_launched(old, recent)
    path = tmp_path / "amis.yaml"
    path.write_text("version: 1\nsettings: {name: amis, regions: [us-east-1], "
                    "deprecate_retired: true}\n"
                    f'principals: {{prod: "{PROD}"}}\nimages:\n'
                    '  - {name: golden, select: {name: "golden-*", latest: 1}, launch: [prod]}\n')
    m = str(path)

    # 1. the build falls out while still launched: deprecated now, its share waits
    r = run_cli("plan", m, "--out", str(tmp_path / "plan.json"), "--detailed-exitcode",
                "--no-color")
    assert r.code == 2, r.out + r.err
    assert f"deprecate {old} (golden-1)" in r.out, r.out
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["deprecate"] == [old]
    log = tmp_path / "apply.jsonl"
    r = run_cli("apply", m, "--plan", str(tmp_path / "plan.json"), "--log-file", str(log))
    assert r.code == 0, r.out + r.err
    assert "Deprecation: 1 retired build deprecated." in r.out
    when = _deprecation(srv, old)
    assert when, "EnableImageDeprecation was called"
    applied_at = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    assert dt.timedelta(0) < applied_at - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=1)
    assert images.launch(old) == [{"UserId": PROD}], "use drains first: the share stays"
    assert images.launch(new) == [{"UserId": PROD}]
    assert images.launch(other) == [{"UserId": PROD}] and _deprecation(srv, other) == "", \
        "nothing undeclared touched"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    [record] = [x for x in records if x["kind"] == "deprecation"]
    assert (record["api"], record["resource"], record["result"], record["owner"]) == (
        "EnableImageDeprecation", old, "applied", "123456789012")
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, "converged: deprecated once, the share waits" + r.out

    # 2. use has drained: the share goes, nothing is deprecated again
    _set_last_launched(old, "2026-01-01T00:00:00.000Z")
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert "Deprecation" not in r.out
    assert images.launch(old) == []
    assert _deprecation(srv, old) == when
    assert run_cli("plan", m, "--detailed-exitcode").code == 0


def test_a_saved_plan_whose_build_was_deprecated_by_hand_is_stale(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    from reconciler.shell.sandbox.moto_extensions import set_image_dates

    srv, images = server
    old = images.create("golden-1", launch=[{"UserId": PROD}])
    new = images.create("golden-2", launch=[{"UserId": PROD}])
    set_image_dates("123456789012", US, old, "2026-11-01", None)
    set_image_dates("123456789012", US, new, "2026-11-08", None)
    path = tmp_path / "amis.yaml"
    _set_last_launched(old, (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
                       .strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    path.write_text("version: 1\nsettings: {name: amis, regions: [us-east-1], "
                    "deprecate_retired: true}\n"
                    f'principals: {{prod: "{PROD}"}}\nimages:\n'
                    '  - {name: golden, select: {name: "golden-*", latest: 1}, launch: [prod]}\n')
    assert run_cli("plan", str(path), "--out", str(tmp_path / "p.json")).code == 0
    set_image_dates("123456789012", US, old, None, "2026-12-01T00:00:00Z")
    r = run_cli("apply", str(path), "--plan", str(tmp_path / "p.json"))
    assert r.code == 1 and "stale" in r.err, r.out + r.err
    assert images.launch(old) == [{"UserId": PROD}], "nothing written"


def test_the_emulation_refuses_a_time_in_the_past_and_another_accounts_image(
        server: tuple[MotoServer, Images]) -> None:
    import botocore.exceptions

    srv, images = server
    image_id = images.create("golden-1")
    ec2 = srv.client("ec2")
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidParameterValue"):
        ec2.enable_image_deprecation(ImageId=image_id,
                                     DeprecateAt=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidAMIID"):
        ec2.enable_image_deprecation(ImageId="ami-0123456789abcdef0",
                                     DeprecateAt=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=1, seconds=40)
    assert ec2.enable_image_deprecation(ImageId=image_id, DeprecateAt=at)["Return"] is True
    rounded = (at + dt.timedelta(seconds=30)).replace(second=0)
    assert _deprecation(srv, image_id) == rounded.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_a_deprecation_to_come_is_not_drift_for_event_detect_only(tmp_path: Path) -> None:
    """``event --detect-only`` reports permissions that differ from the manifest; a build the
    next apply deprecates is the manifest's own doing, not someone's drift."""
    from helpers import EXAMPLES, run_main
    from sample_events import dump, tags

    event = tmp_path / "event.json"
    event.write_text(dump(tags("CreateTags", ["ami-0e45000000000d124"], {"team": "a"})))
    r = run_main("event", str(EXAMPLES / "retire.yaml"), str(event), "--detect-only",
                 "--sandbox", str(EXAMPLES / "retire-sandbox.yaml"), "--no-color")
    assert r.code == 0, r.out + r.err
    assert "drift:" not in r.out


def test_an_exclude_reverted_brings_the_build_back_undeprecated(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """The reviewer's sequence: an incident excludes the newest build, which retires (it is
    deprecated while still launched, the older one shared instead); the exclude is reverted:
    the build comes back under deprecated: false, its deprecation taken back."""
    from reconciler.shell.sandbox.moto_extensions import set_image_dates

    srv, images = server
    older = images.create("golden-1")
    newest = images.create("golden-2", launch=[{"UserId": PROD}])
    set_image_dates("123456789012", US, older, "2026-11-01", None)
    set_image_dates("123456789012", US, newest, "2026-11-08", None)
    _set_last_launched(newest, (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
                       .strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    path = tmp_path / "amis.yaml"

    def manifest(exclude: str) -> str:
        path.write_text("version: 1\nsettings: {name: amis, regions: [us-east-1], "
                        "deprecate_retired: true}\n"
                        f'principals: {{prod: "{PROD}"}}\nimages:\n'
                        '  - {name: golden, launch: [prod], select: {name: "golden-*", '
                        f"latest: 1, deprecated: false{exclude}}}}}\n")
        return str(path)

    r = run_cli("apply", manifest(f", exclude: {{ids: [{newest}]}}"), "--auto-approve")
    assert r.code == 0 and "Deprecation: 1 retired build deprecated." in r.out, r.out + r.err
    assert _deprecation(srv, newest) and images.launch(newest) == [{"UserId": PROD}]
    assert images.launch(older) == [{"UserId": PROD}]
    tags = srv.client("ec2").describe_images(ImageIds=[newest])["Images"][0]["Tags"]
    assert {"Key": "reconciler:deprecated-by", "Value": "amis"} in tags

    r = run_cli("plan", manifest(""), "--no-color")
    assert f"take back the deprecation of {newest} (golden-2) (shared again)" in r.out, r.out
    r = run_cli("apply", manifest(""), "--auto-approve")
    assert r.code == 0, r.out + r.err
    assert "Deprecation: the deprecation of 1 build shared again taken back." in r.out
    assert _deprecation(srv, newest) == ""
    tags = srv.client("ec2").describe_images(ImageIds=[newest])["Images"][0].get("Tags", [])
    assert {"Key": "reconciler:deprecated-by", "Value": "amis"} not in tags
    assert images.launch(newest) == [{"UserId": PROD}] and images.launch(older) == []
    assert run_cli("plan", manifest(""), "--detailed-exitcode").code == 0


def test_the_retire_example_chains_through_sandbox_save(tmp_path: Path) -> None:
    """apply --sandbox-save, then plan from the saved state: the pinned clock is kept (and
    written so that the loader reads it), the deprecation is made at that clock, so the next
    plan has nothing to do; a deprecation taken back is saved as taken back."""
    from helpers import EXAMPLES, run_main

    saved = tmp_path / "after.yaml"
    r = run_main("apply", str(EXAMPLES / "retire.yaml"), "--sandbox",
                 str(EXAMPLES / "retire-sandbox.yaml"), "--auto-approve",
                 "--sandbox-save", str(saved))
    assert r.code == 0, r.out + r.err
    text = saved.read_text()
    assert "now: '2026-12-04T12:00:00Z'" in text
    assert "deprecated: '2026-12-04T12:01:00.000Z'" in text, "DeprecateAt at the pinned clock"
    r = run_main("plan", str(EXAMPLES / "retire.yaml"), "--sandbox", str(saved),
                 "--detailed-exitcode")
    assert r.code == 0, r.out + r.err
    # the family grows to two shared builds: the retired one is shared again, undeprecated
    wider = tmp_path / "wider.yaml"
    wider.write_text((EXAMPLES / "retire.yaml").read_text().replace("latest: 1 ", "latest: 2 "))
    again = tmp_path / "again.yaml"
    r = run_main("apply", str(wider), "--sandbox", str(saved), "--auto-approve",
                 "--sandbox-save", str(again))
    assert r.code == 0 and "taken back" in r.out, r.out + r.err
    assert "2026-12-04T12:01:00" not in again.read_text()


def test_a_refused_deprecation_is_one_error_line_and_the_writes_go_ahead(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """EC2 API reference, Common client errors: UnauthorizedOperation (a role without
    ec2:EnableImageDeprecation). Without the setting the writes would run anyway."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses import EC2Response

    from reconciler.shell.sandbox.moto_extensions import set_image_dates

    def refuse(self: object) -> None:
        raise EC2ClientError("UnauthorizedOperation", "not authorized to perform: "
                             "ec2:EnableImageDeprecation\nforged line")

    monkeypatch.setattr(EC2Response, "enable_image_deprecation", refuse, raising=False)
    srv, images = server
    old = images.create("golden-1", launch=[{"UserId": PROD}])
    new = images.create("golden-2")
    set_image_dates("123456789012", US, old, "2026-11-01", None)
    set_image_dates("123456789012", US, new, "2026-11-08", None)
    _set_last_launched(old, (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
                       .strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    path = tmp_path / "amis.yaml"
    path.write_text("version: 1\nsettings: {name: amis, regions: [us-east-1], "
                    "deprecate_retired: true}\n"
                    f'principals: {{prod: "{PROD}"}}\nimages:\n'
                    '  - {name: golden, select: {name: "golden-*", latest: 1}, launch: [prod]}\n')
    r = run_cli("apply", str(path), "--auto-approve")
    assert r.code == 1, r.out + r.err
    [line] = [x for x in r.err.splitlines() if "EnableImageDeprecation" in x]
    assert line.startswith("error: ") and "UnauthorizedOperation" in line
    assert "forged line" in line, "the AWS message stays on its one line"
    assert "Deprecation: 0 retired builds deprecated, 1 failed." in r.out
    assert images.launch(new) == [{"UserId": PROD}], "the share of the successor went ahead"
    assert _deprecation(srv, old) == ""
