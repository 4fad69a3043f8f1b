"""The plan document (reconciler.core.plan): its JSON contract and schema, the order of
operations and findings, the state digest, reading a saved plan back (refusing a tampered
one) and the check that a saved plan is the plan a fresh run computes. Pure.
"""

from __future__ import annotations

import json
import random
import re

import pytest
from builders import (
    KEY,
    P_DEV,
    P_HAND,
    P_ORG,
    P_OU,
    P_PROD,
    P_STAGING,
    PUBLIC,
    ami,
    codes,
    full_plan,
    image,
    launch_ops,
    listing,
    manifest,
    plan_for,
    state,
)
from helpers import ACCOUNT, DEV, EU, HAND, PROD, STAGING, US
from jsonschema import Draft202012Validator

from reconciler.core.errors import InputError
from reconciler.core.model import Action, Operation, OpKind, Principal, Severity
from reconciler.core.plan import Ownership, Plan, make_plan, state_digest
from reconciler.core.planfile import plan_from_dict, to_dict, to_json
from reconciler.core.schema import load_schema


def op(action: Action, kind: OpKind, region: str, resource: str,
       principal: Principal) -> Operation:
    return Operation(action, kind, region, resource, principal, ())


def test_plan_to_dict_validates_against_schema():
    _, plan = full_plan()
    doc = to_dict(plan.plan, plan.display)
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
    return plan_for(m, listing(image(1), image(2)),
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
    assert back == plan.plan
    # the names beside IDs are for reading only: a saved plan is rebuilt without them
    names = {"resource_name", "principal_name"}
    assert any(names & op.keys() for op in doc["operations"])
    for op in doc["operations"]:
        for key in names:
            op.pop(key, None)
    assert to_dict(back) == doc
    assert json.loads(to_json(back)) == doc


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



# --------------------------------------------------------------------------- the saved-plan check


def _saved_pair() -> tuple[Plan, Plan]:
    """A saved plan and the fresh plan computed from the same manifest and state."""
    ops = [op(Action.ADD, OpKind.LAUNCH, US, ami(1), P_PROD),
           op(Action.REMOVE, OpKind.LAUNCH, US, ami(2), P_HAND)]
    consulted = {(US, ami(1), "launch"): ["111122223333"]}
    made = make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=ops,
                     findings=[], images=2, unchanged=0, state=consulted, regions=[US],
                     ownership=Ownership("amis", tag=((US, ami(1)),)))
    return made, make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=ops,
                           findings=[], images=2, unchanged=0, state=consulted, regions=[US],
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
    from reconciler.core.planfile import check_saved_plan

    saved, fresh = _saved_pair()
    check_saved_plan(saved, fresh, saved.manifest_sha256, "amis.yaml")  # the same: accepted
    ops = {"twice": (saved.operations[0], *saved.operations),
           "extra": (*saved.operations, op(Action.ADD, OpKind.LAUNCH, US, ami(3), P_STAGING)),
           "missing": saved.operations[:1]}
    if change.get("operations") in ops:
        change = {"operations": ops[change["operations"]]}
    with pytest.raises(StalePlanError) as err:
        check_saved_plan(replace(saved, **change), fresh, fresh.manifest_sha256, "amis.yaml")
    assert refusal in str(err.value)

