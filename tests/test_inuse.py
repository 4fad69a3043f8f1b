"""Removals that never strand a consumer (SPEC §7b): a lifecycle fall-out or release waits
while the build was launched within settings.keep_launched_within_days.

EC2 User Guide, "Deprecate an AMI" (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/
ami-deprecate.html): launch templates and Auto Scaling groups can continue to reference a
deprecated AMI; LastLaunchedTime in DescribeImages says when an image was last used to
launch an instance, and it is updated within 24 hours ("Check when an Amazon EC2 AMI was
last used", ami-last-launched-time.html).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from builders import (
    KEY,
    P_PROD,
    P_STAGING,
    US,
    ami,
    image,
    key_info,
    listing,
    manifest,
    plan_for,
    snapshot,
    state,
)
from helpers import PROD, STAGING, Images, MotoServer, Runner

from reconciler.core.planning import PlanOptions

NOW = "2026-12-04T12:00:00+00:00"
YESTERDAY = "2026-12-03T10:00:00.000Z"
MONTH_AGO = "2026-11-01T10:00:00.000Z"
ROTATION = """\
  - name: golden
    select: {name: "golden-*", latest: 1}
    launch: [prod, staging]
"""


def _rotation(last_launched: str, settings: str = "") -> Any:
    old = image(1, creation_date="2026-11-01T00:00:00.000Z", last_launched=last_launched)
    new = image(2, creation_date="2026-11-08T00:00:00.000Z")
    st = state({(US, ami(1)): {P_PROD, P_STAGING}, (US, ami(2)): {P_PROD, P_STAGING}})
    return plan_for(manifest(ROTATION, settings=settings), listing(old, new), st,
                    PlanOptions(now=NOW))


def _ops(plan: Any) -> list[tuple[str, str, str]]:
    return [(o.action.value, o.resource, o.principal.label) for o in plan.operations]


def test_a_build_launched_yesterday_keeps_the_shares_its_rotation_would_remove() -> None:
    plan = _rotation(YESTERDAY)
    assert _ops(plan) == [], "the removal waits"
    [f] = [f for f in plan.findings if f.code == "in-use"]
    assert (f.severity.value, f.resource) == ("warning", ami(1))
    assert f"was last launched {YESTERDAY}" in f.message
    assert "waits until 2026-12-17" in f.message, "the day the removal goes ahead"
    assert f"{PROD}, {STAGING}" in f.message and "not among the newest 1" in f.message


def test_a_build_last_launched_a_month_ago_is_unshared() -> None:
    plan = _rotation(MONTH_AGO)
    assert _ops(plan) == [("remove", ami(1), PROD), ("remove", ami(1), STAGING)]
    assert "in-use" not in {f.code for f in plan.findings}


@pytest.mark.parametrize("last", ["", YESTERDAY], ids=["never-launched", "protection-off"])
def test_never_launched_or_protection_off(last: str) -> None:
    plan = _rotation(last, settings="keep_launched_within_days: 0" if last else "")
    assert _ops(plan) == [("remove", ami(1), PROD), ("remove", ami(1), STAGING)]


def test_a_pure_caller_without_a_time_plans_no_protection() -> None:
    old = image(1, creation_date="2026-11-01T00:00:00.000Z", last_launched=YESTERDAY)
    new = image(2, creation_date="2026-11-08T00:00:00.000Z")
    st = state({(US, ami(1)): {P_PROD}, (US, ami(2)): {P_PROD}})
    plan = plan_for(manifest(ROTATION), listing(old, new), st)
    assert ("remove", ami(1), PROD) in _ops(plan)


def test_a_dropped_account_is_removed_however_recently_the_build_was_launched() -> None:
    """LastLaunchedTime does not say who launched: removals of one account go ahead."""
    img = image(1, last_launched=YESTERDAY)
    st = state({(US, ami(1)): {P_PROD, P_STAGING}})
    plan = plan_for(manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                    listing(img), st, PlanOptions(now=NOW))
    assert _ops(plan) == [("remove", ami(1), STAGING)]
    assert "in-use" not in {f.code for f in plan.findings}


def test_the_key_access_of_a_kept_share_stays() -> None:
    """The consumer still launches the build: its key access is kept with the share."""
    old = image(1, creation_date="2026-11-01T00:00:00.000Z", last_launched=YESTERDAY,
                snapshots=("snap-1",), encrypted=True)
    new = image(2, creation_date="2026-11-08T00:00:00.000Z", snapshots=("snap-2",),
                encrypted=True)
    st = state({(US, ami(1)): {P_PROD, P_STAGING}, (US, ami(2)): {P_PROD}},
               snapshots={(US, s): snapshot(s, key=KEY) for s in ("snap-1", "snap-2")},
               keys={(US, KEY): key_info(P_PROD, P_STAGING)})
    plan = plan_for(manifest(ROTATION), listing(old, new), st, PlanOptions(now=NOW))
    assert _ops(plan) == [("add", ami(2), STAGING)], "ami-1 keeps staging while launched"
    assert "in-use" in {f.code for f in plan.findings}
    later = plan_for(manifest(ROTATION.replace("[prod, staging]", "[prod]")),
                     listing(old, new), st, PlanOptions(now=NOW))
    assert ("remove", ami(1), STAGING) in _ops(later), "a dropped account goes at once"
    assert ("remove", KEY, STAGING) in _ops(later), "and its key access with it"


def test_a_released_build_launched_recently_keeps_its_shares_and_its_tag() -> None:
    tag = {"reconciler:manifest": "m"}
    released = image(9, name="retired-1", tags=tag, last_launched=YESTERDAY)
    st = state({(US, ami(9)): {P_PROD}}, released=(released,))
    plan = plan_for(manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                    listing(released), st, PlanOptions(now=NOW))
    assert _ops(plan) == []
    assert plan.ownership is not None and plan.ownership.untag == (), "the release waits"
    [f] = [f for f in plan.findings if f.code == "in-use"]
    assert f.resource == ami(9) and "its release" in f.message
    later = plan_for(manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n'),
                     listing(released), st, PlanOptions(now="2026-12-20T12:00:00+00:00"))
    assert _ops(later) == [("remove", ami(9), PROD)]
    assert later.ownership is not None and later.ownership.untag == ((US, ami(9)),)


def test_the_wait_is_part_of_the_state_a_saved_plan_is_checked_against() -> None:
    """Once the window closes, a saved plan that kept the share is stale, not 'edited'."""
    kept = _rotation(YESTERDAY)
    old = image(1, creation_date="2026-11-01T00:00:00.000Z", last_launched=YESTERDAY)
    new = image(2, creation_date="2026-11-08T00:00:00.000Z")
    st = state({(US, ami(1)): {P_PROD, P_STAGING}, (US, ami(2)): {P_PROD, P_STAGING}})
    later = plan_for(manifest(ROTATION), listing(old, new), st,
                     PlanOptions(now="2026-12-20T12:00:00+00:00"))
    assert _ops(later) and kept.state_digest != later.state_digest


# --------------------------------------------------------------------------- CLI, moto server


def _set_last_launched(image_id: str, when: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends["123456789012"][US].amis[image_id].last_launched_time = when


def _rotation_manifest(tmp_path: Path) -> str:
    path = tmp_path / "amis.yaml"
    path.write_text("version: 1\nsettings: {name: amis, regions: [us-east-1]}\n"
                    f'principals: {{prod: "{PROD}"}}\nimages:\n'
                    '  - {name: golden, select: {name: "golden-*", latest: 1}, launch: [prod]}\n')
    return str(path)


def test_rotation_waits_for_a_launched_build_against_the_moto_server(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    import datetime as dt

    srv, images = server
    old = images.create("golden-1", launch=[{"UserId": PROD}])
    m = _rotation_manifest(tmp_path)
    assert run_cli("apply", m, "--auto-approve").code == 0
    new = images.create("golden-2")  # the next build arrives; golden-1 falls out
    from reconciler.shell.sandbox.moto_extensions import set_image_dates

    set_image_dates("123456789012", US, old, "2026-11-01", None)
    set_image_dates("123456789012", US, new, "2026-11-08", None)
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _set_last_launched(old, recent)
    r = run_cli("plan", m, "--format", "json")
    doc = json.loads(r.out)
    assert [(o["action"], o["resource"]) for o in doc["operations"]] == [("add", new)]
    [f] = [f for f in doc["findings"] if f["code"] == "in-use"]
    assert f["resource"] == old and recent in f["message"]
    r = run_cli("apply", m, "--auto-approve", "--no-color")
    assert r.code == 0, r.err
    assert "warning[in-use]" in r.out
    assert images.launch(old) == [{"UserId": PROD}], "the launched build keeps its share"
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, "converged: the kept share is no change"
    _set_last_launched(old, "2026-01-01T00:00:00.000Z")  # use has drained
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0 and images.launch(old) == []
    r = run_cli("explain", PROD, "--image", old)
    assert "last launched: 2026-01-01T00:00:00.000Z" in r.out


def test_the_sandbox_takes_last_launched(tmp_path: Path) -> None:
    import datetime as dt

    from helpers import run_main

    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state_file = tmp_path / "state.yaml"
    state_file.write_text(
        'version: 1\naccount: "123456789012"\nimages:\n'
        '  - {id: ami-0a11c0de000000001, region: us-east-1, name: golden-1, created: "2026-11-01",'
        f' last_launched: "{recent}", launch: ["{PROD}"]}}\n'
        '  - {id: ami-0a11c0de000000002, region: us-east-1, name: golden-2, created: "2026-11-08",'
        f' launch: ["{PROD}"]}}\n')
    m = _rotation_manifest(tmp_path)
    r = run_main("plan", m, "--sandbox", str(state_file), "--format", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["operations"] == []
    assert [f["resource"] for f in doc["findings"] if f["code"] == "in-use"] == [
        "ami-0a11c0de000000001"]
    saved = tmp_path / "saved.yaml"
    r = run_main("apply", m, "--sandbox", str(state_file), "--auto-approve", "--sandbox-save",
                 str(saved))
    assert r.code == 0, r.err
    assert f"last_launched: '{recent}'" in saved.read_text(), "--sandbox-save keeps it"


def test_a_waiting_release_keeps_the_key_access_its_consumers_launch_with() -> None:
    """The consumer still launches the released build: its key access stays with the share
    (SPEC §7b, and §7: a removal never strands one)."""
    tag = {"reconciler:manifest": "m"}
    released = image(9, name="retired-1", tags=tag, last_launched=YESTERDAY,
                     snapshots=("snap-9",), encrypted=True)
    managed = image(1, snapshots=("snap-1",), encrypted=True)
    st = state({(US, ami(9)): {P_PROD}, (US, ami(1)): {P_STAGING}}, released=(released,),
               snapshots={(US, s): snapshot(s, key=KEY) for s in ("snap-1", "snap-9")},
               keys={(US, KEY): key_info(P_PROD, P_STAGING)})
    m = manifest('  - {name: g, select: {name: "golden-*"}, launch: [staging]}\n')
    plan = plan_for(m, listing(released, managed), st, PlanOptions(now=NOW))
    assert _ops(plan) == [], "prod keeps ami-9 and its key access while ami-9 is launched"
    later = plan_for(m, listing(released, managed), st,
                     PlanOptions(now="2026-12-20T12:00:00+00:00"))
    assert ("remove", KEY, PROD) in _ops(later) and ("remove", ami(9), PROD) in _ops(later)


def test_a_waiting_release_in_a_dropped_region_is_not_called_a_region_the_manifest_lacks(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """A job sharded by Region still finds its released images there, waiting or not."""
    import datetime as dt

    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": PROD}])
    path = tmp_path / "amis.yaml"
    path.write_text("version: 1\nsettings: {name: amis, regions: [us-east-1]}\n"
                    f'principals: {{prod: "{PROD}"}}\nimages:\n'
                    '  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n')
    assert run_cli("apply", str(path), "--auto-approve").code == 0
    path.write_text(path.read_text().replace("regions: [us-east-1]", "regions: [eu-west-1]"))
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _set_last_launched(golden, recent)
    r = run_cli("plan", str(path), "--region", "us-east-1", "--no-color")
    assert r.code == 0, r.err
    assert "warning[in-use]" in r.out and "its release" in r.out
    assert images.launch(golden) == [{"UserId": PROD}]
