"""``reconcile export``: a reviewed starting manifest from the shares that exist today.

:func:`compute_export` is pure: given the caller's identity and the
:class:`~reconciler.core.planner.CurrentState` that
:func:`reconciler.shell.gather.read_export` gathered (the caller's images, their launch and
snapshot copy permissions, their snapshots and KMS keys), it returns manifest YAML text on
which ``reconcile plan`` reports no changes.

How shares become rules:

* only ``available`` images shared with at least one principal (launch permission) are
  exported; unshared images stay unmanaged, so the manifest never touches them;
* images with the same (launch set, copy set) form one rule that selects them by explicit
  ``ids`` and names its ``regions``; ``copy:`` is written only for images whose snapshots
  are shared;
* principals get names (``account-<id>``, ``org-<o-id>``, ``ou-<ou-id>``, or the caller's own
  names); account IDs are always quoted;
* ``public`` turns on ``settings.allow_public`` (with a warning comment); ``share_quota`` is
  raised when an image is shared with more entities than the default 1,000.

The candidate manifest is then checked with the planner's own pure functions
(:func:`reconciler.core.planner.compute_plan`) against the same state. An image the plan would
change or report an error or warning for (a snapshot encrypted with the AWS managed key,
consumers that may not use the image's KMS key, snapshots shared differently, ...) is left
out, with the reason in a comment, and the check repeats until the plan is empty. The result
therefore always passes :func:`reconciler.core.manifest.parse_manifest` and plans to "No changes".
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from .. import __version__
from .desired import creation_time, newest_first, select
from .errors import InputError, Problem, ReconcilerError, UsageError
from .files import read_input
from .kms import GrantShape, KeyInfo, PolicyError, grant_shapes, parse_policy
from .manifest import DEFAULT_REGIONS, parse_manifest
from .model import (
    ORG_ARN_RE,
    OU_ARN_RE,
    PUBLIC,
    Action,
    Identity,
    Image,
    Operation,
    OpKind,
    Principal,
    PrincipalKind,
    Severity,
    bad_account_id,
    by_resource,
    plural,
)
from .plan import Plan
from .planner import CurrentState, compute_plan
from .yamlload import MAX_BYTES, Located, load_yaml

SCHEMA_REF = "./schemas/manifest.schema.json"
DEFAULT_SHARE_QUOTA = 1000
DEFAULT_MAX_REMOVALS = 25
PRINCIPAL_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}", re.ASCII)
RULE_PREFIX = "shared-with-"
MAX_RULE_NAME = 120
# a dated build name: the family's name, then a date starting with the century
# (golden-eks-1.29-2026.11.03 -> "golden-eks-1.29-", "20")
FAMILY_RE = re.compile(r"(.*?[-_.])(19|20)[0-9]{2}")
WIDTH = 96  # comment lines are wrapped to this width
RegionKey = tuple[str, str]  # (region, image or snapshot ID)


class ExportError(ReconcilerError):
    """The export could not be produced (a bug guard: its own manifest did not check out)."""


@dataclass(frozen=True)
class SharedImage:
    """An image the caller owns, with its current permissions.

    ``copy`` maps each backing snapshot that was read to its ``createVolumePermission``
    principals; leave it empty when the snapshots' permissions were not read.
    """

    image: Image
    launch: frozenset[Principal]
    copy: Mapping[str, frozenset[Principal]] = field(default_factory=dict)

    @property
    def copy_union(self) -> frozenset[Principal] | None:
        """Everyone any backing snapshot is shared with; None when no snapshot is shared."""
        union = frozenset().union(*self.copy.values()) if self.copy else frozenset()
        return union or None


@dataclass(frozen=True)
class ImageFilter:
    """``--name-glob`` and ``--tag KEY=VALUE``: which images the export considers at all."""

    name_glob: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def matches(self, image: Image) -> bool:
        if self.name_glob is not None and not fnmatch.fnmatchcase(image.name, self.name_glob):
            return False
        tags = image.tag_map
        return all(tags.get(k) == v for k, v in self.tags)

    @property
    def active(self) -> bool:
        """True when some images may be left out of consideration."""
        return self.name_glob is not None or bool(self.tags)

    @property
    def description(self) -> str:
        parts = [f"--name-glob {self.name_glob!r}"] if self.name_glob is not None else []
        parts += [f"--tag {k}={v}" for k, v in self.tags]
        return " ".join(parts)


@dataclass(frozen=True)
class LeftOut:
    """A shared image the export does not manage, and why."""

    image: Image
    launch: frozenset[Principal]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ExportResult:
    text: str
    exported: tuple[Image, ...]
    left_out: tuple[LeftOut, ...]
    rules: int


# --------------------------------------------------------------------------- options


def parse_tag_filters(values: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``--tag KEY=VALUE`` options → sorted (key, value) pairs. ``KEY=`` matches an empty value."""
    out: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {text!r} must be KEY=VALUE (e.g. --tag channel=stable)")
        if key in out and out[key] != value:
            raise UsageError(f"--tag {key} is given twice with different values "
                             f"({out[key]!r} and {value!r}); an image has one value per tag")
        out[key] = value
    return tuple(sorted(out.items()))


def parse_names(raw: bytes, file: str) -> dict[str, str]:
    """A ``--names`` file (YAML mapping: name → principal, or a manifest, whose
    ``principals:`` are used) → principal value → name.

    Names follow the manifest's ``principals:`` rules; values are quoted 12-digit account
    IDs, Organization ARNs or OU ARNs. Every problem is reported with file and line.
    """
    doc, problems = load_yaml(raw, file, "names file")
    if doc is None:
        raise InputError(problems)
    if doc.data is None:
        raise InputError([*problems, doc.problem((), "names file is empty; expected a mapping "
                                                     "like  prod: \"111122223333\"")])
    if not isinstance(doc.data, dict):
        raise InputError([*problems, doc.problem((), "names file must be a mapping of names to "
                                                     "principals, like  prod: \"111122223333\"")])
    entries: Any = doc.data
    prefix: tuple[str, ...] = ()
    if "version" in entries and ("images" in entries or "principals" in entries):
        # a manifest: its `principals:` are the names
        entries, prefix = entries.get("principals") or {}, ("principals",)
        if not isinstance(entries, dict):
            raise InputError([*problems, doc.problem(prefix, "principals: expected a mapping of "
                                                             "names to principals")])
    by_value: dict[str, str] = {}
    for name, value in entries.items():
        problem = _names_entry(doc, (*prefix, name), name, value, by_value)
        if problem is not None:
            problems.append(problem)
        else:
            by_value[value] = name
    if problems:
        raise InputError(problems)
    return by_value


def _names_entry(doc: Located, path: tuple[str, ...], name: Any, value: Any,
                 by_value: Mapping[str, str]) -> Problem | None:
    """What is wrong with one ``name: principal`` entry of a names file, if anything."""
    if name == PUBLIC:
        return doc.problem(path, f"{name!r} is reserved (it means every AWS account); choose "
                                 "another name", key=True)
    if not PRINCIPAL_NAME_RE.fullmatch(name):
        return doc.problem(path, f"{name!r} is not a valid principal name (a letter, then up "
                                 "to 63 letters, digits, '_', '.', '-')", key=True)
    if not isinstance(value, str):
        raw_text = doc.raw(path)
        if isinstance(value, int) and not isinstance(value, bool) and raw_text is not None:
            read_as = f" (YAML reads it as {value})" if str(value) != raw_text else ""
            return doc.problem(path, f"{name}: {raw_text} was read by YAML as a number"
                                     f"{read_as}; quote it: \"{raw_text}\"")
        return doc.problem(path, f"{name}: expected a quoted account ID, Organization ARN or "
                                 f"OU ARN, got {type(value).__name__}")
    p = Principal.parse_literal(value)
    if p is None or p.is_public:
        what = ((value.isdigit() and bad_account_id(value))
                or f"{value!r} is not a 12-digit account ID, Organization ARN or OU ARN")
        return doc.problem(path, f"{name}: {what}")
    if value in by_value:
        return doc.problem(path, f"{name}: {value} is already named {by_value[value]!r}; give "
                                 "each principal one name")
    return None


def load_names(path: str) -> dict[str, str]:
    return parse_names(read_input(path, "names file", MAX_BYTES), path)


# --------------------------------------------------------------------------- pure part


def compute_export(identity: Identity, state: CurrentState,
                   names: Mapping[str, str] | None = None, *,
                   image_filter: ImageFilter | None = None,
                   schema_ref: str | None = SCHEMA_REF) -> ExportResult:
    """The manifest for the images of ``state`` that ``identity`` owns (pure).

    ``state`` is what :func:`reconciler.shell.gather.read_export` gathered: the images listed
    per Region, the launch permissions of the available ones, their snapshots, the copy
    permissions of the shared ones' snapshots and the snapshots' keys; ``state.regions`` are
    the Regions read (``settings.regions``). An image whose snapshots or keys are missing is
    left out, as ``plan`` would report it as an error. ``names`` maps principal values
    (account ID, Organization/OU ARN) to the names to use. ``schema_ref`` is the path the
    editor modeline points at (see :func:`schema_ref_for`), None to explain instead.
    """
    names = _checked_names(names or {})
    considered = _shared_images(state, image_filter)
    candidates = [s for s in considered if s.image.state == "available" and s.launch]
    regions = tuple(sorted(set(state.regions) or {s.image.region for s in candidates}
                           or set(DEFAULT_REGIONS)))
    # the keys of the shared images: their statements are the ones a plan would rewrite
    shared_keys = {(snap.region, snap.kms_key_id) for s in candidates
                   for sid in s.image.snapshot_ids
                   if (snap := state.snapshots.get((s.image.region, sid))) is not None
                   and snap.encrypted}
    stats = _Stats(
        unshared=sum(1 for s in considered if s.image.state == "available" and not s.launch),
        unavailable=sum(1 for s in considered if s.image.state != "available"),
        image_filter=image_filter,
        kms_grants=_grant_shape({k: v for k, v in state.keys.items() if k in shared_keys}),
        schema_ref=schema_ref)
    # A name glob could match images a filter kept out of consideration: IDs then.
    use_globs = image_filter is None or not image_filter.active
    left_out: dict[RegionKey, list[str]] = {}
    with_latest = True
    while True:
        chosen = [s for s in candidates if s.image.key not in left_out]
        dropped = [LeftOut(s.image, s.launch, tuple(left_out[s.image.key]))
                   for s in candidates if s.image.key in left_out]
        globs = _name_globs(_groups(chosen), considered, with_latest) if use_globs else {}
        text, rules = _render(identity.account, regions, chosen, dropped, names, stats, globs)
        try:
            problems = _self_check(text, identity, considered, chosen, state)
        except ExportError:
            if not with_latest or not any(f.latest for f in globs.values()):
                raise
            with_latest = False  # an older build cannot be managed as it is: select by IDs
            continue
        if not problems:
            return ExportResult(text, tuple(s.image for s in chosen), tuple(dropped), rules)
        for key, reasons in problems.items():
            known = left_out.setdefault(key, [])
            known += [r for r in dict.fromkeys(reasons) if r not in known]


def _checked_names(names: Mapping[str, str]) -> dict[str, str]:
    """``names`` as given, or ValueError (a bug guard: :func:`parse_names` checks files)."""
    for value, name in names.items():
        literal = Principal.parse_literal(value)
        if literal is None or literal.is_public or not PRINCIPAL_NAME_RE.fullmatch(name) \
                or name == PUBLIC:
            raise ValueError(f"invalid names entry {name!r}: {value!r}")
    if len(set(names.values())) != len(names):
        raise ValueError("names must give each principal a different name")
    return dict(names)


def _shared_images(state: CurrentState, image_filter: ImageFilter | None) -> list[SharedImage]:
    """The images the export considers, in (Region, image ID) order, with their permissions."""
    return [SharedImage(img, state.launch.get(img.key, frozenset()),
                        {sid: state.copy[(img.region, sid)] for sid in img.snapshot_ids
                         if (img.region, sid) in state.copy})
            for img in sorted((img for found in state.images.values() for img in found),
                              key=lambda i: i.key)
            if image_filter is None or image_filter.matches(img)]


def schema_ref_for(out: str | None) -> str | None:
    """The relative path from the exported manifest to a ``schemas/manifest.schema.json``
    in its folder or one above it (a checkout of this project, or a team repository that
    keeps a copy), so that the ``$schema`` line points at a file that exists; else None."""
    folder = FsPath(out).resolve().parent if out else FsPath.cwd()
    for up in (folder, *list(folder.parents)[:4]):
        candidate = up / "schemas" / "manifest.schema.json"
        if candidate.is_file():
            return os.path.relpath(candidate, folder) if up != folder else \
                "./schemas/manifest.schema.json"
    return None


def _grant_shape(keys: Mapping[RegionKey, KeyInfo]) -> GrantShape:
    """``any`` when every key that has the tool's grant statements has them in that shape,
    so that the exported manifest plans no rewrite of them."""
    shapes: set[GrantShape] = set()
    for info in keys.values():
        if info.policy:
            try:
                shapes |= grant_shapes(parse_policy(info.policy))
            except PolicyError:
                continue
    return GrantShape.ANY if shapes == {GrantShape.ANY} else GrantShape.AWS_RESOURCE


@dataclass(frozen=True)
class _Stats:
    unshared: int
    unavailable: int
    image_filter: ImageFilter | None
    kms_grants: GrantShape = GrantShape.AWS_RESOURCE  # the shape the keys' statements have
    schema_ref: str | None = SCHEMA_REF  # the $schema line's path (None: no such file)


def _self_check(text: str, identity: Identity, considered: Sequence[SharedImage],
                chosen: Sequence[SharedImage], gathered: CurrentState,
                ) -> dict[RegionKey, list[str]]:
    """Plan the candidate manifest against the same state: image → reasons it cannot stay."""
    plan = _plan_candidate(text, identity, considered, chosen, gathered)
    owner, key_info = _affected_images(chosen, gathered)
    by_id: dict[str, list[RegionKey]] = defaultdict(list)  # an AMI ID seen in two Regions
    for s in chosen:
        by_id[s.image.image_id].append(s.image.key)

    problems: dict[RegionKey, list[str]] = defaultdict(list)
    unexplained: list[str] = []
    for (region, resource), ops in by_resource(plan.operations).items():
        affected = owner.get((region, resource)) or by_id.get(resource)
        if not affected:
            unexplained.extend(f"{o.action.value} {o.kind.value} {o.principal.label} on "
                               f"{region} {resource}" for o in ops)
            continue
        reason = _ops_reason(resource, ops, key_info)
        for key in affected:
            problems[key].append(reason)
    images = {s.image.key: s.image for s in chosen}
    for f in plan.findings:
        if f.severity is Severity.INFO:
            continue
        affected = owner.get((f.region, f.resource)) or by_id.get(f.resource)
        if not affected:
            unexplained.append(f"{f.severity.value}[{f.code}] {f.region} {f.resource}: {f.message}")
            continue
        for key in affected:
            problems[key].append(_strip_label(f.message, images[key]))
    if unexplained:
        raise ExportError("export could not make a manifest that plans cleanly (please report "
                          "this): " + "; ".join(unexplained))
    return dict(problems)


def _plan_candidate(text: str, identity: Identity, considered: Sequence[SharedImage],
                    chosen: Sequence[SharedImage], gathered: CurrentState) -> Plan:
    """The plan of the candidate manifest: the considered images' launch permissions, and
    the copy permissions of the chosen ones (the only snapshots it manages)."""
    try:
        manifest = parse_manifest(text.encode("utf-8"), "<export>")
    except InputError as exc:  # a bug in the renderer, never the user's input
        raise ExportError("export produced an invalid manifest (please report this):\n"
                          f"{exc}") from None
    by_region: dict[str, list[Image]] = defaultdict(list)
    for s in considered:
        by_region[s.image.region].append(s.image)
    state = CurrentState(
        launch={s.image.key: s.launch for s in considered},
        snapshots=gathered.snapshots,
        copy={(s.image.region, sid): perms for s in chosen for sid, perms in s.copy.items()},
        keys=gathered.keys,
    )
    return compute_plan(manifest, identity, select(manifest, by_region), state)


def _affected_images(chosen: Sequence[SharedImage], state: CurrentState,
                     ) -> tuple[dict[RegionKey, list[RegionKey]], dict[str, KeyInfo]]:
    """Which chosen images each resource (image, snapshot, key by ARN) belongs to, and the
    keys by ARN."""
    owner: dict[RegionKey, list[RegionKey]] = defaultdict(list)
    key_info: dict[str, KeyInfo] = {}
    for s in chosen:
        img = s.image
        owner[img.key].append(img.key)
        for sid in img.snapshot_ids:
            owner[(img.region, sid)].append(img.key)
            snap = state.snapshots.get((img.region, sid))
            info = (state.keys.get((img.region, snap.kms_key_id))
                    if snap and snap.encrypted else None)
            if info is not None and info.arn:
                owner[(img.region, info.arn)].append(img.key)
                key_info[info.arn] = info
    return owner, key_info


def _labels(ops: Iterable[Operation]) -> str:
    return ", ".join(sorted({o.principal.label for o in ops}))


def _ops_reason(resource: str, ops: list[Operation], key_info: Mapping[str, KeyInfo]) -> str:
    adds = [o for o in ops if o.action is Action.ADD]
    removes = [o for o in ops if o.action is Action.REMOVE]
    kind = ops[0].kind
    if kind is OpKind.KMS:
        label = key_info[resource].label if resource in key_info else resource
        parts = []
        if adds:
            parts.append(f"KMS key {label} does not let {_labels(adds)} use it, so launches "
                         "by them fail today; managing the image would grant that access.")
        if removes:
            parts.append(f"The tool's own statements in the policy of KMS key {label} also "
                         f"allow {_labels(removes)}, which no exported image on that key is "
                         "shared with; managing the image would remove that access.")
        return " ".join(parts)
    if kind is OpKind.COPY:
        return (f"its snapshots are not shared alike (snapshot {resource} would "
                + " and ".join(f"{verb} copy permission for {_labels(group)}"
                               for verb, group in (("gain", adds), ("lose", removes)) if group)
                + ").")
    return ("the plan would " + " and ".join(f"{verb} launch permission for {_labels(group)}"
                                             for verb, group in (("add", adds), ("remove", removes))
                                             if group) + ".")


def _strip_label(message: str, image: Image) -> str:
    for prefix in (f"{image.image_id} ({image.name}): ", f"{image.image_id} ({image.name}) ",
                   f"{image.image_id}: ", f"{image.image_id} "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


# --------------------------------------------------------------------------- rendering


def _q(text: str) -> str:
    """A YAML scalar for ``text`` that YAML reads back as exactly that string."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", text) and yaml.safe_load(text) == text:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _qv(text: str) -> str:
    """A principal value (account ID, ARN): always double-quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment_text(text: str) -> str:
    """One-line, printable text for a comment (image names come from AWS)."""
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(_comment_text(text), width=WIDTH, initial_indent=first,
                         subsequent_indent=rest, break_long_words=False,
                         break_on_hyphens=False) or [first.rstrip()]


def generated_name(p: Principal) -> str:
    """``account-<id>``, ``org-<o-id>`` or ``ou-<ou-id>`` (at most 64 characters)."""
    if p.kind is PrincipalKind.ACCOUNT:
        name = f"account-{p.value}"
    elif p.kind is PrincipalKind.ORGANIZATION:
        m = ORG_ARN_RE.fullmatch(p.value)
        name = f"org-{m.group(1)}" if m else "org"
    else:
        m = OU_ARN_RE.fullmatch(p.value)
        name = f"ou-{m.group(2)}" if m else "ou"
    if len(name) > 64:
        name = f"{name[:55]}-{hashlib.sha256(p.value.encode()).hexdigest()[:8]}"
    return name


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


@dataclass(frozen=True)
class _Group:
    launch: tuple[Principal, ...]
    copy: tuple[Principal, ...] | None
    images: tuple[Image, ...]

    @property
    def sort_key(self) -> tuple[object, ...]:
        return (tuple(p.sort_key for p in self.launch),
                (0,) if self.copy is None else (1, tuple(p.sort_key for p in self.copy)),
                tuple(i.key for i in self.images))


def _groups(chosen: Sequence[SharedImage]) -> list[_Group]:
    grouped: dict[tuple[frozenset[Principal], frozenset[Principal] | None], list[Image]] = {}
    for s in chosen:
        grouped.setdefault((s.launch, s.copy_union), []).append(s.image)
    groups = [_Group(tuple(sorted(launch)), None if copy is None else tuple(sorted(copy)),
                     tuple(sorted(imgs, key=lambda i: i.key)))
              for (launch, copy), imgs in grouped.items()]
    return sorted(groups, key=lambda g: g.sort_key)


@dataclass(frozen=True)
class _Family:
    """A group selected by ``name: glob`` (and ``latest: N`` when older builds are unshared)."""

    glob: str
    latest: int | None = None


def _name_globs(groups: Sequence[_Group], considered: Sequence[SharedImage],
                with_latest: bool = True) -> dict[_Group, _Family]:
    """Groups of two or more images named as one family (``golden-al2023-2026.11.1``,
    ``golden-al2023-2026.12.1`` → ``golden-al2023-2026.*``), for a ``name`` selector instead
    of a list of IDs, where the glob matches exactly the group's images among every image read
    in its Regions, so that the manifest manages exactly what it manages today.

    Otherwise, with ``latest: N``, where the group's images are the N newest of the glob's
    matches in each of its Regions and every older match is available and shared with nobody
    (the rule then manages those too and shares nothing with them, as today). For dated
    builds the glob tried first is the family's name followed by the date's century
    (``golden-eks-1.29-20*``): next month's build matches it, the builds of another family
    (``golden-eks-1.30-…``, ``golden-eks-gpu-…``) never do."""
    out: dict[_Group, _Family] = {}
    for g in groups:
        names = sorted({i.name for i in g.images})
        if not all(names):
            continue
        regions = {i.region for i in g.images}

        def matching(glob: str, regions: set[str] = regions) -> list[SharedImage]:
            return [s for s in considered if s.image.region in regions
                    and fnmatch.fnmatchcase(s.image.name, glob)]

        common = _common_stem(names) if len({i.key for i in g.images}) >= 2 else None
        if common is not None and {s.image.key for s in matching(common + "*")} == {
                i.key for i in g.images}:
            out[g] = _Family(common + "*")
            continue
        if not with_latest or g.copy is not None:
            continue
        for glob in dict.fromkeys(x for x in (_family_glob(names), common and common + "*") if x):
            if (n := _latest(g, matching(glob))) is not None:
                out[g] = _Family(glob, n)
                break
    return out


def _usable_stem(stem: str) -> str | None:
    return stem if len(stem) >= 3 and not any(c in stem for c in "*?[]") else None


def _common_stem(names: Sequence[str]) -> str | None:
    """The names' common prefix, up to its last ``-``, ``_`` or ``.``."""
    prefix = os.path.commonprefix(list(names))
    cut = max(prefix.rfind(c) for c in "-_.")
    return _usable_stem(prefix[:cut + 1]) if cut >= 2 else None


def _family_glob(names: Sequence[str]) -> str | None:
    """``golden-al2023-20*`` for builds named ``golden-al2023-2026.11.1``: the family's name
    and the century of the date that follows it, when every name agrees on both."""
    found = {(m.group(1), m.group(2)) if (m := FAMILY_RE.match(n)) else None for n in names}
    if len(found) != 1 or (only := found.pop()) is None or not _usable_stem(only[0]):
        return None
    return f"{only[0]}{only[1]}*"


def _latest(g: _Group, matched: Sequence[SharedImage]) -> int | None:
    """N when ``latest: N`` over ``matched`` selects exactly the group's images in every
    Region and the other matches can be managed as they are (available, shared with nobody)."""
    mine = {i.key for i in g.images}
    if len(matched) == len(mine) or not all(creation_time(s.image) for s in matched) or any(
            s.image.key not in mine and (s.image.state != "available" or s.launch
                                         or s.copy_union) for s in matched):
        return None
    counts = {sum(1 for i in g.images if i.region == r) for r in {i.region for i in g.images}}
    if len(counts) != 1:
        return None
    n = counts.pop()
    for region in {i.region for i in g.images}:
        ranked = newest_first(s.image for s in matched if s.image.region == region)
        if {i.key for i in ranked[:n]} != {i.key for i in g.images if i.region == region}:
            return None
    return n


def _rule_names(groups: Sequence[_Group], names: Mapping[Principal, str],
                globs: Mapping[_Group, _Family] | None = None) -> list[str]:
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


def _render(account: str, regions: Sequence[str], chosen: Sequence[SharedImage],
            left_out: Sequence[LeftOut], given: Mapping[str, str],
            stats: _Stats, globs: Mapping[_Group, _Family] | None = None) -> tuple[str, int]:
    """The manifest text and its number of rules."""
    names = _principal_names([p for s in chosen for p in (*s.launch, *(s.copy_union or ()))],
                             given)
    groups = _groups(chosen)
    public = any(Principal.public() in (*g.launch, *(g.copy or ())) for g in groups)
    quota = max(DEFAULT_SHARE_QUOTA,
                max((len(s.launch - {Principal.public()}) for s in chosen), default=0))
    out = _header(account, regions, stats, len(left_out))
    out += ["version: 1", "", *_settings(regions, public, quota, stats.kms_grants), ""]
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


def _header(account: str, regions: Sequence[str], stats: _Stats, left_out: int) -> list[str]:
    scope = f"images account {account} owns in {', '.join(regions)}"
    if stats.image_filter is not None and stats.image_filter.description:
        scope += f" (only those matching {stats.image_filter.description})"
    paragraphs = [
        f"Exported by `reconcile export` (reconciler {__version__}) from the current launch "
        f"permissions of the {scope}.",
        "REVIEW IT BEFORE USE: it records today's shares as they are, including any added by "
        "hand that nobody intended. Remove those here and `reconcile apply` removes them in AWS "
        "(prune: true). As exported, `reconcile plan` reports no changes.",
        "Only shared images are listed; the others stay unmanaged (never touched) until a rule "
        "selects them. Rules select images by ID, so a new image is not shared until its ID is "
        "added (or a rule selects by name/tags). Generated names such as account-111122223333 "
        "can be renamed, or given with --names FILE.",
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
              grants: GrantShape = GrantShape.AWS_RESOURCE) -> list[str]:
    out = ["settings:", "  regions: [" + ", ".join(regions) + "]",
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


def _rules(groups: Sequence[_Group], names: Mapping[Principal, str],
           globs: Mapping[_Group, _Family]) -> list[str]:
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
