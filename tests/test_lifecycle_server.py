"""Lifecycle selection (README, "Rotating golden images") end to end on the moto server, through the CLI as a CI job
runs it: rotation as builds arrive, age-out, exclude, deprecation, ties, and an export that
writes ``latest`` and plans no change. moto sets CreationDate from its clock and never sets
DeprecationTime; :func:`reconciler.shell.sandbox.set_image_dates` sets both as AWS reports them
(``2026-11-17T06:00:00.000Z``)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from helpers import ACCOUNT, HAND, PROD, STAGING, US, Images, MotoServer, Runner, manifest_yaml

from reconciler.shell.sandbox import set_image_dates


def days_ago(n: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(images: Images, name: str, age_days: float, *, launch: tuple[str, ...] = (),
          deprecated: str | None = None, image_id: str | None = None) -> str:
    iid = images.create(name, image_id=image_id,
                        launch=[{"UserId": a} for a in launch] or None)
    set_image_dates(ACCOUNT, US, iid, days_ago(age_days), deprecated)
    return iid


def write(tmp_path: Path, select: str) -> str:
    m = tmp_path / "amis.yaml"
    m.write_text(manifest_yaml(f"- name: golden\n  select: {select}\n  launch: [prod, staging]",
                               principals={"prod": PROD, "staging": STAGING}))
    return str(m)


def sharing(images: Images, *ids: str) -> dict[str, list[str]]:
    return {i: sorted(p["UserId"] for p in images.launch(i)) for i in ids}


def ops(run_cli: Runner, m: str) -> set[tuple[str, str, str]]:
    r = run_cli("plan", m, "--format", "json")
    assert r.code == 0, r.err
    return {(o["action"], o["resource"], o["principal"]["UserId"])
            for o in json.loads(r.out)["operations"]}


def converge(run_cli: Runner, m: str) -> None:
    r = run_cli("apply", m, "--auto-approve")
    assert r.code == 0, r.out + r.err
    r = run_cli("plan", m, "--detailed-exitcode")
    assert r.code == 0, r.out + r.err


def test_rotation_as_builds_arrive(server: tuple[MotoServer, Images], run_cli: Runner,
                                   tmp_path: Path) -> None:
    _, images = server
    w1 = build(images, "golden-al2023-2026.11.03", 28, launch=(PROD, STAGING))
    w2 = build(images, "golden-al2023-2026.11.10", 21, launch=(PROD,))
    w3 = build(images, "golden-al2023-2026.11.17", 14)
    other = images.create("base-minimal-1", launch=[{"UserId": HAND}])
    m = write(tmp_path, '{name: "golden-al2023-*", latest: 2}')

    r = run_cli("plan", m, "--no-color")
    assert r.code == 0, r.err
    assert f"- launch {PROD} (prod)     rule golden: it is not among the newest 2 " \
           f"golden-al2023-* in {US}" in r.out
    assert f"info[lifecycle-unshared] {US} {w1}" in r.out
    converge(run_cli, m)
    assert sharing(images, w1, w2, w3) == {w1: [], w2: [PROD, STAGING], w3: [PROD, STAGING]}

    w4 = build(images, "golden-al2023-2026.11.24", 7)  # next week's build
    assert ops(run_cli, m) == {("add", w4, PROD), ("add", w4, STAGING),
                               ("remove", w2, PROD), ("remove", w2, STAGING)}
    converge(run_cli, m)
    assert sharing(images, w1, w2, w3, w4) == {w1: [], w2: [], w3: [PROD, STAGING],
                                               w4: [PROD, STAGING]}
    assert sharing(images, other) == {other: [HAND]}, "an unmanaged image was touched"


def test_age_out_exclude_and_deprecation(server: tuple[MotoServer, Images], run_cli: Runner,
                                         tmp_path: Path) -> None:
    _, images = server
    aged = build(images, "golden-al2023-2026.05.01", 200, launch=(PROD,))
    fresh = build(images, "golden-al2023-2026.11.17", 14, launch=(PROD,))
    rc = build(images, "golden-al2023-2026.11.20-rc1", 11, launch=(STAGING,))
    pulled = build(images, "golden-al2023-2026.11.10", 21, launch=(PROD,),
                   deprecated=days_ago(1))
    later = build(images, "golden-al2023-2026.11.24", 7, deprecated=days_ago(-30))
    m = write(tmp_path, '{name: "golden-al2023-*", max_age_days: 180, deprecated: false, '
                        'exclude: {name: "*-rc*"}}')
    converge(run_cli, m)
    assert sharing(images, aged, fresh, rc, pulled, later) == {
        aged: [], fresh: [PROD, STAGING], rc: [], pulled: [], later: [PROD, STAGING]}


def test_ties_are_broken_by_the_lowest_image_id(server: tuple[MotoServer, Images],
                                                run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    same = "2026-11-17T06:00:00Z"  # one CreationDate for both builds
    high = images.create("golden-al2023-a", image_id="ami-00000000000000002")
    low = images.create("golden-al2023-b", image_id="ami-00000000000000001")
    for iid in (high, low):
        set_image_dates(ACCOUNT, US, iid, same, None)
    m = write(tmp_path, '{name: "golden-al2023-*", latest: 1}')
    assert ops(run_cli, m) == {("add", low, PROD), ("add", low, STAGING)}


def test_export_writes_latest_and_plans_no_change(server: tuple[MotoServer, Images],
                                                  run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    old = build(images, "golden-eks-node-2026.11.03", 28)
    new = build(images, "golden-eks-node-2026.11.10", 21, launch=(PROD,))
    newer = build(images, "golden-eks-node-2026.11.17", 14, launch=(PROD,))
    out = tmp_path / "amis.yaml"
    r = run_cli("export", "--region", US, "--out", str(out))
    assert r.code == 0, r.err
    text = out.read_text()
    assert '      name: "golden-eks-node-20*"\n      latest: 2  # ' in text, text
    r = run_cli("plan", str(out), "--detailed-exitcode")
    assert r.code == 0, r.out + r.err
    assert "as declared on 3 managed images" in r.out
    assert sharing(images, old, new, newer) == {old: [], new: [PROD], newer: [PROD]}


def share_copy(images: Images, image_id: str, *accounts: str) -> str:
    """Share the image's snapshot for copy (createVolumePermission); its snapshot ID."""
    ec2 = images.client(US)
    (mapping,) = ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"]
    snap = str(mapping["Ebs"]["SnapshotId"])
    if accounts:
        ec2.modify_snapshot_attribute(SnapshotId=snap, Attribute="createVolumePermission",
                                      OperationType="add", UserIds=list(accounts))
    return snap


def test_export_keeps_a_family_shared_for_copy_rotating(server: tuple[MotoServer, Images],
                                                        run_cli: Runner, tmp_path: Path) -> None:
    """Issue 24: a family rotated with latest that also has copy rights is exported as
    `latest: 2` with `copy:` (it used to be an ids rule, so next week's build was not
    shared); its plan changes nothing, and the next build is shared for both."""
    _, images = server
    old = build(images, "golden-eks-node-2026.11.03", 28)
    old_snap = share_copy(images, old)
    new = build(images, "golden-eks-node-2026.11.10", 21, launch=(PROD,))
    newer = build(images, "golden-eks-node-2026.11.17", 14, launch=(PROD,))
    new_snap = share_copy(images, new, PROD)
    share_copy(images, newer, PROD)
    out = tmp_path / "amis.yaml"
    r = run_cli("export", "--region", US, "--out", str(out))
    assert r.code == 0, r.err
    text = out.read_text()
    assert '      name: "golden-eks-node-20*"\n      latest: 2  # ' in text, text
    assert "    copy: [account-111122223333]" in text and "ids:" not in text, text
    r = run_cli("plan", str(out), "--detailed-exitcode")
    assert r.code == 0, r.out + r.err
    assert "as declared on 3 managed images" in r.out
    # next week's build arrives: shared for launch and copy; the build that fell out is not
    arrived = build(images, "golden-eks-node-2026.11.24", 7)
    arrived_snap = share_copy(images, arrived)
    r = run_cli("plan", str(out), "--format", "json")
    assert r.code == 0, r.err
    assert {(o["action"], o["kind"], o["resource"]) for o in json.loads(r.out)["operations"]} \
        == {("add", "launch_permission", arrived),
            ("add", "create_volume_permission", arrived_snap),
            ("remove", "launch_permission", new),
            ("remove", "create_volume_permission", new_snap)}  # none on old_snap
    assert old_snap in json.loads(r.out)["ownership"]["tag_snapshots"]  # managed, unshared
