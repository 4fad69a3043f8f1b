"""Output nobody can forge (SPEC §7d; README, "Guarantees").

Anyone with ``ec2:CreateTags``, ``ec2:RegisterImage`` or ``kms:PutKeyPolicy`` in the owner
account, and anyone who can open a pull request against the manifest, chooses strings that
``reconcile`` prints: image names, tag keys and values, key-policy Sids, rule names, globs.
Printed, such a string must not be able to start a GitHub workflow command (a line that
begins with ``::`` after leading blanks, or ``##[`` anywhere: actions/runner
``ActionCommand.TryParseV2`` / ``TryParse``), move the terminal's cursor (ESC, CR), break a
line, close a Markdown code block, or render a live mention, link, image, heading or HTML
in a pull-request comment. Each test plants such strings in one field and reads every
format that prints it.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ACCOUNT, OU, PROD, STAGING, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core import neutral
from reconciler.core.manifest import parse_manifest
from reconciler.core.model import Action, Finding, Operation, OpKind, Principal, RegionKey, Severity
from reconciler.core.plan import Display, Ownership, Planned, make_plan
from reconciler.core.render import (
    MARKDOWN_LIMIT,
    key_policy_details,
    render_markdown,
    render_text,
)

FORGED = "x\n::error file=README.md,line=1::forged annotation\n```\n##[error]legacy forged"
ESCAPES = "\x1b[2J\x1b[31mred\r\x07\x9b31m\u2028\u202etxt"
MARKDOWN = "golden @octocat [docs](/evil) ![i](https://evil.example/i.png) <b>x</b> | # h"
SHORT = "@octocat [docs](/evil) https://evil.example <b>x</b>\n::error::f\n```\n##[error]f"


def _commands(text: str) -> list[str]:
    """Lines the GitHub runner would take for a workflow command."""
    return [line for line in text.splitlines()
            if line.lstrip().startswith("::") or "##[" in line]


def _assert_inert_text(text: str) -> None:
    assert _commands(text) == [], _commands(text)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", text), \
        repr(text)
    assert not any(line.lstrip().startswith("```") for line in text.splitlines())


def _assert_inert_markdown(md: str) -> None:
    """Code blocks show values as they are (GitHub renders no mention, link or HTML
    there): only our own fences may open or close one. Everywhere else nothing is live."""
    prose, in_code = [], False
    for line in md.splitlines():
        if line in ("```diff", "```"):
            in_code = not in_code
            continue
        if not in_code:
            prose.append(line)
    assert not in_code, "every code block is closed"
    _assert_inert_text("\n".join(line for line in md.splitlines()
                                 if line not in ("```diff", "```")))
    text = "\n".join(prose)
    # no live mention, link, image or HTML from a value
    assert "@octocat" not in text
    assert "[docs](/evil)" not in text and "](https://evil" not in text
    assert "<b>" not in text
    assert "https://evil" not in text  # a bare URL autolinks


def _state(tmp_path: Path, images: list[dict[str, Any]],
           keys: list[dict[str, Any]] | None = None) -> str:
    path = tmp_path / "state.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "account": ACCOUNT, "keys": keys or [],
                                    "images": images}, allow_unicode=False))
    return str(path)


def _manifest(tmp_path: Path, rules: str, name: str = "amis") -> str:
    path = tmp_path / "amis.yaml"
    path.write_text(f'version: 1\nsettings: {{name: {name}, regions: [us-east-1]}}\n'
                    f'principals: {{prod: "{PROD}", staging: "{STAGING}"}}\nimages:\n{rules}')
    return str(path)


# --------------------------------------------------------------------------- the function


@pytest.mark.parametrize("value", [FORGED, ESCAPES, MARKDOWN, "::warning::x", "  ::x::y",
                                   "a##[group]b", "\t", "\x00", "\ufeff", "\u200bx", "\ud800"])
def test_neutral_text_is_one_inert_line(value: str) -> None:
    out = neutral.text(value)
    assert "\n" not in out and "\r" not in out
    out.encode()  # a lone surrogate (JSON "\ud800" from a proxy) could not be written
    _assert_inert_text(out)


def test_neutral_text_keeps_ordinary_values_as_they_are() -> None:
    for value in ("golden-al2023-2026.11.1", "arn:aws:kms:us-east-1:123456789012:key/1",
                  "a: b", "ünïcödé name", "x::y", "#1 build", "50% [rc]"):
        assert neutral.text(value) == value


def test_neutral_text_shows_what_it_escaped() -> None:
    assert neutral.text("a\nb\rc\td\x1b[0m") == "a\\nb\\rc\\td\\x1b[0m"
    assert neutral.text("\u202egnp.exe") == "\\u202egnp.exe"
    assert neutral.text("::error::x") == "\\x3a:error::x"
    assert neutral.text("##[error]x") == "#\\x23[error]x"


def test_neutral_markdown_renders_as_the_text_it_was() -> None:
    md = neutral.markdown(MARKDOWN)
    _assert_inert_markdown(md)
    assert "\\[docs\\]\\(/evil\\)" in md and "&lt;b&gt;" in md or "\\<b\\>" in md


# --------------------------------------------------------------------------- plan and apply


def test_a_tag_value_cannot_forge_apply_output(tmp_path: Path) -> None:
    """warning[other-manifest] prints the other manifest's tag value (anyone with
    ec2:CreateTags sets it; values may hold newlines)."""
    state = _state(tmp_path, [{"id": "ami-0a11c0de000000001", "region": "us-east-1",
                               "name": "golden-1", "tags": {"reconciler:manifest": FORGED}}])
    m = _manifest(tmp_path, '  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n')
    for args in (("plan", m), ("apply", m, "--auto-approve")):
        r = run_main(*args, "--sandbox", state, "--no-color")
        assert r.code == 0, r.out + r.err
        assert "other-manifest" in r.out
        _assert_inert_text(r.out + r.err)
    r = run_main("plan", m, "--sandbox", state, "--format", "markdown")
    _assert_inert_markdown(r.out)
    r = run_main("plan", m, "--sandbox", state, "--format", "json")
    assert "##[" not in r.out and _commands(r.out) == []
    [f] = [f for f in json.loads(r.out)["findings"] if f["code"] == "other-manifest"]
    assert FORGED in f["message"], "JSON keeps the value exactly (escaped by JSON itself)"


def test_a_deny_sid_cannot_reach_the_terminal(tmp_path: Path) -> None:
    """A key-policy Sid with raw ESC sequences, printed above "Apply these changes?"."""
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": ESCAPES + FORGED, "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt",
         "Resource": "*", "Condition": {"StringEquals": {"aws:PrincipalAccount": "1"}}}]}
    state = _state(tmp_path, [{"id": "ami-0e1c0de0000000001", "region": "us-east-1",
                               "name": "golden-enc", "encrypted_with": "k", "launch": [PROD]}],
                   [{"name": "k", "region": "us-east-1", "policy": policy}])
    m = _manifest(tmp_path, '  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n')
    r = run_main("plan", m, "--sandbox", state, "--no-color", "-v")
    assert "kms-deny-statement" in r.out, r.out + r.err
    _assert_inert_text(r.out + r.err)
    r = run_main("plan", m, "--sandbox", state, "--color")
    sgr = re.sub(r"\x1b\[[0-9;]*m", "", r.out)  # our own colours are the only escapes
    _assert_inert_text(sgr)
    r = run_main("explain", PROD, "--image", "ami-0e1c0de0000000001", "--sandbox", state)
    _assert_inert_text(r.out + r.err)
    r = run_main("plan", m, "--sandbox", state, "--format", "markdown")
    _assert_inert_markdown(r.out)


def test_a_glob_with_a_carriage_return_prints_escaped(tmp_path: Path) -> None:
    """The lifecycle reason prints the rule's glob (manifest text from a pull request)."""
    state = _state(tmp_path, [
        {"id": f"ami-0a11c0de00000000{n}", "region": "us-east-1", "name": f"golden-{n}",
         "created": f"2026-11-0{n}", "launch": [PROD]} for n in (1, 2)])
    m = _manifest(tmp_path, '  - {name: g, select: {name: "golden-[\\r0-9]*", latest: 1},'
                            ' launch: [prod]}\n'
                            '  - {name: all, select: {name: "golden-*"}, launch: [staging]}\n')
    r = run_main("plan", m, "--sandbox", state, "--no-color")
    assert r.code == 0, r.err
    assert "it is not among the newest 1 golden-[" in r.out, "the reason shows the glob"
    _assert_inert_text(r.out + r.err)
    r = run_main("plan", m, "--sandbox", state, "--format", "markdown")
    _assert_inert_markdown(r.out)


def test_an_image_name_renders_no_live_markdown(tmp_path: Path) -> None:
    state = _state(tmp_path, [{"id": "ami-0a11c0de000000001", "region": "us-east-1",
                               "name": SHORT, "tags": {"team": "golden"}}])
    m = _manifest(tmp_path, '  - {name: g, select: {tags: {team: golden}}, launch: [prod]}\n')
    r = run_main("plan", m, "--sandbox", state, "--format", "markdown")
    assert r.code == 0, r.err
    _assert_inert_markdown(r.out)
    r = run_main("plan", m, "--sandbox", state, "--no-color")
    _assert_inert_text(r.out + r.err)
    r = run_main("explain", PROD, "--image", "ami-0a11c0de000000001", m, "--sandbox", state)
    _assert_inert_text(r.out + r.err)
    r = run_main("export", "--sandbox", state)
    _assert_inert_text(r.out + r.err)


def test_a_manifest_name_renders_no_live_markdown(tmp_path: Path) -> None:
    """settings.name may hold spaces and '@' (a tag value): the ownership section prints it."""
    state = _state(tmp_path, [{"id": "ami-0a11c0de000000001", "region": "us-east-1",
                               "name": "golden-1"}])
    m = _manifest(tmp_path, '  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n',
                  name='"golden @octocat"')
    r = run_main("plan", m, "--sandbox", state, "--format", "markdown")
    assert r.code == 0, r.err
    assert "reconciler:manifest=golden" in r.out
    _assert_inert_markdown(r.out)


def test_aws_error_messages_are_neutralised(tmp_path: Path) -> None:
    import click.testing
    from helpers import run_main as _  # noqa: F401  (the CLI module is imported)

    from reconciler.cli import _print_error

    with click.testing.CliRunner().isolation() as (_out, err, _e):
        _print_error("ec2 DescribeImages: " + FORGED + ESCAPES)
    text = err.getvalue().decode()
    assert len(text.splitlines()) == 1
    _assert_inert_text(text)


# --------------------------------------------------------------------------- errors first


def _big_plan(images: int, errors: int = 1, warnings: int = 0) -> Planned:
    ops = [Operation(Action.REMOVE, OpKind.LAUNCH, "us-east-1", f"ami-0a11c0de{i:09x}",
                     Principal.account(p)) for i in range(images) for p in (PROD, STAGING)]
    findings = [Finding(Severity.ERROR, "max-removals", "", "",
                        f"the plan removes {len(ops)} permissions, more than 25")]
    findings += [Finding(Severity.ERROR, "snapshot-not-found", "us-east-1",
                         f"ami-0b11c0de{i:09x}", "backing snapshot snap-1 was not found " * 3)
                 for i in range(errors - 1)]
    findings += [Finding(Severity.WARNING, "no-match", "us-east-1", f"rule-{i}",
                         "rule matches no image owned by the caller in us-east-1")
                 for i in range(warnings)]
    return Planned(make_plan(manifest_sha256="0" * 64, caller_account=ACCOUNT, operations=ops,
                             findings=findings, images=images, unchanged=0, state={}),
                   display=Display(image_names={o.resource: "golden-" + "x" * 40 for o in ops}))


def test_errors_come_before_the_diff_and_survive_truncation() -> None:
    """800 images: the comment used to be cut after the diff, dropping max-removals."""
    md = render_markdown(_big_plan(800, warnings=300), None)
    assert "max-removals" in md, "the error that failed the plan reaches the comment"
    assert len(md.encode()) <= MARKDOWN_LIMIT
    assert md.index("max-removals") < md.index("<summary>Changes</summary>")
    assert "Output truncated" in md
    assert md.count("```") % 2 == 0 and md.count("<details>") == md.count("</details>")
    text = render_text(_big_plan(3), None)
    assert text.index("error[max-removals]") < text.index("\nus-east-1\n")
    assert "error[max-removals]: the plan removes" in text  # no stray " :" without a Region


def test_errors_that_do_not_fit_are_counted_by_code() -> None:
    md = render_markdown(_big_plan(10, errors=2000, warnings=50), None)
    assert len(md.encode()) <= MARKDOWN_LIMIT
    assert "`max-removals`" in md
    assert re.search(r"- … \d+ more errors \(`snapshot-not-found` ×\d+\) and 50 warnings not "
                     r"shown; the job log lists them all", md), md[-600:]


def test_errors_also_go_to_stderr_in_every_format(tmp_path: Path) -> None:
    state = _state(tmp_path, [{"id": f"ami-0a11c0de00000000{n}", "region": "us-east-1",
                               "name": f"golden-{n}", "launch": [PROD, STAGING]}
                              for n in (1, 2)])
    m = _manifest(tmp_path, '  - {name: g, select: {name: "golden-*"}, launch: [prod]}\n')
    Path(m).write_text(Path(m).read_text().replace("regions:", "max_removals: 1, regions:"))
    for fmt in ("text", "json", "markdown", "sarif"):
        r = run_main("plan", m, "--sandbox", state, "--format", fmt)
        assert r.code == 1, r.err
        assert "error: [max-removals]: the plan removes 2" in r.err, f"{fmt}: also on stderr"


# --------------------------------------------------------------------------- every slot, any value

HOSTILE = st.text(st.sampled_from(list("ab:#[]()@`*_|<>!~\\ \n\r\t\x1b\x07\x9b\u2028\u202e"
                                       "\u200b\ufeff")) | st.characters(), max_size=24)


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE, alias=HOSTILE, rule=HOSTILE, reason=HOSTILE, message=HOSTILE,
       resource=HOSTILE, tag=HOSTILE, principal_name=HOSTILE, sid=HOSTILE)
def test_no_value_in_any_slot_of_a_plan_can_forge_output(
        name: str, alias: str, rule: str, reason: str, message: str, resource: str, tag: str,
        principal_name: str, sid: str) -> None:
    """Image and key names, rule names, lifecycle reasons, finding messages and resources,
    the ownership name, principal names and the tool's own statements (which anyone with
    kms:PutKeyPolicy can edit) each hold a hostile string; no rendering lets it act, the
    rule's group heading, the roll-ups (the plan is big enough for them) and a key-policy
    change shown once for several keys included."""
    image, key = "ami-0a11c0de000000001", "arn:aws:kms:us-east-1:123456789012:key/k"
    prod = Principal.account(PROD)
    ou = Principal.parse_literal(OU)
    assert ou is not None
    ops = [Operation(Action.ADD, OpKind.LAUNCH, "us-east-1", image, prod, (rule,)),
           Operation(Action.ADD, OpKind.LAUNCH, "us-east-1", image, ou, (rule,)),
           Operation(Action.REMOVE, OpKind.LAUNCH, "us-east-1", image,
                     Principal.account(STAGING)),
           Operation(Action.ADD, OpKind.KMS, "us-east-1", key, prod, (rule,)),
           *(Operation(Action.ADD, OpKind.KMS, "us-east-1", f"{key}{i}", prod, (rule,))
             for i in range(10))]
    findings = [Finding(sev, "other-manifest", "us-east-1", resource, message)
                for sev in Severity]
    owned = {"Sid": "AmiShareReconcilerAccounts", "Effect": "Allow", "Principal": {"AWS": [sid]},
             "Action": ["kms:Decrypt"], "Resource": "*", "Condition": {sid: {sid: sid}}}
    plan = Planned(
        make_plan(manifest_sha256="0" * 64, caller_account=ACCOUNT, operations=ops,
                  findings=findings, images=1, unchanged=0, state={},
                  ownership=Ownership(tag, (RegionKey("us-east-1", image),))),
        display=Display(image_names={image: name}, resource_images={key: alias},
                        key_policies={k: ({"Statement": []}, {"Statement": [owned]})
                                      for k in (key, f"{key}0", f"{key}1")},
                        image_rules={("us-east-1", image): (rule, rule + "2")},
                        withheld={("us-east-1", image, Principal.account(STAGING)): reason}))
    manifest = replace(parse_manifest(b"version: 1\nsettings: {name: m}\nimages: []\n", "m.yaml"),
                       principals=((principal_name, prod), (principal_name + "2", ou)))
    _assert_inert_text(render_text(plan, manifest, details=key_policy_details(plan)))
    md = render_markdown(plan, manifest)
    _assert_inert_text("\n".join(line for line in md.splitlines()
                                 if line not in ("```diff", "```")))
    assert all(line in ("```diff", "```") or not line.lstrip().startswith("```")
               for line in md.splitlines())
    json_text = plan.to_json()
    assert _commands(json_text) == []
    assert not re.search(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u200b\ufeff]", json_text)
    assert json.loads(json_text)["findings"][0]["message"] == message
