"""Selection (reconciler.core.desired.select): which images each rule manages and what they
should be shared with; findings for IDs and selectors that match nothing. Pure: images are
hand-built values (tests/builders.py). Lifecycle selectors are tested in test_lifecycle.py.
"""

from __future__ import annotations

from builders import P_DEV, P_ORG, P_PROD, P_STAGING, ami, codes, image, listing, manifest
from helpers import EU, US

from reconciler.core.desired import Selection, select
from reconciler.core.model import Severity


def managed_ids(sel: Selection) -> list[str]:
    return [m.image.image_id for m in sel.managed]


SELECT_RULES = """\
  - name: golden
    select: {name: "golden-*", tags: {channel: stable}}
    launch: [prod, staging]
  - name: by-id
    select: {ids: [%s]}
    regions: [us-east-1]
    launch: [org, prod]
  - name: eu-only
    select: {name: "golden-*"}
    regions: [eu-west-1]
    launch: [dev]
""" % ami(1)


def test_select_name_glob_is_case_sensitive_and_tags_must_all_match():
    m = manifest("""\
      - name: g
        select: {name: "golden-*", tags: {channel: stable, os: al2023}}
        regions: [us-east-1]
        launch: [prod]
    """)
    images = listing(
        image(1, tags={"channel": "stable", "os": "al2023", "extra": "x"}),
        image(2, name="GOLDEN-2", tags={"channel": "stable", "os": "al2023"}),
        image(3, tags={"channel": "stable"}),
        image(4, tags={"channel": "Stable", "os": "al2023"}),
        image(5, name="silver-golden-5", tags={"channel": "stable", "os": "al2023"}),
    )
    sel = select(m, images)
    assert managed_ids(sel) == [ami(1)]
    assert sel.findings == ()
    assert sel.managed[0].launch == {P_PROD: ("g",)}
    assert sel.managed[0].rules == ("g",)


def test_select_ids_and_name_must_both_match():
    m = manifest(f"""\
      - name: g
        select: {{ids: [{ami(1)}, {ami(2)}], name: "golden-*"}}
        regions: [us-east-1]
        launch: [prod]
    """)
    sel = select(m, listing(image(1), image(2, name="other-2"),
                            image(3)))
    assert managed_ids(sel) == [ami(1)]
    # ami(2) exists but does not match the name: that is an error, not silence
    assert codes(sel.findings) == [("error", "image-not-found", ami(2))]
    assert "does not match the rule's name/tags" in sel.findings[0].message


def test_select_respects_rule_regions_and_unions_rules():
    m = manifest(SELECT_RULES)
    images = listing(
        image(1, US, tags={"channel": "stable"}),
        image(2, EU, tags={"channel": "stable"}),
        image(3, US, tags={"channel": "beta"}),
    )
    sel = select(m, images)
    by_id = {mi.image.image_id: mi for mi in sel.managed}
    assert list(by_id) == [ami(2), ami(1)]  # sorted by (region, id): eu-west-1 first
    # ami(1): matched by `golden` and `by-id`; prod declared by both
    assert by_id[ami(1)].rules == ("golden", "by-id")
    assert by_id[ami(1)].launch == {P_PROD: ("golden", "by-id"), P_STAGING: ("golden",),
                                    P_ORG: ("by-id",)}
    # ami(2) in eu-west-1: `golden` (settings regions) and `eu-only`
    assert by_id[ami(2)].rules == ("golden", "eu-only")
    assert set(by_id[ami(2)].launch) == {P_PROD, P_STAGING, P_DEV}
    # ami(3) has the wrong tag and `eu-only` only looks in eu-west-1
    assert ami(3) not in by_id
    assert sel.findings == ()


def test_select_restrict_limits_regions_and_defers_id_errors():
    m = manifest(SELECT_RULES)
    images = listing(image(2, EU, tags={"channel": "stable"}))
    sel = select(m, images, restrict=[EU])
    assert managed_ids(sel) == [ami(2)]
    # `by-id` only searches us-east-1, which --region excluded: its ID is not known missing
    assert [f.code for f in sel.findings] == []
    sel_all = select(m, images)
    assert ("error", "image-not-found", ami(1)) in codes(sel_all.findings)
    assert ("warning", "no-match", "golden") in codes(sel_all.findings)


def test_select_disabled_and_pending_images_are_warned_and_excluded():
    m = manifest("""\
      - name: g
        select: {name: "golden-*"}
        regions: [us-east-1]
        launch: [prod]
    """)
    sel = select(m, listing(image(1, state="disabled"),
                            image(2, state="pending"),
                            image(3)))
    assert managed_ids(sel) == [ami(3)]
    assert codes(sel.findings) == [("warning", "image-disabled", ami(1)),
                                   ("warning", "image-not-available", ami(2))]
    assert "golden-1" in sel.findings[0].message and "enable-image" in sel.findings[0].message
    assert "is pending" in sel.findings[1].message


def test_select_missing_id_is_an_error_finding():
    m = manifest(f"""\
      - name: pinned
        select: {{ids: [{ami(7)}, {ami(8)}]}}
        launch: [prod]
    """)
    # ami(8) exists in eu-west-1 only: found in one of the rule's Regions, so fine
    sel = select(m, listing(image(8, EU, name="x")))
    assert managed_ids(sel) == [ami(8)]
    (f,) = sel.findings
    assert (f.severity, f.code, f.resource, f.region) == (Severity.ERROR, "image-not-found",
                                                           ami(7), "us-east-1,eu-west-1")
    assert "rule 'pinned'" in f.message


def test_select_name_matching_nothing_warns_once_naming_the_regions():
    m = manifest("""\
      - name: nothing
        select: {name: "nope-*"}
        launch: [prod]
    """)
    sel = select(m, listing(image(1)))
    assert sel.managed == ()
    assert [(f.severity.value, f.code, f.region, f.resource) for f in sel.findings] == [
        ("warning", "no-match", "", "nothing")]
    assert sel.findings[0].message == ("rule 'nothing' matches no image owned by the caller "
                                       f"in {US}, {EU}")
    one = select(m, listing(image(1)), [US])
    assert [(f.region, f.message) for f in one.findings] == [
        (US, "rule 'nothing' matches no image owned by the caller in us-east-1")]


def test_select_manages_copy_when_any_rule_has_copy_key():
    m = manifest("""\
      - name: a
        select: {name: "golden-*"}
        regions: [us-east-1]
        launch: [prod]
      - name: b
        select: {name: "golden-1"}
        regions: [us-east-1]
        copy: []
    """)
    sel = select(m, listing(image(1), image(2)))
    flags = {mi.image.image_id: mi.manages_copy for mi in sel.managed}
    assert flags == {ami(1): True, ami(2): False}

