"""Renderers: a plan to text (Terraform-style), Markdown (pull-request comment) or JSON.

Pure functions returning strings; the CLI decides where they go. Output depends only on
the plan and the manifest, so identical inputs render byte-identical text. Every string
that holds a value from AWS or the manifest (names, rule names, globs, reasons, finding
messages) passes through :mod:`reconciler.core.neutral` here, as it is printed.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import neutral
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
from .plan import Planned

KIND_LABEL = {OpKind.LAUNCH: "launch", OpKind.COPY: "copy", OpKind.KMS: "kms"}
# UTF-8 bytes: GitHub comments are capped at 65,536 characters, and the example workflow
# adds a header and cuts at 60,000 bytes (`head -c`)
MARKDOWN_LIMIT = 59_000


# How the shell colours text: (text, foreground colour name, bold) -> text with the
# terminal's escapes; a foreground of "" keeps the terminal's own (readable on light and
# dark). The renderers never know how: they are handed one, or none for plain text.
Paint = Callable[[str, str, bool], str]


@dataclass(frozen=True)
class Style:
    """How to colour text: identity without a painter."""

    painter: Paint | None = None

    def paint(self, text: str, fg: str, bold: bool = False) -> str:
        return text if self.painter is None else self.painter(text, fg, bold)


def principal_label(p: Principal, manifest: Manifest | None) -> str:
    name = manifest.name_of(p) if manifest is not None else None
    return f"{p.label} ({name})" if name else p.label


def resource_label(plan: Planned, region_resource: tuple[str, str]) -> str:
    _, resource = region_resource
    name = plan.display.resource_name(resource)
    return f"{resource} ({name})" if name else resource


Grouped = dict[str, dict[str, list[Operation]]]  # Region -> resource -> operations


def _grouped(ops: tuple[Operation, ...]) -> Grouped:
    out: Grouped = defaultdict(lambda: defaultdict(list))
    for op in ops:
        out[op.region][op.resource].append(op)
    return out


RELEASED = "no longer matched by any rule"


def _released(plan: Planned) -> set[str]:
    """Resources (images and their snapshots) this plan releases."""
    if plan.ownership is None:
        return set()
    return {r for _, r in (*plan.ownership.untag, *plan.ownership.untag_snapshots)}


def _release_reason(plan: Planned) -> str:
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


def ownership_lines(plan: Planned) -> list[str]:
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


def left_alone_lines(plan: Planned) -> list[str]:
    """Resources with an error finding: nothing is written to them in this run."""
    alone = sorted({(f.region, f.resource) for f in plan.errors if f.resource})
    if not alone:
        return []
    return ["Left alone (error findings; nothing is written to them this run):",
            *(f"  {r} {resource_label(plan, (r, res))}" for r, res in alone)]


def regions_line(plan: Planned, manifest: Manifest | None) -> str:
    if manifest is None or not manifest.default_regions:
        return ""
    return (f"Regions: {', '.join(plan.regions) or 'none'} (a rule names no Region, so the "
            "default us-east-1 is used; set settings.regions)")


def summary_line(plan: Planned) -> str:
    """One line that cannot be misread: permissions are counted, images are named as such."""
    s = plan.summary
    on = f"on {plural(s.images, 'managed image')}"
    if not plan.has_changes:
        return f"No changes: {plural(s.unchanged, 'permission')} as declared {on}."
    return (f"Plan: {plural(s.add, 'permission')} to add, {s.remove} to remove, "
            f"{s.unchanged} unchanged, {on}.")


_SEVERITY_FG = {Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _finding_line(f: Finding) -> str:
    return neutral.text(f.headline())


def _serious(plan: Planned) -> list[Finding]:
    """Errors and warnings: shown before the diff, where a reviewer starts reading."""
    return [f for f in plan.findings if f.severity is not Severity.INFO]


def _notes(plan: Planned) -> list[Finding]:
    return [f for f in plan.findings if f.severity is Severity.INFO]


def render_text(plan: Planned, manifest: Manifest | None, *, paint: Paint | None = None,
                details: Callable[[str, str], list[str]] | None = None) -> str:
    return "".join(text_lines(plan, manifest, paint=paint, details=details))


def text_lines(plan: Planned, manifest: Manifest | None, *, paint: Paint | None = None,
               details: Callable[[str, str], list[str]] | None = None) -> Iterator[str]:
    """:func:`render_text` one line at a time (each ending in a newline), so that a plan of
    300,000 operations is written out without first being built as one string."""
    st = Style(paint)
    t = neutral.text
    yield from _finding_section(st, "Errors and warnings:", _serious(plan))
    grouped = _grouped(plan.operations)
    released = _released(plan)
    for region in sorted(grouped):
        yield st.paint(t(region), "", bold=True) + "\n"
        for resource in sorted(grouped[region]):
            ops = grouped[region][resource]
            yield (f"  {st.paint('~', 'yellow')} {t(resource_label(plan, (region, resource)))}"
                   "\n")
            lines = [_op_line(o, manifest, released, plan.display.withheld, _release_reason(plan))
                     for o in ops]
            width = min(44, max(len(t(body)) for _, body, _ in lines))
            for sign, body, why in lines:
                fg = "green" if sign == "+" else "red"
                yield (f"      {st.paint(sign, fg, bold=True)} {st.paint(t(body).ljust(width), fg)}"
                       f"  {st.paint(t(why), 'bright_black')}\n")
            if details is not None:
                yield from ("      " + t(d) + "\n" for d in details(region, resource))
        yield "\n"
    yield from _finding_section(st, "Findings:", _notes(plan))
    for section in (left_alone_lines(plan), ownership_lines(plan)):
        if section:
            yield st.paint(t(section[0]), "", bold=True) + "\n"
            yield from (t(line) + "\n" for line in section[1:])
            yield "\n"
    regions = regions_line(plan, manifest)
    if regions:
        yield t(regions) + "\n"
    yield st.paint(summary_line(plan), "", bold=True) + "\n"


def _finding_section(st: Style, title: str, findings: list[Finding]) -> Iterator[str]:
    if findings:
        yield st.paint(title, "", bold=True) + "\n"
        for f in findings:
            yield "  " + st.paint(_finding_line(f), _SEVERITY_FG[f.severity]) + "\n"
        yield "\n"


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


def key_policy_details(plan: Planned) -> Callable[[str, str], list[str]]:
    """``render_text`` detail lines: the statement changes of each KMS key (``-v``)."""

    def details(region: str, resource: str) -> list[str]:
        pair = plan.display.key_policies.get(resource)
        if pair is None:
            return []
        return ["key policy statements owned by the tool (JSON, before -> after):",
                *("  " + line for line in policy_diff(*pair))]

    return details


def render_markdown(plan: Planned, manifest: Manifest | None, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan as a pull-request comment: the summary, errors and warnings, a table, then
    collapsed details. Cut to ``limit`` UTF-8 bytes, never dropping an error (see
    :func:`_md_fitted`)."""
    grouped = _grouped(plan.operations)
    head = [f"**{neutral.markdown(summary_line(plan))}**", ""]
    serious = _md_finding_lines(_serious(plan))
    rest = [*_md_table(plan, grouped), *_md_changes(plan, manifest, grouped),
            *_md_key_policies(plan), *_md_findings("Findings", _notes(plan))]
    for section in (left_alone_lines(plan), ownership_lines(plan)):
        if section:
            rest += [f"**{neutral.markdown(section[0])}**", "",
                     *(f"- {neutral.markdown(line.strip())}" for line in section[1:]), ""]
    covered = regions_line(plan, manifest)
    if covered:
        rest += [neutral.markdown(covered), ""]
    text = _md_fitted(head, serious, rest, limit)
    return text + ("\n" if not text.endswith("\n") else "")


def _md_table(plan: Planned, grouped: Grouped) -> list[str]:
    """Adds, removes and errors per Region."""
    blocked: dict[str, int] = defaultdict(int)
    for f in plan.findings:
        if f.severity is Severity.ERROR:
            blocked[f.region] += 1
    regions = sorted(set(grouped) | set(blocked))
    if not regions:
        return []
    out = ["| Region | Add | Remove | Errors |", "|---|---:|---:|---:|"]
    for r in regions:
        ops = [o for res in grouped.get(r, {}).values() for o in res]
        adds = sum(1 for o in ops if o.action is Action.ADD)
        out.append(f"| {neutral.markdown(r) or '—'} | {adds} | {len(ops) - adds} | "
                   f"{blocked.get(r, 0)} |")
    return [*out, ""]


def _md_changes(plan: Planned, manifest: Manifest | None, grouped: Grouped) -> list[str]:
    """The operations as a collapsed diff block (code: :func:`neutral.text`, not Markdown)."""
    if not grouped:
        return []
    t = neutral.text
    body = ["<details><summary>Changes</summary>", "", "```diff"]
    for region in sorted(grouped):
        body.append(f"# {t(region)}")
        for resource in sorted(grouped[region]):
            body.append(f"~ {t(resource_label(plan, (region, resource)))}")
            for op in grouped[region][resource]:
                sign, text, why = _op_line(op, manifest, _released(plan), plan.display.withheld,
                                           _release_reason(plan))
                body.append(f"{sign}   {t(text)}  ({t(why)})")
    return [*body, "```", "", "</details>", ""]


def _md_key_policies(plan: Planned) -> list[str]:
    """Each key policy the plan rewrites, as a collapsed diff."""
    body: list[str] = []
    for arn, pair in sorted(plan.display.key_policies.items()):
        label = neutral.html(resource_label(plan, ("", arn)))
        body += [f"<details><summary>Key policy change: {label}</summary>", "", "```diff",
                 *(neutral.text(line) for line in policy_diff(*pair)), "```", "",
                 "</details>", ""]
    return body


_ICON = {Severity.ERROR: "❌", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}


def _md_finding_line(f: Finding) -> str:
    where = " ".join(neutral.markdown(x) for x in (f.region, f.resource) if x)
    return (f"- {_ICON[f.severity]} `{f.code}`{' ' + where if where else ''}: "
            f"{neutral.markdown(f.message)}")


def _md_finding_lines(findings: list[Finding]) -> list[str]:
    return [_md_finding_line(f) for f in findings]


def _md_findings(title: str, findings: list[Finding]) -> list[str]:
    if not findings:
        return []
    return [f"**{title}**", "", *_md_finding_lines(findings), ""]


def _size(lines: list[str]) -> int:
    return sum(len(line.encode()) + 1 for line in lines)


TRUNCATED = "_Output truncated; see the full plan in the job's artifacts._"


def _md_fitted(head: list[str], serious: list[str], rest: list[str], limit: int) -> str:
    """``head``, the error and warning lines, then ``rest``, within ``limit`` bytes.

    Errors come before everything that can be cut: warnings go first, then the details.
    When the errors alone do not fit, as many as fit are listed and the others are counted
    by code, so every kind of error that failed the plan reaches the comment (all of them
    are on standard error too)."""
    title = ["**Errors and warnings**", ""] if serious else []
    whole = [*head, *title, *serious, *([""] if serious else []), *rest]
    if _size(whole) <= limit:
        return "\n".join(whole)
    tail = ["", TRUNCATED, ""]
    budget = limit - _size(head) - _size(title) - _size(tail) - 400  # 400: the count line
    kept: list[str] = []
    for line in serious:
        if _size([line]) > budget:
            break
        kept.append(line)
        budget -= _size([line])
    dropped = serious[len(kept):]
    errors = [line for line in dropped if line.startswith(f"- {_ICON[Severity.ERROR]}")]
    if dropped:
        codes = Counter(line.split("`")[1] for line in errors)
        kept.append(f"- … {plural(len(errors), 'more error')}"
                    + (f" ({', '.join(f'`{c}` ×{n}' for c, n in sorted(codes.items()))})"
                       if codes else "")
                    + f" and {plural(len(dropped) - len(errors), 'warning')} not shown; "
                      "the job log lists them all")
    out = [*head, *title, *kept, *([""] if kept else [])]
    room = limit - _size(out) - _size(tail)
    cut = _md_cut(rest, room)
    return "\n".join([*out, *cut, *tail])


def _md_cut(lines: list[str], room: int) -> list[str]:
    """The first lines of ``lines`` within ``room`` bytes, with an open code block and
    ``<details>`` closed."""
    out: list[str] = []
    fence = details = False
    for line in lines:
        if _size([*out, line]) + 40 > room:  # 40: the closing lines
            break
        out.append(line)
        if line.startswith("```"):
            fence = not fence
        elif line.startswith("<details>"):
            details = True
        elif line.startswith("</details>"):
            details = False
    if fence:
        out.append("```")
    if details:
        out += ["", "</details>"]
    return out
