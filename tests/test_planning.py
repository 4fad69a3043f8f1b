"""Planning (reconciler.core.planning): from a selection and the gathered state to the
operations and findings of a plan. Each test goes through compute_plan (or the public
function of the phase it is about: diff_permissions, regions_needing_public_check) on
hand-built values (tests/builders.py); no AWS.
"""

from __future__ import annotations

import pytest
from builders import (
    KEY,
    P_HAND,
    P_ORG,
    P_OU,
    P_PROD,
    P_STAGING,
    PLAN_IMAGES,
    PLAN_RULES,
    PUBLIC,
    ami,
    base_state,
    codes,
    image,
    key_info,
    launch_ops,
    listing,
    manifest,
    plan_for,
    snapshot,
    state,
)
from helpers import ACCOUNT, EU, HAND, ORG, OU, PROD, STAGING, US

from reconciler.core.desired import select
from reconciler.core.differ import diff_permissions
from reconciler.core.model import BlockState, OpKind, Principal, PrincipalKind
from reconciler.core.planning import PlanOptions, regions_needing_public_check
from reconciler.core.render import render_text, summary_line

# --------------------------------------------------------------------------- permission diffs


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


# --------------------------------------------------------------------------- compute_plan


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
    assert plan.display.image_names == {ami(1): "golden-1", ami(2): "golden-2", ami(3): "public-3",
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
    plan = plan_for(m, listing(image(1), image(2)),
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
    snap = snapshot("snap-0000000000000000e", key=KEY)
    enc = image(0xE, name="enc-1", snapshots=(snap.snapshot_id,))
    st = state({(US, ami(0xE)): set()}, snapshots={(US, snap.snapshot_id): snap},
               keys={(US, KEY): key_info()})
    plan = plan_for(m, listing(enc), st)
    assert codes(plan.findings) == [("error", "encrypted-public", ami(0xE))]
    assert "can never be made public" in plan.findings[0].message
    assert "remove `public` from rules enc" in plan.findings[0].message
    assert plan.operations == (), "not even the prod share or its key access"
    assert "Left alone" in render_text(plan, m) and ami(0xE) in render_text(plan, m)
    # the public check is not even needed for an encrypted image
    assert regions_needing_public_check(select(m, listing(enc)), st.launch, st.snapshots) == []


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
    images = listing(*PLAN_IMAGES, image(4, state="disabled"))
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
    plan = plan_for(m, listing(image(1, public=True)),
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
    assert launch_ops(plan_for(m, listing(image(1)), state({}))) == [("add", ami(1), PROD, "g")]
    plan = plan_for(m, listing(image(1, snapshots=("snap-0000000000000001a",))), state({}))
    assert plan.operations == (), "left alone: not even the declared launch permission"
    assert codes(plan.findings) == [("error", "snapshot-not-found", ami(1))]
    assert "snap-0000000000000001a" in plan.findings[0].message
    assert "Left alone" in render_text(plan, m)


def test_regions_needing_public_check():
    m = manifest("""\
      - name: pub
        select: {name: "pub-*"}
        launch: [public]
    """, settings="allow_public: true")
    enc_snap = snapshot("snap-0000000000000000e", EU, key=KEY)
    images = listing(
        image(1, US, name="pub-1"),               # would become public -> needs the check
        image(2, US, name="pub-2"),               # same Region, listed once
        image(3, EU, name="pub-3", public=True),  # already public -> no check
        image(4, EU, name="pub-4", snapshots=(enc_snap.snapshot_id,)),  # encrypted snapshot
    )
    sel = select(m, images)
    launch = {(EU, ami(3)): frozenset({PUBLIC})}
    assert regions_needing_public_check(sel, launch, {(EU, enc_snap.snapshot_id): enc_snap}) == [US]
    # without the encrypted snapshot known, eu-west-1's ami(4) would need it too
    assert regions_needing_public_check(sel, launch, {}) == [EU, US]



# --------------------------------------------------------------------------- ownership


def test_a_snapshot_another_images_rules_manage_for_copy_keeps_its_tag() -> None:
    """Two images backed by one snapshot, one rule with `copy:` and one without: the tag
    stays (untagging it every other run would flip it, and a release of the first image
    would then leave its declared copy permissions behind)."""
    m = manifest("""\
      - {name: with-copy, select: {ids: [ami-00000000000000001]}, launch: [prod], copy: [prod]}
      - {name: launch-only, select: {ids: [ami-00000000000000002]}, launch: [prod]}
      - {name: alone, select: {ids: [ami-00000000000000003]}, launch: [prod]}
    """)
    tag = {"reconciler:manifest": "m"}
    a = image(1, name="a", snapshots=("snap-shared",), tags=tag)
    b = image(2, name="b", snapshots=("snap-shared",), tags=tag)
    c = image(3, name="c", snapshots=("snap-alone",), tags=tag)
    st = state({i.key: {P_PROD} for i in (a, b, c)},
               snapshots={(US, "snap-shared"): snapshot("snap-shared", tags=tag),
                          (US, "snap-alone"): snapshot("snap-alone", tags=tag)},
               copy={(US, "snap-shared"): frozenset({P_PROD})}, regions=(US,))
    plan = plan_for(m, {US: [a, b, c]}, st)
    assert plan.ownership is not None
    assert plan.ownership.untag_snapshots == ((US, "snap-alone"),), \
        "only the snapshot no rule manages for copy any more"


def test_builds_a_rule_withholds_are_one_line_unless_a_removal_is_planned():
    """A year of weekly builds is one line per rule, not fifty."""
    builds = [image(n, creation_date=f"2026-0{n}-01T00:00:00.000Z") for n in range(1, 7)]
    m = manifest("""\
  - name: golden
    select: {name: "golden-*", latest: 2}
    regions: [us-east-1]
    launch: [prod]
""")
    quiet = plan_for(m, listing(*builds), state({(US, b.image_id): {P_PROD} for b in builds[4:]}))
    [line] = [f for f in quiet.findings if f.code == "lifecycle-unshared"]
    assert (line.resource, line.region) == ("golden", US)
    assert "manages 4 builds in us-east-1" in line.message and ami(1) in line.message
    rotating = plan_for(m, listing(*builds),
                        state({(US, b.image_id): {P_PROD} for b in builds[3:]}))
    lines = [f for f in rotating.findings if f.code == "lifecycle-unshared"]
    assert [f.resource for f in lines] == [ami(4), "golden"], "the removal is explained"


@pytest.mark.parametrize(("changes", "code"), [
    ({"usage_operation": "RunInstances:0002"}, "copy-billing-product"),
    ({"root_device_type": "instance-store"}, "copy-instance-store"),
], ids=["windows", "instance-store"])
def test_copy_that_cannot_work_is_an_error_and_the_image_is_left_alone(changes, code):
    """EC2 User Guide, "Copy an Amazon EC2 AMI" (CopyingAMIs.html#copy-ami-across-accounts):
    an AMI with a billing product shared with you cannot be copied; an instance-store AMI
    has no snapshot whose copy permission could be granted."""
    from dataclasses import replace

    m = manifest("""\
  - name: g
    select: {name: "golden-*"}
    regions: [us-east-1]
    launch: [prod]
    copy: [prod]
""")
    img = replace(image(1, snapshots=("snap-1",)), **changes)
    plan = plan_for(m, listing(img), state(snapshots={(US, "snap-1"): snapshot("snap-1")}))
    assert codes(plan.findings) == [("error", code, ami(1))]
    assert plan.operations == (), "left alone: not even the launch share"
    linux = plan_for(m, listing(replace(img, usage_operation="RunInstances",
                                        root_device_type="ebs")),
                     state(snapshots={(US, "snap-1"): snapshot("snap-1")}))
    assert linux.errors == () and len(linux.operations) == 2


def test_the_reader_takes_the_billing_product_and_root_device_from_describe_images():
    from reconciler.shell.reader import parse_image

    img = parse_image({"ImageId": ami(1), "UsageOperation": "RunInstances:0010",
                       "RootDeviceType": "instance-store"}, US)
    assert (img.usage_operation, img.root_device_type) == ("RunInstances:0010",
                                                           "instance-store")


def test_a_kept_release_keeps_the_key_access_of_its_kept_copy_permissions():
    """on_release: keep leaves a released image's shares, copy permissions included: the
    consumers they name keep their key access (whole run and --image alike)."""
    tag = {"reconciler:manifest": "m"}
    kept = image(9, name="retired-9", tags=tag, snapshots=("snap-9",), encrypted=True)
    managed = image(1, snapshots=("snap-1",), encrypted=True)
    st = state({(US, ami(9)): set(), (US, ami(1)): {P_PROD}}, released=(kept,),
               snapshots={(US, s): snapshot(s, key=KEY) for s in ("snap-1", "snap-9")},
               copy={(US, "snap-9"): frozenset({P_STAGING})},
               keys={(US, KEY): key_info(P_PROD, P_STAGING)})
    m = manifest('  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n',
                 settings="on_release: keep")
    plan = plan_for(m, listing(kept, managed), st)
    assert [(o.action.value, o.resource, o.principal.label) for o in plan.operations] == []
