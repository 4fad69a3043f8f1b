"""``reconcile export``: a reviewed starting manifest from the shares that exist today.

:func:`compute_export` is pure: given the caller's identity and the
:class:`~reconciler.core.planning.CurrentState` that
:func:`reconciler.shell.reads.read_export` gathered (the caller's images, their launch and
snapshot copy permissions, their snapshots and KMS keys), it returns manifest YAML text on
which ``reconcile plan`` reports no changes.

How shares become rules:

* only ``available`` images shared with at least one principal (launch permission) are
  exported; unshared images stay unmanaged, so the manifest never touches them;
* images with the same (launch set, copy set) form one rule that selects them by explicit
  ``ids`` (or by a name glob, with ``latest: N`` for dated builds, when it selects exactly
  them) and names its ``regions``; ``copy:`` is written only for images whose snapshots
  are shared;
* principals get names (``account-<id>``, ``org-<o-id>``, ``ou-<ou-id>``, or the caller's own
  names); account IDs are always quoted;
* ``public`` turns on ``settings.allow_public`` (with a warning comment); ``share_quota`` is
  raised when an image is shared with more entities than the default 1,000.

The candidate manifest is then checked with the planner's own pure functions
(:func:`reconciler.core.planning.compute_plan`) against the same state. An image the plan would
change or report an error or warning for (a snapshot encrypted with the AWS managed key,
consumers that may not use the image's KMS key, snapshots shared differently, ...) is left
out, with the reason in a comment, and the check repeats until the plan is empty. The result
therefore always passes :func:`reconciler.core.manifest.parse_manifest` and plans to "No changes".

The grouping and name globs are in :mod:`.export_rules`, the manifest text in
:mod:`.export_yaml`, the principal names in :mod:`.names`.
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .desired import rule_matches, select
from .errors import InputError, ReconcilerError, UsageError
from .export_rules import SharedImage, group_images, name_globs
from .export_yaml import SCHEMA_REF, ExportStats, LeftOut, OwnershipName, render_manifest
from .findings import Code
from .kms import GrantShape, KeyInfo, PolicyError, grant_shapes
from .manifest import DEFAULT_REGIONS, parse_manifest
from .model import (
    OWNERSHIP_TAG,
    PUBLIC,
    Action,
    Identity,
    Image,
    ImageState,
    Operation,
    OpKind,
    Principal,
    RegionKey,
    Severity,
    by_resource,
)
from .names import PRINCIPAL_NAME_RE
from .plan import Planned
from .planning import CurrentState, compute_plan

# settings.name as the manifest schema allows it (a tag value AWS holds may not fit)
MANIFEST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:/=+@-]{0,255}")


class ExportError(ReconcilerError):
    """The export could not be produced (a bug guard: its own manifest did not check out)."""


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


# --------------------------------------------------------------------------- pure part


def compute_export(identity: Identity, state: CurrentState,
                   names: Mapping[str, str] | None = None, *,
                   image_filter: ImageFilter | None = None,
                   schema_ref: str | None = SCHEMA_REF,
                   file_name: str | None = None) -> ExportResult:
    """The manifest for the images of ``state`` that ``identity`` owns (pure).

    ``state`` is what :func:`reconciler.shell.reads.read_export` gathered: the images listed
    per Region, the launch permissions of the available ones, their snapshots, the copy
    permissions of the shared ones' snapshots and the snapshots' keys; ``state.regions`` are
    the Regions read (``settings.regions``). An image whose snapshots or keys are missing is
    left out, as ``plan`` would report it as an error. ``names`` maps principal values
    (account ID, Organization/OU ARN) to the names to use. ``schema_ref`` is the path the
    editor modeline points at (see :func:`schema_ref_for`), None to explain instead.
    ``file_name`` is the name the output file's stem gives the manifest (None: standard
    output); see :func:`_ownership_name` for the ``settings.name`` written.
    """
    names = _checked_names(names or {})
    considered = _shared_images(state, image_filter)
    candidates = [s for s in considered if s.image.state == ImageState.AVAILABLE and s.launch]
    regions = tuple(sorted(set(state.regions) or {s.image.region for s in candidates}
                           or set(DEFAULT_REGIONS)))
    # the keys of the shared images: their statements are the ones a plan would rewrite
    shared_keys = {RegionKey(snap.region, snap.kms_key_id) for s in candidates
                   for sid in s.image.snapshot_ids
                   if (snap := state.snapshots.get(RegionKey(s.image.region, sid))) is not None
                   and snap.encrypted}
    stats = ExportStats(
        unshared=sum(1 for s in considered if s.image.state == ImageState.AVAILABLE and not s.launch),
        unavailable=sum(1 for s in considered if s.image.state != ImageState.AVAILABLE),
        filter_description=image_filter.description if image_filter is not None else "",
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
        globs = name_globs(group_images(chosen), considered, with_latest) if use_globs else {}
        text, rules = render_manifest(identity.account, regions, chosen, dropped, names, stats,
                                      globs, _ownership_name(considered, file_name))
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


def _ownership_name(considered: Sequence[SharedImage], file_name: str | None) -> OwnershipName:
    """The ``settings.name`` to write (SPEC §7a: a manifest names itself).

    A manifest releases the images carrying its name that no rule matches, revoking their
    shares, and images the export did not read (other Regions, outside ``--name-glob`` or
    ``--tag``) may carry any name the read ones do. So the manifest gets a name none of the
    images read carries: the output file's name (``exported`` on standard output) if it is
    free, else that name with ``-export``. Its images then change hands only by a tag
    (``warning[other-manifest]``), and continuing an existing manifest is the reviewer's
    explicit choice of ``settings.name``.
    """
    taken = frozenset(s.image.tag_map[OWNERSHIP_TAG] for s in considered
                      if OWNERSHIP_TAG in s.image.tag_map)
    base = file_name if file_name and MANIFEST_NAME_RE.fullmatch(file_name) else "exported"
    name, n = (base, 2) if base not in taken else (f"{base[:240]}-export", 2)
    while name in taken:
        name, n = f"{base[:240]}-export-{n}", n + 1
    return OwnershipName(name, tagged=bool(taken))


def _checked_names(names: Mapping[str, str]) -> dict[str, str]:
    """``names`` as given, or ValueError (a bug guard: :func:`.names.parse_names` checks files)."""
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
                        {sid: state.copy[RegionKey(img.region, sid)] for sid in img.snapshot_ids
                         if (img.region, sid) in state.copy})
            for img in sorted((img for found in state.images.values() for img in found),
                              key=lambda i: i.key)
            if image_filter is None or image_filter.matches(img)]


def _grant_shape(keys: Mapping[RegionKey, KeyInfo]) -> GrantShape:
    """``any`` when every key that has the tool's grant statements has them in that shape,
    so that the exported manifest plans no rewrite of them."""
    shapes: set[GrantShape] = set()
    for info in keys.values():
        if info.policy:
            try:
                shapes |= grant_shapes(info.document())
            except PolicyError:
                continue
    return GrantShape.ANY if shapes == {GrantShape.ANY} else GrantShape.AWS_RESOURCE


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
        affected = owner.get(RegionKey(region, resource)) or by_id.get(resource)
        if not affected:
            unexplained.extend(f"{o.action.value} {o.kind.value} {o.principal.label} on "
                               f"{region} {resource}" for o in ops)
            continue
        reason = _ops_reason(resource, ops, key_info)
        for key in affected:
            problems[key].append(reason)
    for f in plan.findings:
        if f.severity is Severity.INFO or f.code is Code.OTHER_MANIFEST:
            continue  # another manifest's tag: the shares are as they are, apply retags
        affected = owner.get(RegionKey(f.region, f.resource)) or by_id.get(f.resource)
        if not affected:
            unexplained.append(f.headline())
            continue
        for key in affected:
            problems[key].append(f.detail or f.message)
    if unexplained:
        raise ExportError("export could not make a manifest that plans cleanly (please report "
                          "this): " + "; ".join(unexplained))
    return dict(problems)


def _plan_candidate(text: str, identity: Identity, considered: Sequence[SharedImage],
                    chosen: Sequence[SharedImage], gathered: CurrentState) -> Planned:
    """The plan of the candidate manifest: the considered images' launch permissions, and
    the copy permissions read (the chosen images' and the older builds' of a family)."""
    try:
        manifest = parse_manifest(text.encode("utf-8"), "<export>")
    except InputError as exc:  # a bug in the renderer, never the user's input
        raise ExportError("export produced an invalid manifest (please report this):\n"
                          f"{exc}") from None
    by_region: dict[str, list[Image]] = defaultdict(list)
    for s in considered:
        by_region[s.image.region].append(s.image)
    selection = select(manifest, by_region)
    managed = {m.image.key for m in selection.managed}
    # what a manifest of this name would release: images carrying its tag that no rule
    # matches (none, as the name is one no image read carries; a revocation here would be
    # an unexplained operation, and the export would stop)
    released = tuple(s.image for s in considered if s.image.key not in managed
                     and s.image.tag_map.get(OWNERSHIP_TAG) == manifest.settings.name
                     and not any(rule_matches(r, s.image) for r in manifest.rules
                                 if s.image.region in r.regions))
    state = CurrentState(
        launch={s.image.key: s.launch for s in considered},
        released=released,
        snapshots=gathered.snapshots,
        # every copy permission read: the chosen images', and those of the older builds a
        # `latest` rule with `copy:` manages (read for that reason)
        copy={RegionKey(s.image.region, sid): perms for s in considered
              for sid, perms in s.copy.items()},
        keys=gathered.keys,
    )
    return compute_plan(manifest, identity, selection, state)


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
            owner[RegionKey(img.region, sid)].append(img.key)
            snap = state.snapshots.get(RegionKey(img.region, sid))
            info = (state.keys.get(RegionKey(img.region, snap.kms_key_id))
                    if snap and snap.encrypted else None)
            if info is not None and info.arn:
                owner[RegionKey(img.region, info.arn)].append(img.key)
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
