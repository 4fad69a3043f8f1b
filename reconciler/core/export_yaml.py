"""The text of an exported manifest, written line by line so that it keeps its comments:
why each setting has its value, what each rule selects today, and why an image was left out.
Every value is quoted so that YAML reads it back as written."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import yaml

from .. import __version__
from . import neutral
from .export_rules import Family, Group, SharedImage, group_images
from .kms import GrantShape
from .model import PUBLIC, Image, Principal, plural
from .names import generated_name

SCHEMA_REF = "./schemas/manifest.schema.json"
DEFAULT_SHARE_QUOTA = 1000
DEFAULT_MAX_REMOVALS = 25
RULE_PREFIX = "shared-with-"
MAX_RULE_NAME = 120
WIDTH = 96  # comment lines are wrapped to this width


@dataclass(frozen=True)
class LeftOut:
    """A shared image the export does not manage, and why."""

    image: Image
    launch: frozenset[Principal]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class OwnershipName:
    """The ``settings.name`` an export writes, and whether images read carry such tags."""

    name: str
    tagged: bool = False  # some images read carry a reconciler:manifest tag (not this name)


@dataclass(frozen=True)
class ExportStats:
    unshared: int
    unavailable: int
    filter_description: str  # which images were considered ("" for all)
    kms_grants: GrantShape = GrantShape.AWS_RESOURCE  # the shape the keys' statements have
    schema_ref: str | None = SCHEMA_REF  # the $schema line's path (None: no such file)


def _q(text: str) -> str:
    """A YAML scalar for ``text`` that YAML reads back as exactly that string."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", text) and yaml.safe_load(text) == text:
        return text
    return _qv(text)


def _qv(text: str) -> str:
    """``text`` double-quoted (principal values are always): escaped as YAML escapes
    them when it holds a character that must not be printed raw (SPEC §7d), so that it
    reads back as exactly ``text`` and stays on its line."""
    if text.isprintable() and "##[" not in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    dumped = yaml.safe_dump(text, default_style='"', width=1 << 30, allow_unicode=False)
    return dumped.rstrip("\n").removesuffix("\n...").replace("##[", "#\\x23[")


def _comment_text(text: str) -> str:
    """One inert line for a comment (image names come from AWS): whitespace runs,
    line breaks included, become one space; anything else unprintable is shown escaped."""
    return neutral.text(" ".join(text.split()))


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(_comment_text(text), width=WIDTH, initial_indent=first,
                         subsequent_indent=rest, break_long_words=False,
                         break_on_hyphens=False) or [first.rstrip()]


def _principal_names(principals: Iterable[Principal],
                     given: Mapping[str, str]) -> dict[Principal, str]:
    taken = set(given.values())
    out: dict[Principal, str] = {}
    for p in sorted(set(principals)):
        if p.is_public:
            continue
        if p.value in given:
            out[p] = given[p.value]
            continue
        base = name = generated_name(p)
        n = 2
        while name in taken:
            name = f"{base[:60]}-{n}"
            n += 1
        taken.add(name)
        out[p] = name
    return out


def _ref(p: Principal, names: Mapping[Principal, str]) -> str:
    """How a rule's ``launch``/``copy`` list names ``p``."""
    return PUBLIC if p.is_public else _q(names[p])


def _flow(items: Sequence[str], indent: str, key: str) -> list[str]:
    """``key: [a, b]`` when it fits on a line, else a block list."""
    line = f"{indent}{key}: [{', '.join(items)}]"
    if len(line) <= WIDTH or not items:
        return [line]
    return [f"{indent}{key}:", *(f"{indent}  - {item}" for item in items)]


def _short(refs: Sequence[str]) -> str:
    shown = list(refs) if len(refs) <= 3 else [*refs[:2], f"and-{len(refs) - 2}-more"]
    return "-".join(shown)


def _rule_names(groups: Sequence[Group], names: Mapping[Principal, str],
                globs: Mapping[Group, Family] | None = None) -> list[str]:
    taken: set[str] = set()
    out = []
    for g in groups:
        family = (globs or {}).get(g)
        glob = family.glob if family is not None else None
        if glob is not None:  # the family's own name: golden-al2023-20* -> golden-al2023
            base = re.sub(r"[-_.](19|20)?\*$|\*$", "", glob).rstrip("-_.")
        else:
            base = RULE_PREFIX + _short([PUBLIC if p.is_public else names[p] for p in g.launch])
        if g.copy and glob is None:
            base += "-copy-" + _short([PUBLIC if p.is_public else names[p] for p in g.copy])
        base = base[:MAX_RULE_NAME].rstrip("-.")
        name, n = base, 2
        while name in taken:
            name = f"{base}-{n}"
            n += 1
        taken.add(name)
        out.append(name)
    return out


def _setting(text: str, comment: str) -> str:
    return f"{text:<26}# {comment}"


def render_manifest(account: str, regions: Sequence[str], chosen: Sequence[SharedImage],
                    left_out: Sequence[LeftOut], given: Mapping[str, str], stats: ExportStats,
                    globs: Mapping[Group, Family] | None = None,
                    name: OwnershipName = OwnershipName("exported")) -> tuple[str, int]:
    """The manifest text and its number of rules; ``name``: its ``settings.name``."""
    names = _principal_names([p for s in chosen for p in (*s.launch, *(s.copy_union or ()))],
                             given)
    groups = group_images(chosen)
    public = any(Principal.public() in (*g.launch, *(g.copy or ())) for g in groups)
    quota = max(DEFAULT_SHARE_QUOTA,
                max((len(s.launch - {Principal.public()}) for s in chosen), default=0))
    out = _header(account, regions, stats, len(left_out), by_name=bool(globs))
    out += ["version: 1", "", *_settings(regions, public, quota, stats.kms_grants, name), ""]
    if names:
        out.append(_setting("principals:", "always quote account IDs"))
        out += [f"  {_q(name)}: {_qv(p.value)}"
                for p, name in sorted(names.items(), key=lambda kv: kv[1])]
    else:
        out.append("principals: {}")
    out.append("")
    out += _rules(groups, names, globs or {})
    out += _left_out_block(left_out, given)
    return "\n".join(out) + "\n", len(groups)


def _header(account: str, regions: Sequence[str], stats: ExportStats, left_out: int,
            by_name: bool = False) -> list[str]:
    scope = f"images account {account} owns in {', '.join(regions)}"
    if stats.filter_description:
        scope += f" (only those matching {stats.filter_description})"
    paragraphs = [
        f"Exported by `reconcile export` (reconciler {__version__}) from the current launch "
        f"permissions of the {scope}.",
        "REVIEW IT BEFORE USE: it records today's shares as they are, including any added by "
        "hand that nobody intended. Remove those here and `reconcile apply` removes them in AWS "
        "(prune: true). As exported, `reconcile plan` reports no changes.",
        "Only shared images are listed; the others stay unmanaged (never touched) until a rule "
        + ("selects them. A rule with a name glob shares each new build that matches it (with "
           "`latest: N`, the oldest falls out); a rule listing IDs shares a new image only once "
           "its ID is added. " if by_name else
           "selects them. Rules select images by ID, so a new image is not shared until its ID "
           "is added (or a rule selects by name/tags). ")
        + "Generated names such as account-111122223333 can be renamed, or given with --names "
          "FILE.",
    ]
    if stats.schema_ref:
        out = [f"# yaml-language-server: $schema={stats.schema_ref}"]
    else:
        out = _wrap("Editor help: the manifest's JSON Schema ships inside the reconciler "
                    "package (reconciler/schemas/manifest.schema.json); copy it into your "
                    "repository and point a `yaml-language-server: $schema=` line at the copy.",
                    "# ", "# ")
    for i, text in enumerate(paragraphs):
        out += (["#"] if i else []) + _wrap(text, "# ", "# ")
    unlisted = []
    if stats.unshared:
        unlisted.append(f"{plural(stats.unshared, 'image')} shared with nobody")
    if stats.unavailable:
        unlisted.append(plural(stats.unavailable, "disabled or otherwise unavailable image"))
    if unlisted:
        out += _wrap(f"Not listed: {' and '.join(unlisted)}.", "# ", "# ")
    if left_out:
        many = left_out != 1
        out += _wrap(f"{left_out} shared image{'s are' if many else ' is'} left out because "
                     f"managing {'them as they are' if many else 'it as it is'} would change AWS "
                     "or fail the plan: see the end of this file.", "# ", "# ")
    return out


def _settings(regions: Sequence[str], public: bool, quota: int,
              grants: GrantShape = GrantShape.AWS_RESOURCE,
              name: OwnershipName = OwnershipName("exported")) -> list[str]:
    out = ["settings:"]
    if name.tagged:
        out += _wrap("Some images carry the reconciler:manifest tag of a manifest: this name is "
                     "one none of them carries, so that this manifest releases nothing. To "
                     "continue that manifest instead, set its name here (it then releases "
                     "every image it tags that no rule below matches).", "  # ", "  # ")
        out.append(f"  name: {_q(name.name)}")
    else:
        out.append(_setting(f"  name: {_q(name.name)}",
                            "the reconciler:manifest tag apply writes; unique per owner account"))
    out += ["  regions: [" + ", ".join(regions) + "]",
           _setting("  prune: true", "remove permissions nobody declared from the images below")]
    if public:
        out += _wrap("WARNING: some images below are PUBLIC (any AWS account may launch them). "
                     "This keeps them public; remove `public` from their rules and set this to "
                     "false unless that is intended.", "  # ", "  # ")
        out.append("  allow_public: true")
    else:
        out.append(_setting("  allow_public: false", "a rule may name `public` only when true"))
    out.append(_setting("  kms: key-policy", "keep KMS key policies of encrypted images in step"))
    if grants is GrantShape.ANY:
        out.append(_setting("  kms_grants: any", "consumers may grant their Auto Scaling role"))
    out += [
            _setting(f"  max_removals: {DEFAULT_MAX_REMOVALS}",
                     "apply refuses bigger removals without --allow-mass-removal")]
    if quota > DEFAULT_SHARE_QUOTA:
        out += _wrap(f"raised from the default {DEFAULT_SHARE_QUOTA}: an image is shared with "
                     f"{quota} entities; your EC2 quota for AMI sharing must allow it.",
                     "  # ", "  # ")
    out.append(f"  share_quota: {quota}")
    return out


def _rules(groups: Sequence[Group], names: Mapping[Principal, str],
           globs: Mapping[Group, Family]) -> list[str]:
    if not groups:
        return [*_wrap("No shared image was found, so no rule is exported.", "# ", "# "),
                "images: []"]
    out = ["images:"]
    for g, rule_name in zip(groups, _rule_names(groups, names, globs), strict=True):
        out.append(f"  - name: {_q(rule_name)}")
        if Principal.public() in g.launch:
            out.append("    # WARNING: public: every AWS account may launch these images")
        family = globs.get(g)
        glob = family.glob if family is not None else None
        today = _comment_text(", ".join(sorted({i.image_id for i in g.images})))
        if family is not None and family.latest is not None:
            out += ["    select:", f"      name: {_q(family.glob)}",
                    f"      latest: {family.latest}  # the newest by CreationDate, per Region; "
                    f"today: {today}"]
        elif family is not None:
            out += ["    select:", f"      name: {_q(family.glob)}  # today: {today}"]
        else:
            out += ["    select:", "      ids:"]
        seen: set[str] = set()
        for img in g.images if glob is None else ():
            if img.image_id not in seen:  # an ID twice (two Regions) is listed once
                seen.add(img.image_id)
                note = _comment_text(f"{img.region}  {img.name}".rstrip())
                out.append(f"        - {img.image_id}  # {note}")
        out.append("    regions: [" + ", ".join(sorted({i.region for i in g.images})) + "]")
        out += _flow([_ref(p, names) for p in g.launch], "    ", "launch")
        if g.copy is not None:
            out += _flow([_ref(p, names) for p in g.copy], "    ", "copy")
    return out


def _left_out_block(left_out: Sequence[LeftOut], given: Mapping[str, str]) -> list[str]:
    if not left_out:
        return []
    out = ["", *_wrap("Left out: these images are shared, but managing them as they are would "
                      "change AWS or fail the plan, so this manifest does not manage them and "
                      "`reconcile` leaves them alone. Fix the cause, or add a rule for them "
                      "once the change it plans is what you want.", "# ", "# ")]
    for lo in sorted(left_out, key=lambda x: x.image.key):
        img = lo.image
        who = ", ".join(_who(p, given) for p in sorted(lo.launch))
        out.append("#")
        out += _wrap(f"- {img.image_id} in {img.region} ({img.name}), shared with {who}:",
                     "# ", "#   ")
        for reason in lo.reasons:
            out += _wrap(reason if reason.endswith(".") else reason + ".", "#   ", "#   ")
    return out


def _who(p: Principal, given: Mapping[str, str]) -> str:
    name = given.get(p.value)
    return f"{p.label} ({name})" if name else p.label
