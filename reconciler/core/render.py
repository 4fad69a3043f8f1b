"""Renderers: a plan to text (Terraform-style), Markdown (pull-request comment) or JSON.

Pure functions returning strings; the CLI decides where they go. Output depends only on
the plan and the manifest, so identical inputs render byte-identical text. Every string
that holds a value from AWS or the manifest (names, rule names, globs, reasons, finding
messages) passes through :mod:`reconciler.core.neutral` here, as it is printed. How a big
plan is laid out for review (groups by rule, roll-ups, short principal IDs, one diff for
identical key-policy changes) is :mod:`.review`'s.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from . import neutral
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
from .review import (
    Group,
    Rollup,
    Tally,
    key_policy_changes,
    principal_text,
    region_groups,
    rollup,
)

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


def resource_label(plan: Planned, region_resource: tuple[str, str]) -> str:
    _, resource = region_resource
    name = plan.display.resource_name(resource)
    return f"{resource} ({name})" if name else resource


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


OpLine = Callable[[Operation], tuple[str, str, str]]


def _op_lines(plan: Planned, manifest: Manifest | None) -> OpLine:
    """An operation's line, inert: its sign, kind and principal, and why. Each (kind,
    principal) and each rule list is made once per rendering, not once per operation (a
    plan may hold 300,000)."""
    t, withheld = neutral.text, plan.display.withheld
    released, release_reason = _released(plan), t(_release_reason(plan))
    bodies: dict[tuple[OpKind, Principal], str] = {}
    rules: dict[tuple[str, ...], str] = {}

    def line(op: Operation) -> tuple[str, str, str]:
        body = bodies.get((op.kind, op.principal))
        if body is None:
            body = bodies[op.kind, op.principal] = t(
                f"{KIND_LABEL[op.kind]:<6} {principal_text(op.principal, manifest)}")
        if op.rules:
            why = rules.get(op.rules) or rules.setdefault(op.rules,
                                                          t(f"rule {', '.join(op.rules)}"))
        else:
            why = release_reason if op.resource in released else t(
                withheld.get((op.region, op.resource, op.principal), "not declared"))
        return "+" if op.action is Action.ADD else "-", body, why

    return line


WIDEST = 44  # a principal column wider than this is not padded to: its line runs on


def _group_lines(line: OpLine, group: Group) -> tuple[int, dict[str, list[tuple[str, str, str]]]]:
    """Each resource's operation lines, and the width their principal column is padded
    to: one for the whole group, so that its reasons line up."""
    lines = {res: [line(o) for o in ops] for res, ops in group.resources}
    width = min(WIDEST, max(len(body) for rows in lines.values() for _, body, _ in rows))
    return width, lines


def _tally_lines(rows: Sequence[Tally]) -> list[str]:
    """Roll-up rows, inert and aligned: who or what, ``+adds -removes``, the full ID."""
    labels = [neutral.text(r.label) for r in rows]
    width = min(WIDEST, max(map(len, labels)))
    adds = [f"+{r.add}" for r in rows]
    removes = [f"-{r.remove}" for r in rows]
    wa, wr = max(map(len, adds)), max(map(len, removes))
    full = [f"  {neutral.text(r.full)}" if r.full else "" for r in rows]
    return [f"  {label.ljust(width)}  {a:>{wa}}  {m:>{wr}}{f}"
            for label, a, m, f in zip(labels, adds, removes, full, strict=True)]


ROLLUP_TITLES = ("Changes by rule:", "Changes by principal:")


def rollup_lines(roll: Rollup) -> list[str]:
    """The text roll-up, above the summary line (README, "How a big plan reads")."""
    out: list[str] = []
    for title, rows in zip(ROLLUP_TITLES, (roll.rules, roll.principals), strict=True):
        if rows:
            out += [title, *_tally_lines(rows)]
    return out


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


def deprecation_lines(plan: Planned) -> list[str]:
    """The retired builds apply deprecates (settings.deprecate_retired), before its writes,
    and the ones it deprecated that a rule shares again."""
    p = plan.plan
    if not (p.deprecate or p.undeprecate):
        return []
    return ["Deprecated by apply, before its writes (settings.deprecate_retired):",
            *(f"  deprecate {resource_label(plan, key)}" for key in p.deprecate),
            *(f"  take back the deprecation of {resource_label(plan, key)} (shared again)"
              for key in p.undeprecate)]


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
    retired, back = plan.plan.deprecate, plan.plan.undeprecate
    deprecate = (f"; {plural(len(retired), 'retired build')} to deprecate" if retired else "") + (
        f"; {plural(len(back), 'build')} to deprecate no longer" if back else "")
    return (f"Plan: {plural(s.add, 'permission')} to add, {s.remove} to remove, "
            f"{s.unchanged} unchanged, {on}{deprecate}.")


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
    groups = region_groups(plan, manifest)
    line = _op_lines(plan, manifest)
    for region, region_groups_ in groups:
        yield st.paint(t(region), "", bold=True) + "\n"
        for group in region_groups_:
            yield "  " + st.paint(t(group.label), "", bold=True) + "\n"
            width, lines = _group_lines(line, group)
            for resource, _ in group.resources:
                yield (f"    {st.paint('~', 'yellow')} "
                       f"{t(resource_label(plan, (region, resource)))}\n")
                for sign, body, why in lines[resource]:
                    fg = "green" if sign == "+" else "red"
                    yield (f"        {st.paint(sign, fg, bold=True)} "
                           f"{st.paint(body.ljust(width), fg)}  {st.paint(why, 'bright_black')}\n")
                if details is not None:
                    yield from ("        " + t(d) + "\n" for d in details(region, resource))
        yield "\n"
    yield from _finding_section(st, "Findings:", _notes(plan))
    for section in (left_alone_lines(plan), deprecation_lines(plan), ownership_lines(plan)):
        if section:
            yield st.paint(t(section[0]), "", bold=True) + "\n"
            yield from (t(line) + "\n" for line in section[1:])
            yield "\n"
    roll = rollup_lines(rollup(plan, manifest, groups))
    if roll:
        yield from ((st.paint(line, "", bold=True) if line in ROLLUP_TITLES else line) + "\n"
                    for line in roll)
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


KEY_DIFF = "key policy statements owned by the tool (JSON, before -> after)"


def key_policy_details(plan: Planned) -> Callable[[str, str], list[str]]:
    """``render_text`` detail lines: the statement changes of each KMS key (``-v``). A
    change made the same on several keys is shown under the first of them, listing them;
    the others refer to it."""
    same = {arn: (keys, diff) for keys, diff in key_policy_changes(plan) for arn in keys}

    def details(region: str, resource: str) -> list[str]:
        if resource not in same:
            return []
        keys, diff = same[resource]
        if len(keys) == 1:
            return [f"{KEY_DIFF}:", *("  " + line for line in diff)]
        if keys[0] != resource:
            return [f"key policy statements owned by the tool: the same change as {keys[0]} "
                    "(above)"]
        return [f"{KEY_DIFF}, the same on {len(keys)} keys:",
                *(f"  * {resource_label(plan, ('', k))}" for k in keys),
                *("  " + line for line in diff)]

    return details


def render_markdown(plan: Planned, manifest: Manifest | None, *, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan as a pull-request comment: the summary, errors and warnings, a table, then
    collapsed details. Cut to ``limit`` UTF-8 bytes, never dropping an error (see
    :func:`_md_fitted`)."""
    groups = region_groups(plan, manifest)
    head = [f"**{neutral.markdown(summary_line(plan))}**", ""]
    serious = _md_finding_lines(_serious(plan))
    rest = [*_md_table(plan), *_md_rollup(rollup(plan, manifest, groups)),
            *_md_changes(plan, manifest, groups), *_md_key_policies(plan),
            *_md_findings("Findings", _notes(plan))]
    for section in (left_alone_lines(plan), deprecation_lines(plan), ownership_lines(plan)):
        if section:
            rest += [f"**{neutral.markdown(section[0])}**", "",
                     *(f"- {neutral.markdown(line.strip())}" for line in section[1:]), ""]
    covered = regions_line(plan, manifest)
    if covered:
        rest += [neutral.markdown(covered), ""]
    text = _md_fitted(head, serious, rest, limit)
    return text + ("\n" if not text.endswith("\n") else "")


def _md_table(plan: Planned) -> list[str]:
    """Adds, removes and errors per Region."""
    blocked: dict[str, int] = defaultdict(int)
    for f in plan.findings:
        if f.severity is Severity.ERROR:
            blocked[f.region] += 1
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in plan.operations:
        counts[o.region][o.action is Action.REMOVE] += 1
    regions = sorted(set(counts) | set(blocked))
    if not regions:
        return []
    out = ["| Region | Add | Remove | Errors |", "|---|---:|---:|---:|"]
    for r in regions:
        adds, removes = counts.get(r, (0, 0))
        out.append(f"| {neutral.markdown(r) or '—'} | {adds} | {removes} | "
                   f"{blocked.get(r, 0)} |")
    return [*out, ""]


def _md_rollup(roll: Rollup) -> list[str]:
    """The roll-up as tables under the Region table, near the summary (README, "How a big
    plan reads"); a shortened principal's full ARN in its own column."""
    out: list[str] = []
    md = neutral.markdown
    if roll.rules:
        out += ["| Rule | Add | Remove |", "|---|---:|---:|",
                *(f"| {md(r.label)} | {r.add} | {r.remove} |" for r in roll.rules), ""]
    if roll.principals:
        full = any(r.full for r in roll.principals)
        out += ["| Principal | Add | Remove |" + (" ARN |" if full else ""),
                "|---|---:|---:|" + ("---|" if full else ""),
                *(f"| {md(r.label)} | {r.add} | {r.remove} |"
                  + (f" {md(r.full) or '—'} |" if full else "") for r in roll.principals), ""]
    return out


def _md_changes(plan: Planned, manifest: Manifest | None,
                groups: Sequence[tuple[str, tuple[Group, ...]]]) -> list[str]:
    """The operations as a collapsed diff block (code: :func:`neutral.text`, not Markdown):
    a ``#`` line per Region, a ``##`` line per rule's group."""
    if not groups:
        return []
    t = neutral.text
    line = _op_lines(plan, manifest)
    body = ["<details><summary>Changes</summary>", "", "```diff"]
    for region, region_groups_ in groups:
        body.append(f"# {t(region)}")
        for group in region_groups_:
            body.append(f"## {t(group.label)}")
            width, lines = _group_lines(line, group)
            for resource, _ in group.resources:
                body.append(f"~ {t(resource_label(plan, (region, resource)))}")
                body += [f"{sign}   {text.ljust(width)}  ({why})"
                         for sign, text, why in lines[resource]]
    return [*body, "```", "", "</details>", ""]


def _md_key_policies(plan: Planned) -> list[str]:
    """Each change of a key policy the plan rewrites, as a collapsed diff: once for every
    key it is made the same on, listing them."""
    body: list[str] = []
    for keys, diff in key_policy_changes(plan):
        labels = [resource_label(plan, ("", k)) for k in keys]
        title = (f"Key policy change: {neutral.html(labels[0])}" if len(keys) == 1
                 else f"Key policy change, the same on {len(keys)} keys")
        listed = [] if len(keys) == 1 else [*(f"- {neutral.markdown(k)}" for k in labels), ""]
        body += [f"<details><summary>{title}</summary>", "", *listed, "```diff",
                 *(neutral.text(line) for line in diff), "```", "", "</details>", ""]
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
