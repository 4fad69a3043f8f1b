"""Renderings of a plan (reconciler.core.render): text for a terminal, with colour only when
asked, and Markdown for a pull-request comment, bounded. Pure: the plan is builders.full_plan.
"""

from __future__ import annotations

import random
import re

from builders import (
    KEY,
    P_PROD,
    PLAN_IMAGES,
    ami,
    base_state,
    full_plan,
    image,
    listing,
    plan_for,
)
from helpers import ACCOUNT, HAND, OU, PROD, STAGING, US

from reconciler.core.model import Action, Operation, OpKind
from reconciler.core.plan import Planned, make_plan
from reconciler.core.render import render_markdown, render_text, summary_line
from reconciler.shell.terminal import ansi

ANSI = re.compile(r"\x1b\[")


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

