"""Lifecycle-aware selection (README, "Rotating golden images"): share the newest golden images only. A rule with
``latest``, ``exclude``, dates or ``deprecated: false`` manages every image its other
selectors match and shares only with those that pass. Pure (no AWS), plus one CLI run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from builders import image, listing, plan_for, state
from helpers import EU, PROD, US, manifest_yaml, run_main

from reconciler.core.desired import select
from reconciler.core.errors import InputError
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Image, Principal
from reconciler.core.planning import PlanOptions

NOW = "2026-12-01T12:00:00+00:00"


def build(n: int, day: str, region: str = US, name: str = "") -> Image:
    """A golden build of ``day``, named for it unless ``name`` says otherwise."""
    return image(n, region, name=name or f"golden-al2023-{day}",
                 creation_date=f"{day}T10:00:00.000Z")


def manifest(select: str) -> bytes:
    return manifest_yaml(f"- {{name: golden, select: {select}, launch: [prod]}}",
                         regions=(US, EU), principals={"prod": PROD}).encode()


def shared(text: bytes, images: list[Image], now: str = NOW,
           current: dict[tuple[str, str], set[Principal]] | None = None) -> list[str]:
    """The image IDs the plan leaves shared with prod after applying."""
    m = parse_manifest(text, "m.yaml")
    current = current or {}
    plan = plan_for(m, listing(*images), state(current), PlanOptions(now=now))
    after = {k: set(v) for k, v in current.items()}
    for op in plan.operations:
        target = after.setdefault((op.region, op.resource), set())
        (target.add if op.action.value == "add" else target.discard)(op.principal)
    return sorted(r for (_, r), ps in after.items() if Principal.account(PROD) in ps)


def test_latest_shares_the_newest_builds_per_region_and_unshares_the_one_that_falls_out() -> None:
    builds = [build(1, "2026-11-01"), build(2, "2026-11-08"), build(3, "2026-11-15"),
              build(4, "2026-11-22"), build(5, "2026-10-01", EU)]
    rule = manifest('{name: "golden-al2023-*", latest: 3}')
    assert shared(rule, builds) == [b.image_id for b in builds[1:]]  # EU's only one counts too
    # a new build arrives: the newest 3 move on, and the oldest of them is unshared
    current = {b.key: {Principal.account(PROD)} for b in builds[1:]}
    new = build(6, "2026-11-29")
    m = parse_manifest(rule, "m.yaml")
    sel = select(m, {US: [*builds[:4], new], EU: [builds[4]]}, None, NOW)
    unshared = [f for f in sel.findings if f.code == "lifecycle-unshared"]
    assert {f.resource for f in unshared} == {builds[0].image_id, builds[1].image_id}
    assert "not among the newest 3 golden-al2023-* in us-east-1" in unshared[0].message
    assert shared(rule, [*builds, new], current=current) == sorted(
        [builds[2].image_id, builds[3].image_id, builds[4].image_id, new.image_id])
    managed = {mi.image.image_id for mi in sel.managed}
    assert builds[0].image_id in managed, "an image that falls out stays managed"


def test_ties_are_broken_by_image_id() -> None:
    same_day = [build(7, "2026-11-01"), build(3, "2026-11-01"), build(9, "2026-11-01")]
    first = shared(manifest('{name: "golden-*", latest: 2}'), same_day)
    again = shared(manifest('{name: "golden-*", latest: 2}'), list(reversed(same_day)))
    # same CreationDate: the lowest image IDs win, whatever the listing order
    assert first == again == sorted([same_day[1].image_id, same_day[0].image_id])


def test_undated_images_rank_last() -> None:
    dated = build(2, "2026-11-01")
    odd = replace(build(1, "2026-11-02"), creation_date="not a date")
    assert shared(manifest('{name: "golden-*", latest: 1}'), [odd, dated]) == [dated.image_id]


def test_age_dates_exclude_and_deprecated() -> None:
    old, recent = build(1, "2026-06-01"), build(2, "2026-11-20")
    rc = build(3, "2026-11-25", name="golden-al2023-rc1")
    gone = replace(build(4, "2026-11-26"), deprecation_time="2026-11-30T00:00:00.000Z")
    later = replace(build(5, "2026-11-27"), deprecation_time="2027-06-01T00:00:00.000Z")
    images = [old, recent, rc, gone, later]
    ids = {i.name: i.image_id for i in images}
    assert old.image_id not in shared(manifest('{name: "golden-*", max_age_days: 90}'), images)
    assert shared(manifest('{name: "golden-*", created_after: "2026-11-21"}'), images) == sorted(
        [rc.image_id, gone.image_id, later.image_id])
    assert shared(manifest('{name: "golden-*", created_before: "2026-11-21"}'), images) == sorted(
        [old.image_id, recent.image_id])
    assert ids["golden-al2023-rc1"] not in shared(
        manifest('{name: "golden-*", exclude: {name: "*-rc*"}}'), images)
    not_deprecated = shared(manifest('{name: "golden-*", deprecated: false}'), images)
    assert gone.image_id not in not_deprecated and later.image_id in not_deprecated


def test_another_rule_keeps_what_it_gives() -> None:
    a, b = build(1, "2026-11-01"), build(2, "2026-11-08")
    text = (f'version: 1\nsettings: {{name: m, regions: [us-east-1]}}\nprincipals: {{prod: "{PROD}"}}\n'
            'images:\n'
            '  - {name: newest, select: {name: "golden-*", latest: 1}, launch: [prod]}\n'
            f'  - {{name: pinned, select: {{ids: [{a.image_id}]}}, launch: [prod]}}\n').encode()
    assert shared(text, [a, b]) == sorted([a.image_id, b.image_id])


@pytest.mark.parametrize("select, expected", [
    ('{name: "golden-*", latest: 0}', "images[0].select.latest"),
    ('{name: "golden-*", max_age_days: -1}', "images[0].select.max_age_days"),
    # a larger one overflowed Python's date arithmetic at plan time
    ('{name: "golden-*", max_age_days: 1000000000}', "is greater than the maximum of 36500"),
    ('{name: "golden-*", deprecated: true}', "true is not supported: only `false` is"),
    ('{name: "golden-*", created_after: "2026-13-01"}', "is not a calendar date"),
    ('{name: "golden-*", created_after: "1 Nov 2026"}', "images[0].select.created_after"),
    ('{latest: 3}', "needs at least one of ids, name, tags"),
])
def test_lifecycle_selectors_are_validated_with_located_errors(select: str, expected: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_manifest(manifest(select), "m.yaml")
    assert "m.yaml:8:" in str(exc.value) and expected in str(exc.value), str(exc.value)


def test_rotation_end_to_end_on_the_sandbox(tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text('version: 1\naccount: "123456789012"\nimages:\n'
                     '  - {region: us-east-1, name: golden-2026.11.01, launch: ["111122223333"]}\n'
                     '  - {region: us-east-1, name: golden-2026.11.08}\n')
    m = tmp_path / "amis.yaml"
    m.write_bytes(manifest('{name: "golden-*", latest: 1}'))
    r = run_main("plan", str(m), "--sandbox", str(state), "--format", "json")
    assert r.code == 0, r.err
    # the sandbox's images are created in order: the second one is the newest
    assert '"lifecycle-unshared"' in r.out and '"remove"' in r.out and '"add"' in r.out


def test_rotation_unshares_the_build_that_falls_out_with_prune_false_too(tmp_path: Path) -> None:
    """The build a lifecycle rule withholds loses that rule's shares whatever `prune` says
    (the rule manages it); what nobody declared stays, as prune: false promises."""
    state = tmp_path / "state.yaml"
    state.write_text('version: 1\naccount: "123456789012"\nimages:\n'
                     '  - {region: us-east-1, name: golden-2026.11.01, '
                     'launch: ["111122223333", "999999999999"]}\n'
                     '  - {region: us-east-1, name: golden-2026.11.08}\n')
    m = tmp_path / "amis.yaml"
    m.write_text(manifest_yaml('- {name: golden, select: {name: "golden-*", latest: 1}, '
                               'launch: [prod]}', settings="prune: false",
                               principals={"prod": PROD}))
    saved = str(tmp_path / "after.yaml")
    r = run_main("apply", str(m), "--sandbox", str(state), "--auto-approve",
                 "--sandbox-save", saved)
    assert r.code == 0, r.out + r.err
    assert f"- launch {PROD} (prod)  rule golden: it is not among the newest 1" in r.out
    after = yaml.safe_load(Path(saved).read_text())["images"]
    assert [(i["name"], i.get("launch")) for i in after] == [
        ("golden-2026.11.01", ["999999999999"]), ("golden-2026.11.08", [PROD])]
    assert run_main("plan", str(m), "--sandbox", saved, "--detailed-exitcode").code == 0


@pytest.mark.parametrize(("field", "expected"), [
    ('created: "2026-02-30"', 'images[0].created: \'2026-02-30\' is not a date on the calendar'),
    ("created: 2026-11-01", 'images[0].created: 2026-11-01 was read by YAML as date; quote it'),
    ('deprecated: "next week"', 'images[0].deprecated: "next week" is not a date or UTC time'),
])
def test_sandbox_image_dates_are_validated(field: str, expected: str, tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text('version: 1\naccount: "123456789012"\nimages:\n'
                     f'  - {{region: us-east-1, name: golden-1, {field}}}\n')
    m = tmp_path / "amis.yaml"
    m.write_bytes(manifest('{name: "golden-*", latest: 1}'))
    r = run_main("plan", str(m), "--sandbox", str(state))
    assert r.code == 1 and r.out == ""
    assert f"error: {state}:4:" in r.err and expected in r.err, r.err
