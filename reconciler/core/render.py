"""Renderers: a plan to text (Terraform-style), Markdown (pull-request comment) or JSON.

Pure functions returning strings; the CLI decides where they go. Output depends only on
the plan and the manifest, so identical inputs render byte-identical text.
"""

from __future__ import annotations

import difflib
import html
import json
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .kms import OWNED_SIDS
from .manifest import Manifest
from .model import (
    OWNERSHIP_TAG,
    Action,
    Finding,
    Operation,
    OpKind,
    Principal,
    Severity,
    plural,
)
from .plan import Plan

KIND_LABEL = {OpKind.LAUNCH: "launch", OpKind.COPY: "copy", OpKind.KMS: "kms"}
MARKDOWN_LIMIT = 60_000  # GitHub comments are capped at 65,536 characters


@dataclass(frozen=True)
class Style:
    """How to color text: identity when color is off."""

    color: bool = False

    def paint(self, text: str, fg: str, bold: bool = False) -> str:
        """``fg`` "" keeps the terminal's own foreground (readable on light and dark)."""
        if not self.color:
            return text
        import click

        return click.style(text, fg=fg or None, bold=bold)


def principal_label(p: Principal, manifest: Manifest | None) -> str:
    name = manifest.name_of(p) if manifest is not None else None
    return f"{p.label} ({name})" if name else p.label


def resource_label(plan: Plan, region_resource: tuple[str, str]) -> str:
    _, resource = region_resource
    name = plan.image_names.get(resource)
    if name is not None:
        return f"{resource} ({name})" if name else resource
    owner = plan.resource_images.get(resource)
    return f"{resource} ({owner})" if owner else resource


Grouped = dict[str, dict[str, list[Operation]]]  # Region -> resource -> operations


def _grouped(ops: tuple[Operation, ...]) -> Grouped:
    out: Grouped = defaultdict(lambda: defaultdict(list))
    for op in ops:
        out[op.region][op.resource].append(op)
    return out


RELEASED = "no longer matched by any rule"


def _released(plan: Plan) -> set[str]:
    """Resources (images and their snapshots) this plan releases."""
    if plan.ownership is None:
        return set()
    return {r for _, r in (*plan.ownership.untag, *plan.ownership.untag_snapshots)}


def _release_reason(plan: Plan) -> str:
    """Why a released image loses its shares, naming the tag the release relies on (so a
    reviewer sees whose tag it is)."""
    name = plan.ownership.name if plan.ownership is not None else ""
    return f"{RELEASED}; it carries {OWNERSHIP_TAG}={name}"


def _op_line(op: Operation, manifest: Manifest | None,
             released: set[str] | frozenset[str] = frozenset(),
             withheld: Mapping[tuple[str, str, Principal], str] | None = None,
             release_reason: str = RELEASED) -> tuple[str, str, str]:
    sign = "+" if op.action is Action.ADD else "-"
    why = (f"rule {', '.join(op.rules)}" if op.rules
           else release_reason if op.resource in released
           else (withheld or {}).get((op.region, op.resource, op.principal), "not declared"))
    return sign, f"{KIND_LABEL[op.kind]:<6} {principal_label(op.principal, manifest)}", why


def _ids(keys: tuple[tuple[str, str], ...], most: int = 5) -> str:
    ids = [r for _, r in keys]
    more = f" and {len(ids) - most} more" if len(ids) > most else ""
    return ", ".join(ids[:most]) + more


def ownership_lines(plan: Plan) -> list[str]:
    """The short ownership section (README, "Ownership"): tag writes are bookkeeping, not changes."""
    own = plan.ownership
    if own is None or not own.pending:
        return []
    tag = f"{OWNERSHIP_TAG}={own.name}"
    out = [f"Ownership tag {tag} (bookkeeping, written by apply):"]
    if own.tag:
        out.append(f"  tag {plural(len(own.tag), 'managed image')}: {_ids(own.tag)}")
    if own.tag_snapshots:
        out.append(f"  tag {plural(len(own.tag_snapshots), 'snapshot')} whose copy permissions "
                   f"the manifest manages: {_ids(own.tag_snapshots)}")
    if own.untag:
        what = ("shares kept (on_release: keep)" if own.keep
                else "its shares are revoked above" if len(own.untag) == 1
                else "their shares are revoked above")
        out.append(f"  release {plural(len(own.untag), 'image')} {RELEASED} ({what}): "
                   f"{_ids(own.untag)}")
    released = tuple(k for k in own.untag_snapshots if k in own.snapshot_of)
    if released:
        out.append(f"  untag {plural(len(released), 'snapshot')} of the released "
                   f"image{'s' if len(own.untag) != 1 else ''}: {_ids(released)}")
    if dropped := tuple(k for k in own.untag_snapshots if k not in own.snapshot_of):
        out.append(f"  untag {plural(len(dropped), 'snapshot')} whose copy permissions the "
                   f"manifest no longer manages: {_ids(dropped)}")
    return out


def left_alone_lines(plan: Plan) -> list[str]:
    """Resources with an error finding: nothing is written to them in this run."""
    alone = sorted({(f.region, f.resource) for f in plan.errors if f.resource})
    if not alone:
        return []
    return ["Left alone (error findings; nothing is written to them this run):",
            *(f"  {r} {resource_label(plan, (r, res))}" for r, res in alone)]


def regions_line(plan: Plan, manifest: Manifest | None) -> str:
    if manifest is None or not manifest.default_regions:
        return ""
    return (f"Regions: {', '.join(plan.regions) or 'none'} (a rule names no Region, so the "
            "default us-east-1 is used; set settings.regions)")


def summary_line(plan: Plan) -> str:
    """One line that cannot be misread: permissions are counted, images are named as such."""
    s = plan.summary
    on = f"on {plural(s.images, 'managed image')}"
    if not plan.has_changes:
        return f"No changes: {plural(s.unchanged, 'permission')} as declared {on}."
    return (f"Plan: {plural(s.add, 'permission')} to add, {s.remove} to remove, "
            f"{s.unchanged} unchanged, {on}.")


_SEVERITY_FG = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _finding_line(f: Finding) -> str:
    where = " ".join(x for x in (f.region, f.resource) if x)
    return f"{f.severity.value}[{f.code}] {where}: {f.message}"


def render_text(plan: Plan, manifest: Manifest | None, *, color: bool = False,
                details: Callable[[str, str], list[str]] | None = None) -> str:
    return "".join(text_lines(plan, manifest, color=color, details=details))


def text_lines(plan: Plan, manifest: Manifest | None, *, color: bool = False,
               details: Callable[[str, str], list[str]] | None = None) -> Iterator[str]:
    """:func:`render_text` one line at a time (each ending in a newline), so that a plan of
    300,000 operations is written out without first being built as one string."""
    st = Style(color)
    grouped = _grouped(plan.operations)
    released = _released(plan)
    for region in sorted(grouped):
        yield st.paint(region, "", bold=True) + "\n"
        for resource in sorted(grouped[region]):
            ops = grouped[region][resource]
            yield "  " + st.paint("~", "yellow") + " " + resource_label(plan, (region, resource)) + "\n"
            lines = [_op_line(o, manifest, released, plan.withheld, _release_reason(plan))
                     for o in ops]
            width = min(44, max(len(body) for _, body, _ in lines))
            for sign, body, why in lines:
                fg = "green" if sign == "+" else "red"
                yield (f"      {st.paint(sign, fg, bold=True)} {st.paint(body.ljust(width), fg)}"
                       f"  {st.paint(why, 'bright_black')}\n")
            if details is not None:
                yield from ("      " + d + "\n" for d in details(region, resource))
        yield "\n"
    if plan.findings:
        yield st.paint("Findings:", "", bold=True) + "\n"
        for f in plan.findings:
            yield "  " + st.paint(_finding_line(f), _SEVERITY_FG[f.severity]) + "\n"
        yield "\n"
    for section in (left_alone_lines(plan), ownership_lines(plan)):
        if section:
            yield st.paint(section[0], "", bold=True) + "\n"
            yield from (line + "\n" for line in section[1:])
            yield "\n"
    regions = regions_line(plan, manifest)
    if regions:
        yield regions + "\n"
    yield st.paint(summary_line(plan), "", bold=True) + "\n"


def _owned_statements(policy: Any) -> list[Any]:
    statements = policy.get("Statement", []) if isinstance(policy, dict) else []
    return [st for st in statements if isinstance(st, dict) and st.get("Sid") in OWNED_SIDS]


def policy_diff(old: Any, new: Any) -> list[str]:
    """The tool's own statements of a key policy, before and after, as a diff of their JSON
    (pretty-printed for review; KMS receives compact JSON). Other statements never change."""
    before = json.dumps(_owned_statements(old), indent=2).splitlines()
    after = json.dumps(_owned_statements(new), indent=2).splitlines()
    lines = list(difflib.unified_diff(before, after, "before", "after", n=3, lineterm=""))
    return lines[2:]  # the ---/+++ header says nothing a reviewer needs


def key_policy_details(plan: Plan) -> Callable[[str, str], list[str]]:
    """``render_text`` detail lines: the statement changes of each KMS key (``-v``)."""

    def details(region: str, resource: str) -> list[str]:
        pair = plan.key_policies.get(resource)
        if pair is None:
            return []
        return ["key policy statements owned by the tool (JSON, before -> after):",
                *("  " + line for line in policy_diff(*pair))]

    return details


def _md_escape(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def render_markdown(plan: Plan, manifest: Manifest | None, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan as a pull-request comment: a summary table, then collapsed details."""
    grouped = _grouped(plan.operations)
    lines = [*_md_summary(plan, grouped), *_md_changes(plan, manifest, grouped),
             *_md_key_policies(plan), *_md_findings(plan)]
    for section in (left_alone_lines(plan), ownership_lines(plan)):
        if section:
            lines += [f"**{_md_escape(section[0])}**", "",
                      *(f"- {_md_escape(line.strip())}" for line in section[1:]), ""]
    covered = regions_line(plan, manifest)
    if covered:
        lines += [_md_escape(covered), ""]
    text = _md_truncated("\n".join(lines), limit)
    return text + ("\n" if not text.endswith("\n") else "")


def _md_summary(plan: Plan, grouped: Grouped) -> list[str]:
    """The summary line, and a table of adds, removes and errors per Region."""
    blocked: dict[str, int] = defaultdict(int)
    for f in plan.findings:
        if f.severity is Severity.ERROR:
            blocked[f.region] += 1
    head = [f"**{_md_escape(summary_line(plan))}**", ""]
    regions = sorted(set(grouped) | set(blocked))
    if regions:
        head += ["| Region | Add | Remove | Errors |", "|---|---:|---:|---:|"]
        for r in regions:
            ops = [o for res in grouped.get(r, {}).values() for o in res]
            adds = sum(1 for o in ops if o.action is Action.ADD)
            head.append(f"| {_md_escape(r) or '—'} | {adds} | {len(ops) - adds} | {blocked.get(r, 0)} |")
        head.append("")
    return head


def _md_changes(plan: Plan, manifest: Manifest | None, grouped: Grouped) -> list[str]:
    """The operations as a collapsed diff block."""
    if not grouped:
        return []
    body = ["<details><summary>Changes</summary>", "", "```diff"]
    for region in sorted(grouped):
        body.append(f"# {region}")
        for resource in sorted(grouped[region]):
            body.append(f"~ {resource_label(plan, (region, resource))}".replace("```", "'''"))
            for op in grouped[region][resource]:
                sign, text, why = _op_line(op, manifest, _released(plan), plan.withheld,
                                           _release_reason(plan))
                body.append(f"{sign}   {text}  ({why})".replace("```", "'''"))
    return [*body, "```", "", "</details>", ""]


def _md_key_policies(plan: Plan) -> list[str]:
    """Each key policy the plan rewrites, as a collapsed diff."""
    body: list[str] = []
    for arn, pair in sorted(plan.key_policies.items()):
        label = html.escape(resource_label(plan, ("", arn)))
        body += [f"<details><summary>Key policy change: {label}</summary>", "", "```diff",
                 *(line.replace("```", "'''") for line in policy_diff(*pair)), "```", "",
                 "</details>", ""]
    return body


def _md_findings(plan: Plan) -> list[str]:
    if not plan.findings:
        return []
    icon = {Severity.ERROR: "❌", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}
    return ["**Findings**", "",
            *(f"- {icon[f.severity]} `{f.code}` {_md_escape(f.region)} "
              f"{_md_escape(f.resource)}: {_md_escape(f.message)}" for f in plan.findings), ""]


def _md_truncated(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with its code block and details closed."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 200].rsplit("\n", 1)[0]
    if cut.count("```") % 2:
        cut += "\n```"
    if "<details>" in cut and "</details>" not in cut:
        cut += "\n\n</details>"
    return cut + "\n\n_Output truncated; see the full plan in the job's artifacts._\n"
