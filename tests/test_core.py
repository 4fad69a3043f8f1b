"""The pure pipeline: select -> diff -> compute_plan -> Plan JSON -> render, with no AWS.

Images are hand-built :class:`Image` values; manifests are parsed from inline YAML.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from helpers import ACCOUNT, DEV, EU, ORG, OU, PROD, STAGING, US, manifest_yaml
from jsonschema import Draft202012Validator

from reconciler.core.desired import Selection, select
from reconciler.core.differ import diff_permissions
from reconciler.core.errors import InputError
from reconciler.core.kms import KeyInfo
from reconciler.core.manifest import Manifest, parse_manifest
from reconciler.core.model import (
    Action,
    BlockState,
    Identity,
    Image,
    Operation,
    OpKind,
    Principal,
    PrincipalKind,
    Severity,
    Snapshot,
)
from reconciler.core.plan import Ownership, Plan, make_plan, plan_from_dict, state_digest
from reconciler.core.planning import (
    CurrentState,
    PlanOptions,
    compute_plan,
    regions_needing_public_check,
)
from reconciler.core.planning.checks import ImageView, check_image
from reconciler.core.render import render_markdown, render_text, summary_line
from reconciler.core.schema import load_schema
from reconciler.shell.terminal import ansi

IDENTITY = Identity(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/ci")
HAND = "999999999999"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"

P_PROD = Principal.account(PROD)
P_STAGING = Principal.account(STAGING)
P_DEV = Principal.account(DEV)
P_HAND = Principal.account(HAND)
P_ORG = Principal(PrincipalKind.ORGANIZATION, ORG)
P_OU = Principal(PrincipalKind.OU, OU)
PUBLIC = Principal.public()

ANSI = re.compile(r"\x1b\[")


def manifest(body: str, *, settings: str = "") -> Manifest:
    """A manifest with the standard principals in two Regions; ``body`` is the ``images:``
    list."""
    return parse_manifest(manifest_yaml(body, regions=(US, EU), settings=settings).encode(),
                          "m.yaml")


def img(image_id: str, name: str, region: str = US, *, tags: dict[str, str] | None = None,
        state: str = "available", public: bool = False, snapshots: tuple[str, ...] = (),
        encrypted: bool = False) -> Image:
    return Image(image_id, region, ACCOUNT, name, state, public,
                 tuple(sorted((tags or {}).items())), snapshots, encrypted)


def ami(n: int) -> str:
    return f"ami-{n:017x}"


def listing(*images: Image) -> dict[str, list[Image]]:
    out: dict[str, list[Image]] = {US: [], EU: []}
    for i in images:
        out.setdefault(i.region, []).append(i)
    return out


def managed_ids(sel: Selection) -> list[str]:
    return [m.image.image_id for m in sel.managed]


def codes(findings) -> list[tuple[str, str, str]]:
    return [(f.severity.value, f.code, f.resource) for f in findings]


def state(launch=None, **kw) -> CurrentState:
    return CurrentState(launch={k: frozenset(v) for k, v in (launch or {}).items()}, **kw)


def plan_for(m: Manifest, images: dict[str, list[Image]], st: CurrentState,
             options: PlanOptions = PlanOptions()) -> Plan:
    return compute_plan(m, IDENTITY, select(m, images, options.regions), st, options)


def launch_ops(plan: Plan) -> list[tuple[str, str, str, str]]:
    return [(o.action.value, o.resource, o.principal.label, ",".join(o.rules))
            for o in plan.operations if o.kind is OpKind.LAUNCH]


def customer_key() -> KeyInfo:
    """An enabled customer managed key in the caller's account with only the root statement."""
    statements = [{"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                   "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
                   "Resource": "*"}]
    return KeyInfo(KEY, US, KEY, ACCOUNT, "CUSTOMER", "Enabled", "alias/golden",
                   json.dumps({"Version": "2012-10-17", "Statement": statements}))


# =========================================================================== select

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
        img(ami(1), "golden-1", tags={"channel": "stable", "os": "al2023", "extra": "x"}),
        img(ami(2), "GOLDEN-2", tags={"channel": "stable", "os": "al2023"}),
        img(ami(3), "golden-3", tags={"channel": "stable"}),
        img(ami(4), "golden-4", tags={"channel": "Stable", "os": "al2023"}),
        img(ami(5), "silver-golden-5", tags={"channel": "stable", "os": "al2023"}),
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
    sel = select(m, listing(img(ami(1), "golden-1"), img(ami(2), "other-2"),
                            img(ami(3), "golden-3")))
    assert managed_ids(sel) == [ami(1)]
    # ami(2) exists but does not match the name: that is an error, not silence
    assert codes(sel.findings) == [("error", "image-not-found", ami(2))]
    assert "does not match the rule's name/tags" in sel.findings[0].message


def test_select_respects_rule_regions_and_unions_rules():
    m = manifest(SELECT_RULES)
    images = listing(
        img(ami(1), "golden-1", US, tags={"channel": "stable"}),
        img(ami(2), "golden-2", EU, tags={"channel": "stable"}),
        img(ami(3), "golden-3", US, tags={"channel": "beta"}),
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
    images = listing(img(ami(2), "golden-2", EU, tags={"channel": "stable"}))
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
    sel = select(m, listing(img(ami(1), "golden-1", state="disabled"),
                            img(ami(2), "golden-2", state="pending"),
                            img(ami(3), "golden-3")))
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
    sel = select(m, listing(img(ami(8), "x", EU)))
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
    sel = select(m, listing(img(ami(1), "golden-1")))
    assert sel.managed == ()
    assert [(f.severity.value, f.code, f.region, f.resource) for f in sel.findings] == [
        ("warning", "no-match", "", "nothing")]
    assert sel.findings[0].message == ("rule 'nothing' matches no image owned by the caller "
                                       f"in {US}, {EU}")
    one = select(m, listing(img(ami(1), "golden-1")), [US])
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
    sel = select(m, listing(img(ami(1), "golden-1"), img(ami(2), "golden-2")))
    flags = {mi.image.image_id: mi.manages_copy for mi in sel.managed}
    assert flags == {ami(1): True, ami(2): False}


# =========================================================================== diff_permissions


@pytest.mark.parametrize(
    ("desired", "current", "prune", "cannot_add", "expected", "unchanged"),
    [
        ({P_PROD: ("r",)}, set(), True, set(), [("add", PROD, ("r",))], 0),
        ({P_PROD: ("r",)}, {P_PROD}, True, set(), [], 1),
        ({}, {P_HAND}, True, set(), [("remove", HAND, ())], 0),
        ({}, {P_HAND}, False, set(), [], 0),
        ({P_PROD: ("r",), P_STAGING: ("s",)}, {P_PROD, P_HAND}, True, set(),
         [("add", STAGING, ("s",)), ("remove", HAND, ())], 1),
        ({P_PROD: ("r",), P_STAGING: ("s",)}, {P_PROD, P_HAND}, False, set(),
         [("add", STAGING, ("s",))], 1),
        ({PUBLIC: ("p",), P_PROD: ("r",)}, set(), True, {PUBLIC}, [("add", PROD, ("r",))], 0),
        # declared but impossible to add: an existing grant is kept, not pruned
        ({PUBLIC: ("p",)}, {PUBLIC, P_HAND}, True, {PUBLIC}, [("remove", HAND, ())], 1),
        ({P_PROD: ("z", "a")}, set(), True, set(), [("add", PROD, ("a", "z"))], 0),
    ],
    ids=["add", "in-place", "remove", "prune-off-no-remove", "add-and-remove",
         "prune-off-add-only", "cannot-add-skips-add", "cannot-add-keeps-existing",
         "rules-sorted"],
)
def test_diff_permissions(desired, current, prune, cannot_add, expected, unchanged):
    d = diff_permissions(OpKind.LAUNCH, US, ami(1), desired, frozenset(current), prune=prune,
                         cannot_add=frozenset(cannot_add))
    assert [(o.action.value, o.principal.label, o.rules) for o in d.operations] == expected
    assert all((o.kind, o.region, o.resource) == (OpKind.LAUNCH, US, ami(1)) for o in d.operations)
    assert d.unchanged == unchanged


def test_diff_permissions_output_is_sorted():
    desired = {PUBLIC: ("p",), P_OU: ("o",), P_ORG: ("o",), P_STAGING: ("s",), P_PROD: ("r",)}
    current = frozenset({Principal.account("000000000001"), Principal.account("999999999998")})
    d = diff_permissions(OpKind.COPY, EU, "snap-1", desired, current, prune=True)
    assert [(o.action.value, o.principal.kind, o.principal.value) for o in d.operations] == [
        ("add", PrincipalKind.ACCOUNT, PROD),
        ("add", PrincipalKind.ACCOUNT, STAGING),
        ("add", PrincipalKind.ORGANIZATION, ORG),
        ("add", PrincipalKind.OU, OU),
        ("add", PrincipalKind.PUBLIC, "all"),
        ("remove", PrincipalKind.ACCOUNT, "000000000001"),
        ("remove", PrincipalKind.ACCOUNT, "999999999998"),
    ]
    assert {o.kind for o in d.operations} == {OpKind.COPY}


# =========================================================================== compute_plan

PLAN_RULES = f"""\
  - name: golden
    select: {{name: "golden-*"}}
    regions: [us-east-1]
    launch: [prod, staging]
  - name: pub
    select: {{name: "public-*"}}
    regions: [us-east-1]
    launch: [public]
  - name: pinned
    select: {{ids: [{ami(9)}]}}
    regions: [eu-west-1]
    launch: [org, prod]
    copy: [prod]
"""

PLAN_IMAGES = (
    img(ami(1), "golden-1"),
    img(ami(2), "golden-2"),
    img(ami(3), "public-3"),
    img(ami(9), "pinned-9", EU, snapshots=("snap-0000000000000009a",)),
)


BASE_LAUNCH = {(US, ami(1)): {P_PROD, P_HAND}, (US, ami(2)): {P_PROD, P_STAGING},
               (US, ami(3)): set(), (EU, ami(9)): {P_ORG}}


def base_state(launch=None, **overrides) -> CurrentState:
    """Current state for PLAN_IMAGES: ami(1) has a hand-added account, ami(2) is converged,
    ami(3) is not yet public, ami(9) lacks prod and its snapshot has a hand-added account."""
    launch = BASE_LAUNCH if launch is None else launch
    kw = dict(snapshots={(EU, "snap-0000000000000009a"): Snapshot("snap-0000000000000009a", EU)},
              copy={(EU, "snap-0000000000000009a"): frozenset({P_HAND})},
              public_access={(ACCOUNT, US): BlockState("unblocked")})
    kw.update(overrides)
    return state(launch, **kw)


def test_compute_plan_operations_findings_and_summary():
    m = manifest(PLAN_RULES, settings="allow_public: true")
    plan = plan_for(m, listing(*PLAN_IMAGES), base_state())
    assert [o.to_dict() for o in plan.operations] == [
        {"action": "add", "kind": "launch_permission", "region": EU, "resource": ami(9),
         "principal": {"UserId": PROD}, "rules": ["pinned"]},
        {"action": "add", "kind": "create_volume_permission", "region": EU,
         "resource": "snap-0000000000000009a", "principal": {"UserId": PROD}, "rules": ["pinned"]},
        {"action": "remove", "kind": "create_volume_permission", "region": EU,
         "resource": "snap-0000000000000009a", "principal": {"UserId": HAND}, "rules": []},
        {"action": "add", "kind": "launch_permission", "region": US, "resource": ami(1),
         "principal": {"UserId": STAGING}, "rules": ["golden"]},
        {"action": "remove", "kind": "launch_permission", "region": US, "resource": ami(1),
         "principal": {"UserId": HAND}, "rules": []},
        {"action": "add", "kind": "launch_permission", "region": US, "resource": ami(3),
         "principal": {"Group": "all"}, "rules": ["pub"]},
    ]
    assert plan.findings == ()
    # unchanged: ami(1) prod, ami(2) prod+staging, ami(9) org
    assert plan.summary.to_dict() == {"add": 4, "remove": 2, "images": 4, "unchanged": 4}
    assert plan.caller_account == ACCOUNT
    assert plan.manifest_sha256 == m.sha256
    assert plan.has_changes and plan.errors == ()
    assert plan.image_names == {ami(1): "golden-1", ami(2): "golden-2", ami(3): "public-3",
                                ami(9): "pinned-9"}


def test_compute_plan_converged_has_no_changes():
    m = manifest(PLAN_RULES, settings="allow_public: true")
    st = base_state(launch={(US, ami(1)): frozenset({P_PROD, P_STAGING}),
                            (US, ami(2)): frozenset({P_PROD, P_STAGING}),
                            (US, ami(3)): frozenset({PUBLIC}),
                            (EU, ami(9)): frozenset({P_ORG, P_PROD})},
                    copy={(EU, "snap-0000000000000009a"): frozenset({P_PROD})})
    plan = plan_for(m, listing(*PLAN_IMAGES), st)
    assert plan.operations == () and not plan.has_changes
    assert plan.summary.to_dict() == {"add": 0, "remove": 0, "images": 4, "unchanged": 8}
    assert summary_line(plan) == "No changes: 8 permissions as declared on 4 managed images."


def test_share_quota_error_blocks_only_that_image():
    m = manifest("""\
      - name: a
        select: {name: "golden-*"}
        regions: [us-east-1]
        launch: [prod, staging]
      - name: b
        select: {name: "golden-1"}
        regions: [us-east-1]
        launch: [staging, dev]
    """, settings="share_quota: 2")
    plan = plan_for(m, listing(img(ami(1), "golden-1"), img(ami(2), "golden-2")),
                    state({(US, ami(1)): {P_HAND}, (US, ami(2)): {P_HAND}}))
    assert codes(plan.findings) == [("error", "share-quota", ami(1))]
    assert plan.findings[0].message == (f"{ami(1)} (golden-1) would be shared with 3 entities by "
                                        "rules a, b; share_quota is 2")
    # the blocked image gets no operation at all (not even the prune); the other one does
    assert {o.resource for o in plan.operations} == {ami(2)}
    assert launch_ops(plan) == [("add", ami(2), PROD, "a"), ("add", ami(2), STAGING, "a"),
                                ("remove", ami(2), HAND, "")]
    assert plan.summary.images == 2


@pytest.mark.parametrize("kms_mode", ["off", "key-policy"], ids=["kms-off", "kms-key-policy"])
def test_encrypted_public_is_error_and_the_image_is_left_alone(kms_mode):
    """README, "What a plan checks": an image with an error finding gets no write at all in that run."""
    m = manifest("""\
      - name: enc
        select: {name: "enc-*"}
        regions: [us-east-1]
        launch: [prod, public]
    """, settings=f'allow_public: true\nkms: "{kms_mode}"')
    snap = Snapshot("snap-0000000000000000e", US, True, KEY, ACCOUNT)
    image = img(ami(0xE), "enc-1", snapshots=(snap.snapshot_id,))
    st = state({(US, ami(0xE)): set()}, snapshots={(US, snap.snapshot_id): snap},
               keys={(US, KEY): customer_key()})
    plan = plan_for(m, listing(image), st)
    assert codes(plan.findings) == [("error", "encrypted-public", ami(0xE))]
    assert "can never be made public" in plan.findings[0].message
    assert "remove `public` from rules enc" in plan.findings[0].message
    assert plan.operations == (), "not even the prod share or its key access"
    assert "Left alone" in render_text(plan, m) and ami(0xE) in render_text(plan, m)
    # the public check is not even needed for an encrypted image
    assert regions_needing_public_check(select(m, listing(image)), st.launch, st.snapshots) == []


@pytest.mark.parametrize(
    ("access", "expected_findings", "public_added"),
    [
        (BlockState("block-new-sharing"), [("error", "public-access-blocked", ami(3))], False),
        (BlockState("unblocked"), [], True),
        (BlockState(None, why="AccessDenied: ec2:GetImageBlockPublicAccessState"),
         [("warning", "public-access-unknown", ami(3))], True),
    ],
    ids=["blocked", "unblocked", "unknown"],
)
def test_image_block_public_access(access, expected_findings, public_added):
    m = manifest(PLAN_RULES, settings="allow_public: true")
    plan = plan_for(m, listing(*PLAN_IMAGES), base_state(public_access={(ACCOUNT, US): access}))
    assert codes(plan.findings) == expected_findings
    assert any(o.principal.is_public for o in plan.operations) is public_added
    # the other images' changes are unaffected
    assert ("add", ami(1), STAGING, "golden") in launch_ops(plan)
    if access.state == "block-new-sharing":
        assert "disable-image-block-public-access --region us-east-1" in plan.findings[0].message
    if access.state is None:
        assert "AccessDenied: ec2:GetImageBlockPublicAccessState" in plan.findings[0].message


def test_public_access_not_read_is_a_warning():
    m = manifest(PLAN_RULES, settings="allow_public: true")
    plan = plan_for(m, listing(*PLAN_IMAGES), base_state(public_access={}))
    assert codes(plan.findings) == [("warning", "public-access-unknown", ami(3))]
    assert "(not read)" in plan.findings[0].message


def test_strict_promotes_warnings_to_errors():
    m = manifest(PLAN_RULES + """\
  - name: ghost
    select: {name: "ghost-*"}
    regions: [us-east-1]
""", settings="allow_public: true")
    images = listing(*PLAN_IMAGES, img(ami(4), "golden-4", state="disabled"))
    st = base_state(public_access={})
    lax = plan_for(m, images, st)
    strict = plan_for(m, images, st, PlanOptions(strict=True))
    assert sorted(codes(lax.findings)) == [("warning", "image-disabled", ami(4)),
                                           ("warning", "no-match", "ghost"),
                                           ("warning", "public-access-unknown", ami(3))]
    assert lax.errors == ()
    assert sorted(codes(strict.findings)) == [("error", "image-disabled", ami(4)),
                                              ("error", "no-match", "ghost"),
                                              ("error", "public-access-unknown", ami(3))]
    assert len(strict.errors) == 3
    assert [f.message for f in strict.findings] == [f.message for f in lax.findings]
    # an image whose warning --strict makes an error is left alone, like any errored image
    assert any(o.resource == ami(3) for o in lax.operations)
    assert strict.operations == tuple(o for o in lax.operations if o.resource != ami(3))


@pytest.mark.parametrize(
    ("prune", "expected_ops", "expected_findings"),
    [
        ("false", [("add", ami(1), STAGING, "golden")],
         [("warning", "undeclared-public", ami(1))]),
        ("true", [("add", ami(1), STAGING, "golden"), ("remove", ami(1), "public", "")], []),
    ],
    ids=["prune-off-warns", "prune-on-removes"],
)
def test_undeclared_public(prune, expected_ops, expected_findings):
    m = manifest("""\
      - name: golden
        select: {name: "golden-*"}
        regions: [us-east-1]
        launch: [prod, staging]
    """, settings=f"prune: {prune}")
    plan = plan_for(m, listing(img(ami(1), "golden-1", public=True)),
                    state({(US, ami(1)): {P_PROD, PUBLIC}}))
    assert launch_ops(plan) == expected_ops
    assert codes(plan.findings) == expected_findings
    if expected_findings:
        assert "stays public because settings.prune is false" in plan.findings[0].message


def test_snapshot_not_found_blocks_image():
    m = manifest("""\
      - name: g
        select: {name: "golden-*"}
        regions: [us-east-1]
        launch: [prod]
    """)
    sel = select(m, listing(img(ami(1), "golden-1", snapshots=("snap-0000000000000001a",))))
    view, findings = check_image(m, ImageView(sel.managed[0], frozenset()), state({}))
    assert view.blocked
    assert codes(findings) == [("error", "snapshot-not-found", ami(1))]
    assert "snap-0000000000000001a" in findings[0].message


def test_regions_needing_public_check():
    m = manifest("""\
      - name: pub
        select: {name: "pub-*"}
        launch: [public]
    """, settings="allow_public: true")
    enc_snap = Snapshot("snap-0000000000000000e", EU, encrypted=True, kms_key_id=KEY)
    images = listing(
        img(ami(1), "pub-1", US),                 # would become public -> needs the check
        img(ami(2), "pub-2", US),                 # same Region, listed once
        img(ami(3), "pub-3", EU, public=True),    # already public -> no check
        img(ami(4), "pub-4", EU, snapshots=(enc_snap.snapshot_id,)),  # encrypted snapshot
    )
    sel = select(m, images)
    launch = {(EU, ami(3)): frozenset({PUBLIC})}
    assert regions_needing_public_check(sel, launch, {(EU, enc_snap.snapshot_id): enc_snap}) == [US]
    # without the encrypted snapshot known, eu-west-1's ami(4) would need it too
    assert regions_needing_public_check(sel, launch, {}) == [EU, US]


# =========================================================================== Plan JSON


def full_plan() -> tuple[Manifest, Plan]:
    """A plan with every operation kind and every finding severity."""
    m = manifest(PLAN_RULES + """\
  - name: enc
    select: {name: "enc-*"}
    regions: [us-east-1]
    launch: [prod, ou]
  - name: ghost
    select: {name: "ghost-*"}
    regions: [us-east-1]
""", settings="allow_public: true")
    snap = Snapshot("snap-0000000000000000e", US, True, KEY, ACCOUNT)
    images = listing(*PLAN_IMAGES, img(ami(0xE), "enc-1", snapshots=(snap.snapshot_id,)))
    plain = Snapshot("snap-0000000000000009a", EU)
    st = base_state(snapshots={(EU, plain.snapshot_id): plain, (US, snap.snapshot_id): snap},
                    keys={(US, KEY): customer_key()},
                    public_access={(ACCOUNT, US): BlockState("block-new-sharing")},
                    launch={**BASE_LAUNCH, (US, ami(0xE)): set()})
    return m, plan_for(m, images, st)


def test_plan_to_dict_validates_against_schema():
    _, plan = full_plan()
    doc = plan.to_dict()
    validator = Draft202012Validator(load_schema("plan"))
    assert sorted(e.message for e in validator.iter_errors(doc)) == []
    assert {o["kind"] for o in doc["operations"]} == {"launch_permission",
                                                       "create_volume_permission", "kms_key_access"}
    assert {f["severity"] for f in doc["findings"]} == {"error", "warning"}
    assert doc["format_version"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", doc["state_digest"])
    # round-trips through JSON text unchanged
    assert json.loads(plan.to_json()) == doc


def test_plan_findings_sorted_errors_first():
    _, plan = full_plan()
    severities = [f.severity for f in plan.findings]
    assert severities == sorted(severities, key=[Severity.ERROR, Severity.WARNING,
                                                 Severity.INFO].index)
    assert codes(plan.findings) == [("error", "public-access-blocked", ami(3)),
                                    ("warning", "no-match", "ghost")]


def test_operations_sorted_by_region_resource_kind_action_principal():
    def op(action, kind, region, resource, principal):
        return Operation(action, kind, region, resource, principal, ())

    expected = [
        op(Action.ADD, OpKind.LAUNCH, EU, ami(1), P_PROD),
        op(Action.ADD, OpKind.LAUNCH, US, ami(1), P_PROD),
        op(Action.ADD, OpKind.LAUNCH, US, ami(1), P_STAGING),
        op(Action.ADD, OpKind.LAUNCH, US, ami(1), P_ORG),
        op(Action.ADD, OpKind.LAUNCH, US, ami(1), P_OU),
        op(Action.ADD, OpKind.LAUNCH, US, ami(1), PUBLIC),
        op(Action.REMOVE, OpKind.LAUNCH, US, ami(1), Principal.account("000000000000")),
        op(Action.ADD, OpKind.LAUNCH, US, ami(2), P_PROD),
        op(Action.ADD, OpKind.KMS, US, KEY, P_PROD),
        op(Action.REMOVE, OpKind.KMS, US, KEY, P_HAND),
        op(Action.ADD, OpKind.COPY, US, "snap-0000000000000000a", P_PROD),
    ]
    shuffled = expected[:]
    random.Random(7).shuffle(shuffled)
    assert shuffled != expected
    plan = make_plan(manifest_sha256="0" * 64, caller_account=ACCOUNT, operations=shuffled,
                     findings=[], images=2, unchanged=0, state={})
    assert list(plan.operations) == expected
    assert plan.summary.to_dict() == {"add": 9, "remove": 2, "images": 2, "unchanged": 0}


def digest_case(hand_on_touched: bool, extra_on_untouched: bool) -> Plan:
    m = manifest("""\
      - name: golden
        select: {name: "golden-*"}
        regions: [us-east-1]
        launch: [prod]
    """, settings="prune: false")
    touched = {P_HAND} | ({P_DEV} if hand_on_touched else set())
    untouched = {P_PROD} | ({P_STAGING} if extra_on_untouched else set())
    return plan_for(m, listing(img(ami(1), "golden-1"), img(ami(2), "golden-2")),
                    state({(US, ami(1)): touched, (US, ami(2)): untouched}))


def test_state_digest_covers_every_resource_the_plan_consulted():
    """A saved plan is refused when any resource it decided from changed, not only the
    ones it writes (README, "Guarantees": apply --plan)."""
    base = digest_case(False, False)
    assert launch_ops(base) == [("add", ami(1), PROD, "golden")]  # ami(2) is not written
    touched_changed = digest_case(True, False)
    untouched_changed = digest_case(False, True)
    assert touched_changed.operations == base.operations
    assert untouched_changed.operations == base.operations
    assert touched_changed.state_digest != base.state_digest
    assert untouched_changed.state_digest != base.state_digest
    assert digest_case(False, False).state_digest == base.state_digest  # deterministic


def test_state_digest_function():
    k1 = ("launch_permission", US, ami(1))
    k2 = ("launch_permission", US, ami(2))
    st = {k1: [["0", PROD]], k2: [["0", STAGING]]}
    d = state_digest(st, [k1])
    assert d == state_digest({**st, k2: [["0", DEV]]}, [k1])
    assert d != state_digest({**st, k1: [["0", DEV]]}, [k1])
    assert d == state_digest(st, {k1})
    assert state_digest(st, []) != d
    # a resource that is absent differs from one with an empty permission set
    assert state_digest({}, [k1]) != state_digest({k1: []}, [k1])


def test_plan_from_dict_round_trips():
    _, plan = full_plan()
    doc = json.loads(plan.to_json())
    back = plan_from_dict(doc, "plan.json")
    assert back == plan
    # the names beside IDs are for reading only: a saved plan is rebuilt without them
    names = {"resource_name", "principal_name"}
    assert any(names & op.keys() for op in doc["operations"])
    for op in doc["operations"]:
        for key in names:
            op.pop(key, None)
    assert back.to_dict() == doc
    assert json.loads(back.to_json()) == doc


@pytest.mark.parametrize(
    ("tamper", "fragment"),
    [
        (lambda d: d["operations"][0].update(principal={"UserId": "12345"}),
         "operations/0/principal"),
        (lambda d: d["operations"][0].update(principal={"Group": "everyone"}),
         "operations/0/principal"),
        (lambda d: d["operations"][0].update(principal={"UserId": PROD, "Group": "all"}),
         "operations/0/principal"),
        (lambda d: d["operations"][0].update(principal={}), "operations/0/principal"),
        (lambda d: d.update(extra=True), "Additional properties are not allowed ('extra'"),
        (lambda d: d["operations"][0].update(note="x"), "operations/0: Additional properties"),
        (lambda d: d["summary"].update(add=-1), "summary/add"),
        (lambda d: d.update(format_version=2), "format_version"),
        (lambda d: d.update(caller_account="12345678901"), "caller_account"),
        (lambda d: d["operations"][0].update(action="replace"), "operations/0/action"),
        (lambda d: d.pop("state_digest"), "'state_digest' is a required property"),
        (lambda d: d["findings"][0].update(severity="fatal"), "findings/0/severity"),
    ],
    ids=["short-account", "bad-group", "two-principal-keys", "empty-principal", "extra-top-key",
         "extra-operation-key", "negative-count", "format-version", "caller-account",
         "unknown-action", "missing-digest", "unknown-severity"],
)
def test_plan_from_dict_rejects_tampered_document(tamper, fragment):
    _, plan = full_plan()
    doc = json.loads(plan.to_json())
    tamper(doc)
    with pytest.raises(InputError) as info:
        plan_from_dict(doc, "plan.json")
    message = str(info.value)
    assert message.startswith("plan.json:1:1: not a valid plan file: ")
    assert fragment in message
    for p in info.value.problems:
        assert "\n" not in p.message


# =========================================================================== render


def test_render_text_names_images_principals_and_summary():
    m, plan = full_plan()
    text = render_text(plan, m)
    assert not ANSI.search(text)
    # grouped by Region, then image with its name
    assert text.index("\neu-west-1\n") < text.index("\nus-east-1\n")
    for line in [f"  ~ {ami(1)} (golden-1)", f"  ~ {ami(9)} (pinned-9)", f"  ~ {ami(0xE)} (enc-1)",
                 "  ~ snap-0000000000000009a (snapshot of " + ami(9) + ")",
                 f"  ~ {KEY} (alias/golden)"]:
        assert line + "\n" in text, line
    # principal manifest names beside IDs, with the rule or "not declared"
    assert re.search(rf"\+ launch {STAGING} \(staging\)\s+rule golden\n", text)
    assert re.search(rf"- launch {HAND}\s+not declared\n", text)
    assert re.search(rf"\+ copy   {PROD} \(prod\)\s+rule pinned\n", text)
    assert re.search(rf"\+ launch {re.escape(OU)} \(ou\)\s+rule enc\n", text)
    # errors and warnings before the diff, where a reviewer starts reading
    assert text.startswith("Errors and warnings:\n  error[public-access-blocked] us-east-1 "
                           + ami(3))
    s = plan.summary
    assert text.endswith(f"Plan: {s.add} permissions to add, {s.remove} to remove, "
                         f"{s.unchanged} unchanged, on {s.images} managed images.\n")


def test_render_text_without_manifest_shows_bare_ids():
    _, plan = full_plan()
    text = render_text(plan, None)
    assert f"+ launch {STAGING} " in text
    assert "(staging)" not in text


def test_render_text_color_only_when_asked():
    m, plan = full_plan()
    plain = render_text(plan, m)
    colored = render_text(plan, m, paint=ansi)
    assert ANSI.search(colored)
    assert re.sub(r"\x1b\[[0-9;]*m", "", colored) == plain


def test_render_markdown_table_and_diff_block():
    m, plan = full_plan()
    md = render_markdown(plan, m)
    lines = md.splitlines()
    assert lines[0] == f"**{summary_line(plan)}**", "one heading: the workflow's own"
    assert "| Region | Add | Remove | Errors |" in lines
    assert "|---|---:|---:|---:|" in lines
    us_adds = sum(1 for o in plan.operations if o.region == US and o.action is Action.ADD)
    us_removes = sum(1 for o in plan.operations if o.region == US and o.action is Action.REMOVE)
    assert f"| us-east-1 | {us_adds} | {us_removes} | 1 |" in lines
    assert "```diff" in lines
    # the changes block, and one collapsed JSON diff per changed key
    assert md.count("```") == 2 * (1 + len(plan.key_policies))
    assert md.count("<details><summary>Key policy change: ") == len(plan.key_policies) >= 1
    assert f"~ {ami(1)} (golden-1)" in lines
    assert any(line.startswith(f"+   launch {STAGING} (staging)") for line in lines)
    assert "<details><summary>Changes</summary>" in lines and "</details>" in lines
    assert "**Errors and warnings**" in lines
    assert lines.index("**Errors and warnings**") < lines.index("```diff")
    assert not ANSI.search(md)
    assert md.endswith("\n") and not md.endswith("\n\n\n")


def test_render_markdown_truncated_with_note():
    m, plan = full_plan()
    many = [Operation(Action.ADD, OpKind.LAUNCH, US, ami(i), P_PROD, ("golden",))
            for i in range(100, 400)]
    big = make_plan(manifest_sha256=plan.manifest_sha256, caller_account=ACCOUNT,
                    operations=many, findings=plan.findings, images=300, unchanged=0, state={})
    full = render_markdown(big, m, limit=10**9)
    assert "truncated" not in full
    limit = 3000
    assert len(full) > limit
    md = render_markdown(big, m, limit=limit)
    assert len(md) <= limit
    assert md.rstrip("\n").endswith("_Output truncated; see the full plan in the job's artifacts._")
    assert md.count("```") % 2 == 0  # the diff fence is closed
    assert md.count("<details>") == md.count("</details>") == 1
    assert md.startswith("**Plan: 300 permissions to add, 0 to remove")


def test_identical_inputs_render_byte_identical():
    def run(seed: int) -> tuple[str, str, str]:
        m, _ = full_plan()
        imgs = list(listing(*PLAN_IMAGES, img(ami(4), "golden-4")).items())
        rng = random.Random(seed)
        shuffled = {region: rng.sample(lst, len(lst)) for region, lst in reversed(imgs)}
        launch = base_state().launch
        st = base_state(launch={k: frozenset(rng.sample(sorted(v), len(v)))
                                for k, v in rng.sample(list(launch.items()), len(launch))})
        plan = plan_for(m, shuffled, st)
        return plan.to_json(), render_text(plan, m), render_markdown(plan, m)

    first = run(1)
    for seed in (2, 3, 4):
        assert run(seed) == first


def test_one_arn_parser() -> None:
    from reconciler.core.model import Arn

    key = Arn.parse("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab")
    assert (key.partition, key.service, key.region, key.account, key.resource, key.resource_id) \
        == ("aws-us-gov", "kms", "us-gov-west-1", "123456789012", "key/1234abcd-12ab",
            "1234abcd-12ab")
    ou = Arn.parse("arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456")
    assert (ou.region, ou.account, ou.resource_id) == ("", "123456789012", "ou-ab12-cdef3456")
    assert Arn.parse("1234abcd-12ab") == Arn.parse("arn:aws:kms") == Arn()
    assert Arn.parse("arn:aws:iam::123456789012:role/path/with:colon").resource == \
        "role/path/with:colon"


def test_contract_values_are_enums() -> None:
    from reconciler.core.kms import KeyManager
    from reconciler.core.manifest import KmsMode

    m = parse_manifest(b"version: 1\nsettings: {name: m, kms: off}\nimages: []\n", "m.yaml")
    assert m.settings.kms is KmsMode.OFF  # YAML's `off` (a boolean) is the mode "off"
    m = parse_manifest(b"version: 1\nsettings: {name: m, kms: check}\nimages: []\n", "m.yaml")
    assert m.settings.kms is KmsMode.CHECK and m.settings.kms == "check"
    assert KeyManager("AWS") is KeyManager.AWS and KeyManager.CUSTOMER == "CUSTOMER"


def _op(action: Action, kind: OpKind, region: str, resource: str,
        principal: Principal) -> Operation:
    return Operation(action, kind, region, resource, principal, ())


def _saved_pair() -> tuple[Plan, Plan]:
    """A saved plan and the fresh plan computed from the same manifest and state."""
    ops = [_op(Action.ADD, OpKind.LAUNCH, US, ami(1), P_PROD),
           _op(Action.REMOVE, OpKind.LAUNCH, US, ami(2), P_HAND)]
    state = {(US, ami(1), "launch"): ["111122223333"]}
    made = make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=ops,
                     findings=[], images=2, unchanged=0, state=state, regions=[US],
                     ownership=Ownership("amis", tag=((US, ami(1)),)))
    return made, make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=ops,
                           findings=[], images=2, unchanged=0, state=state, regions=[US],
                           ownership=Ownership("amis", tag=((US, ami(1)),)))


@pytest.mark.parametrize("change, refusal", [
    ({"manifest_sha256": "b" * 64}, "saved plan is stale: the manifest changed since the plan "
                                    "was made (plan has bbbbbbbbbbbb, amis.yaml is aaaaaaaaaaaa)"),
    ({"caller_account": "444433332222"}, "saved plan was made for account 444433332222, but the "
                                         f"credentials are for {ACCOUNT}"),
    ({"regions": (US, EU)}, f"saved plan covers Regions {US}, {EU}, but this apply covers {US}"),
    ({"operations": "twice"}, f"it lists add launch_permission {PROD} on {ami(1)} more than once"),
    ({"operations": "extra"}, "saved plan was edited (tampered): it contains 1 operation(s) the "
                              "manifest does not call for (first: add launch_permission "
                              f"{STAGING} on {ami(3)}), although the state it was made from is "
                              "unchanged"),
    ({"operations": "missing"}, "1 operation(s) a fresh plan calls for are missing from it "
                                f"(first: remove launch_permission {HAND} on {ami(2)})"),
    ({"ownership": Ownership("amis")}, "its ownership tag changes differ from the plan"),
    ({"state_digest": "0" * 64}, "saved plan is stale: the current state of the resources it "
                                 "consulted changed since the plan was made; run plan again"),
])
def test_a_saved_plan_that_differs_from_the_fresh_one_is_refused(change, refusal) -> None:
    """The saved-plan check is pure: each difference is refused with its own reason."""
    from dataclasses import replace

    from reconciler.core.errors import StalePlanError
    from reconciler.core.plan import check_saved_plan

    saved, fresh = _saved_pair()
    check_saved_plan(saved, fresh, saved.manifest_sha256, "amis.yaml")  # the same: accepted
    ops = {"twice": (saved.operations[0], *saved.operations),
           "extra": (*saved.operations, _op(Action.ADD, OpKind.LAUNCH, US, ami(3), P_STAGING)),
           "missing": saved.operations[:1]}
    if change.get("operations") in ops:
        change = {"operations": ops[change["operations"]]}
    with pytest.raises(StalePlanError) as err:
        check_saved_plan(replace(saved, **change), fresh, fresh.manifest_sha256, "amis.yaml")
    assert refusal in str(err.value)


def test_a_snapshot_another_images_rules_manage_for_copy_keeps_its_tag() -> None:
    """Two images backed by one snapshot, one rule with `copy:` and one without: the tag
    stays (untagging it every other run would flip it, and a release of the first image
    would then leave its declared copy permissions behind)."""
    m = manifest("""\
      - {name: with-copy, select: {ids: [ami-00000000000000001]}, launch: [prod], copy: [prod]}
      - {name: launch-only, select: {ids: [ami-00000000000000002]}, launch: [prod]}
      - {name: alone, select: {ids: [ami-00000000000000003]}, launch: [prod]}
    """)
    tag = (("reconciler:manifest", "m"),)
    a = img(ami(1), "a", snapshots=("snap-shared",), tags={"reconciler:manifest": "m"})
    b = img(ami(2), "b", snapshots=("snap-shared",), tags={"reconciler:manifest": "m"})
    c = img(ami(3), "c", snapshots=("snap-alone",), tags={"reconciler:manifest": "m"})
    state = CurrentState(
        launch={i.key: frozenset({P_PROD}) for i in (a, b, c)},
        snapshots={(US, "snap-shared"): Snapshot("snap-shared", US, tags=tag),
                   (US, "snap-alone"): Snapshot("snap-alone", US, tags=tag)},
        copy={(US, "snap-shared"): frozenset({P_PROD})}, regions=(US,))
    plan = compute_plan(m, IDENTITY, select(m, {US: [a, b, c]}), state)
    assert plan.ownership is not None
    assert plan.ownership.untag_snapshots == ((US, "snap-alone"),), \
        "only the snapshot no rule manages for copy any more"
