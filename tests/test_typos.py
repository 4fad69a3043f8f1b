"""Typos caught offline: a misspelt Region, a `--region` the manifest does not name, a float
where an integer belongs, an `api_rates` action the tool never calls, a principal pasted
with spaces or as a bare organization/OU ID, a saved plan passed as the manifest. Each is one
located line, exit 1, and no AWS call. And a saved plan that a changed AWS state made stale
is told apart from one whose file was edited."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import ACCOUNT, PROD, STAGING, US, Images, MotoServer, Runner, manifest_yaml

from reconciler.core.errors import InputError, StalePlanError
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Action, Operation, OpKind, Principal
from reconciler.core.plan import check_saved_plan, make_plan

ORG_ID, OU_ID = "o-a1b2c3d4e5", "ou-ab12-cdef3456"
GOLDEN = '- {name: golden, select: {name: "golden-*"}, launch: [prod]}'


def problems_of(text: str) -> list[str]:
    """Every problem of a manifest, as its one-line ``FILE:LINE:COL: message``."""
    with pytest.raises(InputError) as info:
        parse_manifest(textwrap.dedent(text).encode(), "m.yaml")
    lines = [str(p) for p in info.value.problems]
    assert all("\n" not in line for line in lines), lines
    return lines


def one_problem(text: str, line: int, *fragments: str) -> str:
    found = [p for p in problems_of(text) if p.startswith(f"m.yaml:{line}:")]
    assert len(found) == 1, problems_of(text)
    for fragment in fragments:
        assert fragment in found[0], (fragment, found[0])
    return found[0]


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- 3. integers


INTEGERS = {
    "latest": ("version: 1\nsettings: {name: m}\nimages:\n  - name: r\n"
               "    select: {name: x, latest: 2.0}\n", 5, "images[0].select.latest: 2.0"),
    "max_age_days": ("version: 1\nsettings: {name: m}\nimages:\n  - name: r\n"
                     "    select: {name: x, max_age_days: 30.0}\n", 5,
                     "images[0].select.max_age_days: 30.0"),
    "max_removals": ("version: 1\nsettings: {name: m, max_removals: 2.0}\nimages: []\n", 2,
                     "settings.max_removals: 2.0"),
    "share_quota": ("version: 1\nsettings: {name: m, share_quota: 10.0}\nimages: []\n", 2,
                    "settings.share_quota: 10.0"),
    "public_quota": ("version: 1\nsettings: {name: m, public_quota: 5.0}\nimages: []\n", 2,
                     "settings.public_quota: 5.0"),
    "burst": ("version: 1\nsettings:\n  name: m\n  api_rates:\n    ModifyImageAttribute: "
              "{burst: 200.0, per_second: 10}\nimages: []\n", 5,
              "settings.api_rates.ModifyImageAttribute.burst: 200.0"),
}


@pytest.mark.parametrize("field", sorted(INTEGERS))
def test_an_integer_field_refuses_a_float(field: str) -> None:
    text, line, where = INTEGERS[field]
    whole = where.rsplit(": ", 1)[1].split(".")[0]
    one_problem(text, line, where, f"is not an integer; write {whole}")


def test_version_1_is_the_integer_1() -> None:
    one_problem("version: 1.0\nsettings: {name: m}\nimages: []\n", 1,
                "version: 1.0 must be 1 (the only manifest format version)")


@pytest.mark.parametrize(("value", "said"), [("2.5", "2.5 is not an integer"),
                                             ("true", "expected integer, got true"),
                                             (".inf", "is not an integer")])
def test_latest_refuses_fractions_and_booleans(value: str, said: str) -> None:
    one_problem(f"version: 1\nsettings: {{name: m}}\nimages:\n  - name: r\n"
                f"    select: {{name: x, latest: {value}}}\n", 5, said)


def test_a_float_latest_fails_plan_without_a_crash_or_aws(run_cli: Runner, no_aws,
                                                          tmp_path: Path) -> None:
    m = write(tmp_path, manifest_yaml(
        '- {name: golden, select: {name: "golden-*", latest: 2.0}, launch: [prod]}',
        settings="name: m"))
    r = run_cli("plan", m, endpoint=no_aws.url)
    assert r.code == 1 and "internal error" not in r.err, r.err
    assert r.err.startswith(f"error: {m}:12:") and "is not an integer; write 2" in r.err, r.err
    assert no_aws.count == 0


# --------------------------------------------------------------------------- 4. api_rates


def test_an_api_rates_action_the_tool_never_calls_is_refused_with_a_suggestion() -> None:
    one_problem("version: 1\nsettings:\n  name: m\n  api_rates:\n"
                "    ModifyImageAtribute: {burst: 200, per_second: 10}\nimages: []\n", 5,
                "settings.api_rates: 'ModifyImageAtribute' is not an API action reconcile "
                "calls", "did you mean 'ModifyImageAttribute'?")
    found = one_problem("version: 1\nsettings:\n  name: m\n  api_rates:\n"
                        "    RunInstances: {burst: 200, per_second: 10}\nimages: []\n", 5,
                        "'RunInstances' is not an API action reconcile calls")
    assert "ModifySnapshotAttribute" in found  # it lists them when nothing is close


def test_the_schema_lists_exactly_the_paced_actions() -> None:
    """The editor's completion (the schema) and the check say the same, and every action
    the shell sends is one of them."""
    import re

    from helpers import ROOT

    from reconciler.core.pacing import PACED_ACTIONS
    from reconciler.core.schema import load_schema

    rates = load_schema("manifest")["properties"]["settings"]["properties"]["api_rates"]
    assert rates["propertyNames"]["enum"] == sorted(PACED_ACTIONS)
    sent = set()
    for path in (ROOT / "reconciler" / "shell").glob("*.py"):
        sent.update(re.findall(r'"(?:ec2|kms|sts)", "([A-Z][A-Za-z]+)"', path.read_text()))
    assert len(sent) >= 15, sent
    assert sent <= PACED_ACTIONS, sorted(sent - PACED_ACTIONS)


# --------------------------------------------------------------------------- 7. stale vs tampered


def _pair() -> tuple[object, object]:
    ops = [Operation(Action.ADD, OpKind.LAUNCH, US, "ami-12345678", Principal.account(PROD), ("g",)),
           Operation(Action.ADD, OpKind.LAUNCH, US, "ami-12345678", Principal.account(STAGING),
                     ("g",))]
    state = {(US, "ami-12345678", "launch"): []}
    saved = make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=ops,
                      findings=[], images=1, unchanged=0, state=state, regions=[US])
    return saved, ops


def test_a_plan_made_stale_by_aws_is_not_called_tampered() -> None:
    """Someone granted prod by hand since the plan: the saved add is no longer needed."""
    saved, ops = _pair()
    fresh = make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=ops[1:],
                      findings=[], images=1, unchanged=1, regions=[US],
                      state={(US, "ami-12345678", "launch"): [PROD]})
    with pytest.raises(StalePlanError) as err:
        check_saved_plan(saved, fresh, "a" * 64, "m.yaml")
    said = str(err.value)
    assert said.startswith("saved plan is stale: the current state of the resources it "
                           "consulted changed since the plan was made"), said
    assert "tampered" not in said and "foreign" not in said and "run plan again" in said


@pytest.mark.parametrize("edit", ["extra", "dropped", "summary"])
def test_an_edited_plan_over_an_unchanged_state_is_called_tampered(edit: str) -> None:
    from reconciler.core.plan import Summary

    saved, ops = _pair()
    fresh = saved
    edited = {"extra": replace(saved, operations=(*saved.operations, Operation(
                  Action.REMOVE, OpKind.LAUNCH, US, "ami-12345678", Principal.account("999988887777")))),
              "dropped": replace(saved, operations=saved.operations[:1]),
              "summary": replace(saved, summary=Summary(add=0, remove=0, images=1))}[edit]
    with pytest.raises(StalePlanError) as err:
        check_saved_plan(edited, fresh, "a" * 64, "m.yaml")
    said = str(err.value)
    assert said.startswith("saved plan was edited (tampered):"), said
    assert "stale" not in said and "state it was made from is unchanged" in said, said


def test_apply_of_a_plan_aws_made_stale_says_stale(server: tuple[MotoServer, Images],
                                                   run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    golden = images.create("golden-1")
    m = write(tmp_path, manifest_yaml(GOLDEN, settings="name: m"))
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", m, "--out", str(plan_file)).code == 0
    srv.client("ec2").modify_image_attribute(ImageId=golden, Attribute="launchPermission",
                                             LaunchPermission={"Add": [{"UserId": PROD}]})
    srv.client("ec2").create_tags(Resources=[golden], Tags=[{"Key": "reconciler:manifest",
                                                             "Value": "m"}])
    r = run_cli("apply", m, "--plan", str(plan_file))
    assert r.code == 1
    assert "saved plan is stale" in r.err and "tampered" not in r.err \
        and "foreign" not in r.err, r.err
