"""Renderers: a plan to text (Terraform-style), Markdown (pull-request comment) or JSON.

Pure functions returning strings; the CLI decides where they go. Output depends only on
the plan and the manifest, so identical inputs render byte-identical text.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .manifest import Manifest
from .model import Action, Finding, Operation, OpKind, Principal, Severity
from .plan import Plan

KIND_LABEL = {OpKind.LAUNCH: "launch", OpKind.COPY: "copy", OpKind.KMS: "kms"}
MARKDOWN_LIMIT = 60_000  # GitHub comments are capped at 65,536 characters


@dataclass(frozen=True)
class Style:
    """How to color text: identity when color is off."""

    color: bool = False

    def paint(self, text: str, fg: str, bold: bool = False) -> str:
        if not self.color:
            return text
        import click

        return click.style(text, fg=fg, bold=bold)


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


def _grouped(ops: tuple[Operation, ...]) -> dict[str, dict[str, list[Operation]]]:
    out: dict[str, dict[str, list[Operation]]] = defaultdict(lambda: defaultdict(list))
    for op in ops:
        out[op.region][op.resource].append(op)
    return out


def _op_line(op: Operation, manifest: Manifest | None) -> tuple[str, str, str]:
    sign = "+" if op.action is Action.ADD else "-"
    why = f"rule {', '.join(op.rules)}" if op.rules else "not declared"
    return sign, f"{KIND_LABEL[op.kind]:<6} {principal_label(op.principal, manifest)}", why


def summary_line(plan: Plan) -> str:
    s = plan.summary
    tail = f"{s.images} managed image{'s' if s.images != 1 else ''}, {s.unchanged} unchanged"
    if not plan.has_changes:
        return f"No changes. {tail}."
    return f"Plan: {s.add} to add, {s.remove} to remove ({tail})."


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
    for region in sorted(grouped):
        yield st.paint(region, "white", bold=True) + "\n"
        for resource in sorted(grouped[region]):
            ops = grouped[region][resource]
            yield "  " + st.paint("~", "yellow") + " " + resource_label(plan, (region, resource)) + "\n"
            lines = [_op_line(o, manifest) for o in ops]
            width = min(44, max(len(body) for _, body, _ in lines))
            for sign, body, why in lines:
                fg = "green" if sign == "+" else "red"
                yield (f"      {st.paint(sign, fg, bold=True)} {st.paint(body.ljust(width), fg)}"
                       f"  {st.paint(why, 'bright_black')}\n")
            if details is not None:
                yield from ("      " + d + "\n" for d in details(region, resource))
        yield "\n"
    if plan.findings:
        yield st.paint("Findings:", "white", bold=True) + "\n"
        for f in plan.findings:
            yield "  " + st.paint(_finding_line(f), _SEVERITY_FG[f.severity]) + "\n"
        yield "\n"
    yield st.paint(summary_line(plan), "white", bold=True) + "\n"


def policy_diff(old: Any, new: Any) -> list[str]:
    """An exact structural diff of two key policies, one change per line (deepdiff)."""
    from deepdiff import DeepDiff

    diff = DeepDiff(old, new, ignore_order=False, verbose_level=2)
    return [line for line in diff.pretty().splitlines() if line.strip()] if diff else []


def key_policy_details(plan: Plan) -> Callable[[str, str], list[str]]:
    """``render_text`` detail lines: the policy change of each KMS key (for ``--verbose``)."""

    def details(region: str, resource: str) -> list[str]:
        pair = plan.key_policies.get(resource)
        if pair is None:
            return []
        return ["key policy change:", *("  " + line for line in policy_diff(*pair))]

    return details


def _md_escape(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def render_markdown(plan: Plan, manifest: Manifest | None, *, limit: int = MARKDOWN_LIMIT) -> str:
    grouped = _grouped(plan.operations)
    blocked: dict[str, int] = defaultdict(int)
    for f in plan.findings:
        if f.severity is Severity.ERROR:
            blocked[f.region] += 1
    head = [f"### reconcile plan: {_md_escape(summary_line(plan))}", ""]
    regions = sorted(set(grouped) | set(blocked))
    if regions:
        head += ["| Region | Add | Remove | Errors |", "|---|---:|---:|---:|"]
        for r in regions:
            ops = [o for res in grouped.get(r, {}).values() for o in res]
            adds = sum(1 for o in ops if o.action is Action.ADD)
            head.append(f"| {_md_escape(r) or '—'} | {adds} | {len(ops) - adds} | {blocked.get(r, 0)} |")
        head.append("")
    body: list[str] = []
    if grouped:
        body += ["<details><summary>Changes</summary>", "", "```diff"]
        for region in sorted(grouped):
            body.append(f"# {region}")
            for resource in sorted(grouped[region]):
                body.append(f"~ {resource_label(plan, (region, resource))}".replace("```", "'''"))
                for op in grouped[region][resource]:
                    sign, text, why = _op_line(op, manifest)
                    body.append(f"{sign}   {text}  ({why})".replace("```", "'''"))
        body += ["```", "", "</details>", ""]
    if plan.findings:
        body.append("**Findings**")
        body.append("")
        icon = {Severity.ERROR: "❌", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}
        for f in plan.findings:
            body.append(f"- {icon[f.severity]} `{f.code}` {_md_escape(f.region)} "
                        f"{_md_escape(f.resource)}: {_md_escape(f.message)}")
        body.append("")
    text = "\n".join(head + body)
    if len(text) > limit:
        cut = text[: limit - 200].rsplit("\n", 1)[0]
        if cut.count("```") % 2:
            cut += "\n```"
        if "<details>" in cut and "</details>" not in cut:
            cut += "\n\n</details>"
        text = cut + "\n\n_Output truncated; see the full plan in the job's artifacts._\n"
    return text + ("\n" if not text.endswith("\n") else "")
