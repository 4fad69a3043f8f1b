"""Renderings of a plan (reconciler.core.render, core.review): text for a terminal, with colour
only when asked, and Markdown for a pull-request comment, bounded; a big plan grouped by rule,
rolled up, with short principal IDs and one diff per distinct key-policy change. Pure: the
plans are builders.full_plan and a 200-change plan built here; one test at the end runs
``reconcile plan`` in-process against the moto server.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace
from pathlib import Path

from builders import (
    KEY,
    P_HAND,
    P_OU,
    P_PROD,
    P_STAGING,
    PLAN_IMAGES,
    ami,
    base_state,
    full_plan,
    image,
    key_policy,
    listing,
    manifest,
    plan_for,
    snapshot,
    state,
)
from helpers import (
    ACCOUNT,
    DEV,
    EU,
    HAND,
    ORG,
    OU,
    PROD,
    STAGING,
    US,
    Images,
    MotoServer,
    Runner,
    manifest_yaml,
)

from reconciler.core.kms import KeyInfo
from reconciler.core.manifest import Manifest
from reconciler.core.model import Action, Operation, OpKind
from reconciler.core.plan import Planned, make_plan
from reconciler.core.render import (
    key_policy_details,
    render_markdown,
    render_text,
    summary_line,
)
from reconciler.core.review import ROLLUP_ABOVE, shortened
from reconciler.shell.terminal import ansi

ANSI = re.compile(r"\x1b\[")


def test_render_text_names_images_principals_and_summary():
    m, plan = full_plan()
    text = render_text(plan, m)
    assert not ANSI.search(text)
    # grouped by Region, then rule, then image with its name
    assert text.index("\neu-west-1\n  rule pinned\n") < text.index("\nus-east-1\n  rule golden\n")
    for line in [f"\n    ~ {ami(1)} (golden-1)", f"\n    ~ {ami(9)} (pinned-9)",
                 f"\n    ~ {ami(0xE)} (enc-1)",
                 "\n    ~ snap-0000000000000009a (snapshot of " + ami(9) + ")",
                 f"\n  KMS keys\n    ~ {KEY} (alias/golden)"]:
        assert line + "\n" in text, line
    # principal manifest names beside IDs, with the rule or "not declared"
    assert re.search(rf"\+ launch {STAGING} \(staging\)\s+rule golden\n", text)
    assert re.search(rf"- launch {HAND}\s+not declared\n", text)
    assert re.search(rf"\+ copy   {PROD} \(prod\)\s+rule pinned\n", text)
    assert re.search(r"\+ launch ou-ab12-cdef3456 \(ou\)\s+rule enc\n", text)
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
    assert md.count("```") == 2 * (1 + len(plan.display.key_policies))
    assert md.count("<details><summary>Key policy change: ") == len(plan.display.key_policies) >= 1
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
    big = Planned(make_plan(manifest_sha256=plan.plan.manifest_sha256, caller_account=ACCOUNT,
                            operations=many, findings=plan.findings, images=300, unchanged=0,
                            state={}))
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
        imgs = list(listing(*PLAN_IMAGES, image(4)).items())
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



# --------------------------------------------------------------------------- a big plan

BIG_RULES = """\
  - {name: eks, select: {name: "eks-*"}, regions: [us-east-1], launch: [prod, staging, ou]}
  - {name: al2023, select: {name: "al2023-*"}, launch: [prod, org]}
  - {name: enc, select: {name: "enc-*"}, regions: [us-east-1], launch: [prod], copy: [prod]}
  - {name: pinned, select: {ids: [%s]}, regions: [us-east-1], launch: [dev]}
"""
ENC_KEYS = tuple(f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0000000{i}-0000-0000-0000-000000000000"
                 for i in range(4))


def big_plan() -> tuple[Manifest, Planned]:
    """200 changes in two Regions, whose image IDs interleave the families: 30 EKS builds
    (5 shared by hand with an undeclared account), 20 + 20 Amazon Linux builds (two with
    the same name, one pinned by a second rule), 4 encrypted builds each on its own key
    (the same key-policy change four times; copied by prod) and 12 released builds."""
    eks = [image(3 * k, name=f"eks-{30 - k:03d}") for k in range(1, 31)]
    al_us = [image(3 * k + 1, name=f"al2023-{20 - k:03d}",
                   creation_date=f"2026-01-{k:02d}T00:00:00.000Z") for k in range(1, 21)]
    # two builds named alike (several owner accounts): the older one first, whatever its ID
    al_us[0] = image(al_us[0].image_id, name="al2023-dup", creation_date="2026-03-01T00:00:00Z")
    al_us[1] = image(al_us[1].image_id, name="al2023-dup", creation_date="2026-02-01T00:00:00Z")
    al_eu = [image(3 * k + 2, EU, name=f"al2023-{20 - k:03d}") for k in range(1, 21)]
    enc = [image(0xE00 + i, name=f"enc-{i}", snapshots=(f"snap-e{i}",), encrypted=True)
           for i in range(4)]
    released = [image(0xF00 + i, name=f"retired-{i:02d}", tags={"reconciler:manifest": "m"})
                for i in range(12)]
    launch = {**{(US, i.image_id): {P_HAND} if n < 5 else set() for n, i in enumerate(eks)},
              **{i.key: set() for i in (*al_us, *al_eu, *enc)},
              **{i.key: {P_STAGING} for i in released}}
    keys = {(US, arn): KeyInfo(arn, US, arn, ACCOUNT, "CUSTOMER", "Enabled", f"alias/enc-{i}",
                               json.dumps(key_policy()))
            for i, arn in enumerate(ENC_KEYS)}
    st = state(launch, released=tuple(released), keys=keys,
               snapshots={(US, f"snap-e{i}"): snapshot(f"snap-e{i}", key=arn)
                          for i, arn in enumerate(ENC_KEYS)})
    m = manifest(BIG_RULES % al_us[5].image_id, settings="max_removals: 100")
    plan = plan_for(m, listing(*eks, *al_us, *al_eu, *enc, *released), st)
    return m, plan


def _region_lines(text: str, region: str) -> list[str]:
    """The lines under ``region``'s heading in the text plan."""
    return ("\n" + text).split(f"\n{region}\n", 1)[1].split("\n\n", 1)[0].splitlines()


def _groups(lines: list[str]) -> dict[str, list[str]]:
    """Each group's label -> the resource lines under it, in order (stripped)."""
    out: dict[str, list[str]] = {}
    for line in lines:
        if not line.startswith("   "):
            out[line.strip()] = current = []
        elif line.startswith("    ~ "):
            current.append(line.strip())
    return out


def test_a_big_plan_is_grouped_by_rule_then_image_name_then_date():
    m, plan = big_plan()
    assert len(plan.operations) == 200
    text = render_text(plan, m)
    us = _groups(_region_lines(text, US))
    # the manifest's order; the image two rules select in its own group; then what no rule
    # selects; then the keys
    assert list(us) == ["rule eks", "rule al2023", "rules al2023, pinned", "rule enc",
                        "not selected by any rule", "KMS keys"]

    def names(group: str) -> list[str]:
        return [line.split()[2].strip("()") for line in us[group]]

    assert len(names("rule eks")) == 30 and names("rule eks") == sorted(names("rule eks")), \
        "by name, not by ID (the IDs run the other way and interleave the families)"
    assert names("rule eks")[0] == "eks-000" and us["rule eks"][0] == f"~ {ami(90)} (eks-000)"
    al = names("rule al2023")
    assert len(al) == 19 and al == sorted(al)
    dup = [line for line in us["rule al2023"] if line.endswith("(al2023-dup)")]
    assert dup == [f"~ {ami(7)} (al2023-dup)", f"~ {ami(4)} (al2023-dup)"], \
        "the same name: the older build first"
    assert us["rules al2023, pinned"] == [f"~ {ami(19)} (al2023-014)"]
    # each encrypted build's snapshot right under its image
    assert us["rule enc"] == [line for i in range(4) for line in (
        f"~ {ami(0xE00 + i)} (enc-{i})", f"~ snap-e{i} (snapshot of {ami(0xE00 + i)})")]
    assert us["not selected by any rule"] == [f"~ {ami(0xF00 + i)} (retired-{i:02d})"
                                              for i in range(12)]
    assert us["KMS keys"] == [f"~ {arn} (alias/enc-{i})" for i, arn in enumerate(ENC_KEYS)]
    assert list(_groups(_region_lines(text, EU))) == ["rule al2023"]
    # the Markdown diff block has the same order, a ## line per group
    md = render_markdown(plan, m, limit=10**9).splitlines()
    block = md[md.index("```diff"):]
    assert [line for line in block if line.startswith("#")] == [
        "# eu-west-1", "## rule al2023", "# us-east-1", *(f"## {g}" for g in us)]
    assert [line for line in block if line.startswith("~ ")][20:20 + 30] == us["rule eks"]


def test_a_big_plan_rolls_up_by_rule_and_by_principal_above_the_summary():
    m, plan = big_plan()
    text = render_text(plan, m)
    tail = text[text.index("Changes by rule:"):].splitlines()
    assert tail[-1] == summary_line(plan) and tail[-2] == ""
    by_rule = tail[1:tail.index("Changes by principal:")]
    assert [re.split(r"\s{2,}", line.strip()) for line in by_rule] == [
        ["eks", "+90", "-5"], ["al2023", "+78", "-0"], ["al2023, pinned", "+3", "-0"],
        ["enc", "+8", "-0"], ["not selected by any rule", "+0", "-12"],
        ["KMS keys", "+4", "-0"]]
    by_principal = tail[tail.index("Changes by principal:") + 1:-2]
    assert [re.split(r"\s{2,}", line.strip()) for line in by_principal] == [
        [f"{PROD} (prod)", "+82", "-0"], [f"{STAGING} (staging)", "+30", "-12"],
        [f"{DEV} (dev)", "+1", "-0"], [HAND, "+0", "-5"],
        ["o-a1b2c3d4e5 (org)", "+40", "-0", ORG], ["ou-ab12-cdef3456 (ou)", "+30", "-0", OU]]
    # the counts add up to the summary's
    for rows in (by_rule, by_principal):
        cells = [re.split(r"\s{2,}", line.strip()) for line in rows]
        assert sum(int(c[1]) for c in cells) == plan.summary.add
        assert sum(int(c[2]) for c in cells) == -plan.summary.remove
    # and Markdown has the same roll-up, as tables under the Region table
    md = render_markdown(plan, m, limit=10**9).splitlines()
    assert md.index("| Region | Add | Remove | Errors |") < md.index("| Rule | Add | Remove |") \
        < md.index("| Principal | Add | Remove | ARN |") < md.index("```diff")
    assert "| eks | 90 | 5 |" in md and "| not selected by any rule | 0 | 12 |" in md
    assert f"| ou-ab12-cdef3456 (ou) | 30 | 0 | {OU} |" in md
    assert f"| {HAND} | 0 | 5 | — |" in md


def _with_operations(plan: Planned, ops: list[Operation]) -> Planned:
    return Planned(replace(plan.plan, operations=tuple(ops)), plan.apply, plan.display)


def test_a_small_plan_has_no_roll_up_unless_it_shortens_a_principal():
    m, plan = full_plan()
    plain = [o for o in plan.operations if not shortened(o.principal, m)]
    small = _with_operations(plan, plain[:ROLLUP_ABOVE])
    for rendered in (render_text(small, m), render_markdown(small, m)):
        assert "Changes by" not in rendered and "| Rule |" not in rendered
        assert "| Principal |" not in rendered
    # an OU shown by its ID: the principal roll-up gives its ARN (no roll-up by rule)
    with_ou = _with_operations(plan, [*plain[:3], *(o for o in plan.operations
                                                    if o.principal == P_OU)][:ROLLUP_ABOVE])
    text = render_text(with_ou, m)
    assert "Changes by rule" not in text
    assert re.search(rf"\n  ou-ab12-cdef3456 \(ou\) +\+\d+ +-0  {re.escape(OU)}\n", text)
    md = render_markdown(with_ou, m)
    assert "| Rule |" not in md and "| ou-ab12-cdef3456 (ou) | " in md


def test_identical_key_policy_changes_are_shown_once_listing_their_keys():
    m, plan = big_plan()
    assert len(plan.display.key_policies) == 4
    md = render_markdown(plan, m, limit=10**9)
    assert md.count("Key policy change") == 1
    assert "<details><summary>Key policy change, the same on 4 keys</summary>" in md
    for i, arn in enumerate(ENC_KEYS):
        assert f"- {arn} (alias/enc-{i})" in md
    assert md.count('"AmiShareReconcilerAccounts"') == 1
    text = render_text(plan, m, details=key_policy_details(plan))
    assert text.count('"Sid": "AmiShareReconcilerAccounts"') == 1
    assert ("key policy statements owned by the tool (JSON, before -> after), the same on 4 "
            "keys:") in text
    for arn in ENC_KEYS[1:]:
        assert (f"key policy statements owned by the tool: the same change as {ENC_KEYS[0]} "
                "(above)") in text
        assert text.index(ENC_KEYS[0] + " (alias") < text.index(arn + " (alias")


def test_columns_align_and_named_org_and_ou_arns_are_shortened():
    m, plan = big_plan()
    text = render_text(plan, m)
    assert f"launch {OU} " not in text and f"launch {ORG} " not in text
    assert "+ launch ou-ab12-cdef3456 (ou)" in text and "+ launch o-a1b2c3d4e5 (org)" in text
    # within a rule's group, the reasons start in one column
    for region in (US, EU):
        lines = _region_lines(text, region)
        group: list[int] = []
        for line in [*lines, "  end"]:
            if line.startswith("        "):
                body = line[len("        ") + 2:]
                group.append(len(body) - len(body.split("  ")[-1].lstrip()) if "  " in body
                             else -1)
            elif not line.startswith("    "):
                assert len(set(group)) <= 1, (region, line, group)
                group = []
    md = render_markdown(plan, m, limit=10**9)
    diff = md[md.index("```diff"):md.index("```", md.index("```diff") + 3)].splitlines()
    starts = {line.index("(rule eks)") for line in diff if line.endswith("(rule eks)")}
    assert len(starts) == 1
    # the full ARNs are still there: in the roll-up, and in the JSON plan
    assert OU in text and ORG in text
    ops = json.loads(plan.to_json())["operations"]
    assert {"OrganizationalUnitArn": OU} in [o["principal"] for o in ops]


def test_an_unnamed_org_arn_is_not_shortened():
    m, plan = full_plan()
    nameless = replace(m, principals=tuple((n, p) for n, p in m.principals if n != "ou"))
    text = render_text(plan, nameless)
    assert not shortened(P_OU, nameless)
    assert re.search(rf"\+ launch {re.escape(OU)}\s+rule enc\n", text)
    assert "ou-ab12-cdef3456 (" not in text


# --------------------------------------------------------------------------- through the CLI


def test_reconcile_plan_groups_a_real_plan_by_rule(server: tuple[MotoServer, Images],
                                                   run_cli: Runner, tmp_path: Path) -> None:
    """Two families whose image IDs interleave: the text plan shows each family together
    under its rule (the manifest's order), by name, while the JSON keeps its sorted order."""
    _, images = server
    ids = [f"ami-0c0de00000000000{n}" for n in range(1, 6)]
    names = ["golden-eks-2026.11.17", "golden-al2023-2026.11.03", "golden-eks-2026.11.03",
             "golden-al2023-2026.11.17", "scratch-1"]
    for iid, name in zip(ids, names, strict=True):
        images.create(name, image_id=iid,
                      launch=[{"UserId": HAND}] if name.endswith("-2026.11.03") else None)
    m = tmp_path / "amis.yaml"
    m.write_text(manifest_yaml("""\
        - {name: eks, select: {name: "golden-eks-*"}, launch: [staging, ou]}
        - {name: al2023, select: {name: "golden-al2023-*"}, launch: [prod]}
        """, principals={"prod": PROD, "staging": STAGING, "ou": OU}))
    r = run_cli("plan", str(m), "--no-color")
    assert r.code == 0, r.err
    assert r.out.startswith(f"""\
us-east-1
  rule eks
    ~ {ids[2]} (golden-eks-2026.11.03)
        + launch {STAGING} (staging)  rule eks
        + launch ou-ab12-cdef3456 (ou)   rule eks
        - launch {HAND}            not declared
    ~ {ids[0]} (golden-eks-2026.11.17)
        + launch {STAGING} (staging)  rule eks
        + launch ou-ab12-cdef3456 (ou)   rule eks
  rule al2023
    ~ {ids[1]} (golden-al2023-2026.11.03)
        + launch {PROD} (prod)  rule al2023
        - launch {HAND}         not declared
    ~ {ids[3]} (golden-al2023-2026.11.17)
        + launch {PROD} (prod)  rule al2023

"""), r.out
    assert f"\n  ou-ab12-cdef3456 (ou)   +2  -0  {OU}\n" in r.out, "its full ARN"
    doc = json.loads(run_cli("plan", str(m), "--format", "json").out)
    assert [o["resource"] for o in doc["operations"]] == sorted(
        o["resource"] for o in doc["operations"])
