"""Typos caught offline: a misspelt Region, a `--region` the manifest does not name, a float
where an integer belongs, an `api_rates` action the tool never calls, a principal pasted
with spaces or as a bare organization/OU ID, a saved plan passed as the manifest. Each is one
located line, exit 1, and no AWS call. And a saved plan that a changed AWS state made stale
is told apart from one whose file was edited."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import ACCOUNT, EU, PROD, STAGING, US, Images, MotoServer, Runner, manifest_yaml

from reconciler.core.errors import InputError, StalePlanError
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Action, Operation, OpKind, Principal
from reconciler.core.plan import make_plan
from reconciler.core.planfile import check_saved_plan, to_json

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


# --------------------------------------------------------------------------- 1. Region names


@pytest.mark.parametrize(("text", "line", "fragments"), [
    ("version: 1\nsettings:\n  name: m\n  regions: [us-east-1, ap-sotheast-2]\nimages: []\n", 4,
     ["settings.regions[1]", "'ap-sotheast-2' is not an AWS Region",
      "did you mean 'ap-southeast-2'?"]),
    ("version: 1\nsettings: {name: m}\nimages:\n  - name: r\n    select: {name: x}\n"
     "    regions: [eu-wset-1]\n", 6,
     ["images[0].regions[0]", "'eu-wset-1' is not an AWS Region", "did you mean 'eu-west-1'?"]),
    ('version: 1\nsettings: {name: m}\nowners:\n  - role_arn: "arn:aws:iam::123456789012:role/x"\n'
     "    regions: [us-east-9]\nimages: []\n", 5,
     ["owners[0].regions[0]", "'us-east-9' is not an AWS Region"]),
], ids=["settings", "rule", "owner"])
def test_a_misspelt_region_is_located_with_a_suggestion(text: str, line: int,
                                                         fragments: list[str]) -> None:
    one_problem(text, line, *fragments)


@pytest.mark.parametrize("region", ["cn-north-1", "us-gov-west-1", "us-iso-east-1",
                                    "eu-isoe-west-1", "eusc-de-east-1"])
def test_regions_of_every_partition_are_accepted(region: str) -> None:
    m = parse_manifest(f"version: 1\nsettings: {{name: m, regions: [{region}]}}\nimages:\n"
                       f"  - {{name: r, select: {{name: x}}}}\n".encode(), "m.yaml")
    assert m.regions == (region,)


def test_one_manifest_stays_in_one_partition() -> None:
    one_problem("version: 1\nsettings:\n  name: m\n  regions: [us-east-1, cn-north-1]\n"
                "images: []\n", 4, "'cn-north-1' is in partition aws-cn",
                "us-east-1 in aws")


def test_a_misspelt_region_fails_validate_and_plan_without_aws(run_cli: Runner, no_aws,
                                                               tmp_path: Path) -> None:
    m = write(tmp_path, manifest_yaml(GOLDEN, regions=(US, "ap-sotheast-2"), settings="name: m"))
    for command in ("validate", "plan"):
        r = run_cli(command, m, endpoint=no_aws.url)
        assert r.code == 1, r.out + r.err
        assert r.err == (f"error: {m}:3:24: settings.regions[1]: 'ap-sotheast-2' is not an AWS "
                         "Region (did you mean 'ap-southeast-2'?)\n"), r.err
    assert no_aws.count == 0


@pytest.mark.parametrize("command", [["plan", "m.yaml"], ["export"],
                                     ["explain", PROD, "--image", "ami-12345678"]])
def test_a_misspelt_region_option_is_a_usage_error(run_cli: Runner, no_aws, tmp_path: Path,
                                                   command: list[str]) -> None:
    write(tmp_path, manifest_yaml(GOLDEN, settings="name: m"))
    r = run_cli(*command, "--region", "ap-sotheast-2", endpoint=no_aws.url, cwd=tmp_path)
    assert r.code == 1, r.out + r.err
    assert r.err == ("error: --region 'ap-sotheast-2' is not an AWS Region (did you mean "
                     "'ap-southeast-2'?)\n"), r.err
    assert no_aws.count == 0


def test_a_misspelt_region_in_a_sandbox_state_is_located(run_cli: Runner, no_aws,
                                                         tmp_path: Path) -> None:
    m = write(tmp_path, manifest_yaml(GOLDEN, settings="name: m"))
    state = write(tmp_path, f"version: 1\naccount: \"{ACCOUNT}\"\nimages:\n"
                            "  - {region: ap-sotheast-2, name: golden-1}\n", "state.yaml")
    r = run_cli("plan", m, "--sandbox", state, endpoint=no_aws.url)
    assert r.code == 1
    assert f"{state}:4:" in r.err and "'ap-sotheast-2' is not an AWS Region" in r.err \
        and "did you mean 'ap-southeast-2'?" in r.err, r.err
    assert no_aws.count == 0


# --------------------------------------------------------------------------- 2. --region


def test_a_region_the_manifest_does_not_name_is_refused_offline(run_cli: Runner, no_aws,
                                                                tmp_path: Path) -> None:
    """With `ownership: none` nothing can be released there either: the run is refused
    before any AWS call."""
    m = write(tmp_path, manifest_yaml(GOLDEN, regions=(US, EU),
                                      settings="name: m\nownership: none"))
    for command in (["plan", m], ["apply", m, "--auto-approve"],
                    ["explain", PROD, m, "--rule", "golden"]):
        r = run_cli(*command, "--region", "eu-west-2", endpoint=no_aws.url)
        assert r.code == 1, (command, r.out, r.err)
        assert r.err == (f"error: --region eu-west-2: {m} names no such Region (its Regions: "
                         "eu-west-1, us-east-1); leave it out or add it to the manifest\n"), r.err
    assert no_aws.count == 0


def test_explain_with_a_manifest_refuses_a_region_it_does_not_name(run_cli: Runner, no_aws,
                                                                   tmp_path: Path) -> None:
    m = write(tmp_path, manifest_yaml(GOLDEN, settings="name: m"))
    r = run_cli("explain", PROD, m, "--image", "ami-12345678", "--region", "eu-west-1",
                endpoint=no_aws.url)
    assert r.code == 1 and "--region eu-west-1:" in r.err and "(its Regions: us-east-1)" in r.err
    assert no_aws.count == 0


def test_a_region_outside_the_manifest_without_its_images_is_refused(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """With ownership tags, a Region dropped from the manifest may still hold images to
    release (a job sharded by Region releases them); once none is left there, the Region
    plans nothing and is refused."""
    srv, images = server
    west = images.create("golden-1", region=EU)
    m = write(tmp_path, manifest_yaml(GOLDEN, regions=(US, EU), settings="name: m"))
    assert run_cli("apply", m, "--auto-approve").code == 0
    assert images.launch(west, EU) == [{"UserId": PROD}]
    Path(m).write_text(manifest_yaml(GOLDEN, regions=(US,), settings="name: m"))
    sharded = run_cli("plan", m, "--region", EU, "--format", "json")
    assert sharded.code == 0, sharded.err
    assert json.loads(sharded.out)["ownership"]["untag"] == [west]
    assert run_cli("apply", m, "--region", EU, "--auto-approve").code == 0
    assert images.launch(west, EU) == []
    for command in (["plan", m], ["apply", m, "--auto-approve"]):
        r = run_cli(*command, "--region", EU)
        assert r.code == 1 and r.out == "", (command, r.out, r.err)
        assert r.err.splitlines()[-1] == (
            f"error: --region {EU}: {m} names no such Region (its Regions: us-east-1), and no "
            "image there carries its ownership tag reconciler:manifest=m to release; leave it "
            "out or add it to the manifest"), r.err
    r = run_cli("plan", m, "--region", "us-west-2")
    assert r.code == 1 and "--region us-west-2:" in r.err, r.err
    assert run_cli("plan", m, "--region", US).code == 0


def test_a_region_of_another_owner_is_refused_with_owner(server: tuple[MotoServer, Images],
                                                         run_cli: Runner, no_aws,
                                                         tmp_path: Path) -> None:
    a, b = "111111111111", "222222222222"
    owners = (f'owners:\n  - {{role_arn: "arn:aws:iam::{a}:role/x", regions: [us-east-1]}}\n'
              f'  - {{role_arn: "arn:aws:iam::{b}:role/x", regions: [eu-west-1]}}\n')
    text = manifest_yaml(GOLDEN, regions=(US, EU), settings="name: m\nownership: none")
    m = write(tmp_path, text.replace("principals:", owners + "principals:"))
    r = run_cli("plan", m, "--owner", a, "--region", EU, endpoint=no_aws.url)
    assert r.code == 1
    assert r.err == (f"error: --region {EU}: {m} names no such Region for owner {a} (its "
                     "Regions: us-east-1); leave it out or add it to the manifest\n"), r.err
    assert no_aws.count == 0
    r = run_cli("plan", m, "--region", EU)  # owner b has it
    assert r.code == 0, r.err


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
    for path in (ROOT / "reconciler" / "shell").rglob("*.py"):
        sent.update(re.findall(r'"(?:ec2|kms|sts)", "([A-Z][A-Za-z]+)"', path.read_text()))
    assert len(sent) >= 15, sent
    assert sent <= PACED_ACTIONS, sorted(sent - PACED_ACTIONS)


# --------------------------------------------------------------------------- 5. principals


SPACES = "has surrounding spaces; remove them"
ORG_HINT = (f"is an organization ID; write its ARN arn:aws:organizations::"
            f"<management-account-id>:organization/{ORG_ID}")
OU_HINT = (f"is an OU ID; write its ARN arn:aws:organizations::<management-account-id>:"
           f"ou/<organization-id>/{OU_ID}")
RULE = "version: 1\nsettings: {name: m}\nprincipals: {prod: \"111122223333\"}\nimages:\n" \
       "  - name: r\n    select: {name: x}\n"  # the rule's next key is on line 7


@pytest.mark.parametrize(("text", "line", "fragments"), [
    ('version: 1\nsettings: {name: m}\nprincipals:\n  prod: " 111122223333"\nimages: []\n', 4,
     ["principals.prod: ' 111122223333' " + SPACES]),
    (f'version: 1\nsettings: {{name: m}}\nprincipals:\n  org: "{ORG_ID}"\nimages: []\n', 4,
     [f"principals.org: '{ORG_ID}' {ORG_HINT}"]),
    (f'version: 1\nsettings: {{name: m}}\nprincipals:\n  ou: "{OU_ID}"\nimages: []\n', 4,
     [f"principals.ou: '{OU_ID}' {OU_HINT}"]),
    (RULE + '    launch: ["prod "]\n', 7, ["images[0].launch[0]: 'prod ' " + SPACES]),
    (RULE + f'    launch: ["{PROD}", {ORG_ID}]\n', 7,
     [f"images[0].launch[1]: '{ORG_ID}' {ORG_HINT}"]),
    (RULE + f"    launch: [{OU_ID}]\n", 7, [f"images[0].launch[0]: '{OU_ID}' {OU_HINT}"]),
    (RULE + '    copy: [" 444455556666"]\n', 7, ["images[0].copy[0]: ' 444455556666' " + SPACES]),
], ids=["principal-spaces", "principal-org-id", "principal-ou-id", "launch-spaces",
        "launch-org-id", "launch-ou-id", "copy-spaces"])
def test_a_pasted_principal_says_what_is_wrong(text: str, line: int,
                                               fragments: list[str]) -> None:
    one_problem(text, line, *fragments)


@pytest.mark.parametrize(("principal", "said"), [
    (" 111122223333", "' 111122223333' " + SPACES), (ORG_ID, f"'{ORG_ID}' {ORG_HINT}"),
    (OU_ID, f"'{OU_ID}' {OU_HINT}")])
def test_explain_says_what_is_wrong_with_a_pasted_principal(run_cli: Runner, no_aws,
                                                            principal: str, said: str) -> None:
    r = run_cli("explain", principal, "--image", "ami-12345678", endpoint=no_aws.url)
    assert r.code == 1 and r.err == f"error: {said}\n", r.err
    assert no_aws.count == 0


def test_a_names_file_says_what_is_wrong_with_a_pasted_principal() -> None:
    from reconciler.core.names import parse_names

    with pytest.raises(InputError) as info:
        parse_names(f'prod: " {PROD}"\norg: {ORG_ID}\n'.encode(), "names.yaml")
    assert [str(p) for p in info.value.problems] == [
        f"names.yaml:1:7: prod: ' {PROD}' {SPACES}", f"names.yaml:2:6: org: '{ORG_ID}' {ORG_HINT}"]


# --------------------------------------------------------------------------- 6. saved plans


def _saved_plan() -> str:
    op = Operation(Action.ADD, OpKind.LAUNCH, US, "ami-12345678", Principal.account(PROD),
                   ("golden",))
    return to_json(make_plan(manifest_sha256="a" * 64, caller_account=ACCOUNT, operations=[op],
                             findings=[], images=1, unchanged=0, state={}, regions=[US]))


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["apply", "--auto-approve"]])
def test_a_saved_plan_given_as_the_manifest_says_so(run_cli: Runner, no_aws, tmp_path: Path,
                                                    command: list[str]) -> None:
    plan_file = write(tmp_path, _saved_plan(), "plan.json")
    r = run_cli(command[0], plan_file, *command[1:], endpoint=no_aws.url)
    assert r.code == 1
    assert r.err == (f"error: {plan_file}:1:1: {plan_file} is a saved plan, not a manifest: "
                     f"apply it with `reconcile apply MANIFEST --plan {plan_file}`\n"), r.err
    assert no_aws.count == 0


def test_a_big_saved_plan_given_as_the_manifest_says_so(tmp_path: Path) -> None:
    """A plan larger than a manifest may be (4 MiB) is still recognised, not refused by size."""
    from reconciler.shell.inputs import load_manifest

    doc = json.loads(_saved_plan())
    doc["findings"] = [{"severity": "info", "code": "no-match", "region": US, "resource": "r",
                        "message": "x" * 1000}] * 5000
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(InputError) as info:
        load_manifest(str(path))
    assert [p.message for p in info.value.problems] == [
        f"{path} is a saved plan, not a manifest: apply it with `reconcile apply MANIFEST "
        f"--plan {path}`"]


def test_a_reformatted_saved_plan_is_recognised() -> None:
    doc = json.loads(_saved_plan())
    raw = json.dumps(dict(reversed(list(doc.items())))).encode()
    with pytest.raises(InputError) as info:
        parse_manifest(raw, "p.json")
    assert [p.message for p in info.value.problems] == [
        "p.json is a saved plan, not a manifest: apply it with `reconcile apply MANIFEST "
        "--plan p.json`"]


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
