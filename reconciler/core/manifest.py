"""The manifest: loading, validation in layers, and the immutable value it becomes.

Layers (every error from every layer is collected, each naming file, line and value):
1. strict YAML (:mod:`reconciler.core.yamlload`): syntax, duplicate keys, size bounds;
2. JSON Schema (``schemas/manifest.schema.json``): shape, formats, unknown keys; alongside
   it, Region names against botocore's partition data (:mod:`reconciler.core.regions`);
3. semantics: principal references, public opt-in, org/OU in ``copy``, unique rule names,
   share quota.
No AWS call is made by anything in this module.
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from .errors import InputError, Problem
from .findings import Code
from .kms import GrantShape
from .model import (
    OWNERSHIP_TAG,
    PUBLIC,
    REGION_RE,
    Finding,
    Principal,
    bad_account_id,
    principal_hint,
)
from .owners import Owner as Owner
from .owners import plan_role_problems
from .pacing import Rate
from .regions import partition_of, region_problem
from .schema import fmt_path, schema_problems
from .yamlload import Located, Path, load_yaml

DEFAULT_REGIONS = ("us-east-1",)


class OwnershipMode(enum.StrEnum):
    """``settings.ownership``: whether managed images are recorded in AWS with a tag."""

    TAG = "tag"  # tag them reconciler:manifest=<settings.name>, so releases can be found
    NONE = "none"


class OnRelease(enum.StrEnum):
    """``settings.on_release``: what happens to an image no rule matches any more."""

    REVOKE = "revoke"
    KEEP = "keep"


class KmsMode(enum.StrEnum):
    """``settings.kms``: what the plan does about the KMS keys of encrypted images."""

    KEY_POLICY = "key-policy"  # keep the tool's statements in step with the shares
    CHECK = "check"  # only check that consumers have key access (error when not)
    OFF = "off"  # ignore keys


@dataclass(frozen=True)
class Settings:
    regions: tuple[str, ...] = DEFAULT_REGIONS
    prune: bool = True
    allow_public: bool = False
    kms: KmsMode = KmsMode.KEY_POLICY
    kms_grants: GrantShape = GrantShape.AWS_RESOURCE
    max_removals: int = 25
    share_quota: int = 1000
    public_quota: int = 5  # EC2 quota "Public AMIs" per Region
    # SPEC §7b: a lifecycle fall-out or release waits while the build was launched this
    # recently (0: off)
    keep_launched_within_days: int = 14
    # SPEC §7b: an account's removal waits while the image's AMI usage report lists its use
    usage_reports: bool = False
    # a build that falls out of every rule's lifecycle selection while still shared is
    # deprecated at once (EnableImageDeprecation): deprecate, let use drain, then unshare
    deprecate_retired: bool = False
    role_arn: str | None = None
    plan_role_arn: str | None = None  # read-only, in role_arn's account (see Owner)
    name: str = "manifest"  # the ownership tag's value (required while ownership is tag)
    ownership: OwnershipMode = OwnershipMode.TAG
    on_release: OnRelease = OnRelease.REVOKE
    # API action -> its token bucket, for accounts whose limits AWS raised (pacing.py)
    api_rates: tuple[tuple[str, Rate], ...] = ()


_TAG_VALUE_BAD = re.compile(r"[^A-Za-z0-9 _.:/=+@-]")


def default_name(path: str) -> str:
    """The file's stem as a tag value (characters a tag value cannot hold replaced): what
    releases before ``settings.name`` was required wrote, and what export proposes."""
    stem = FsPath(path).stem or "manifest"
    return _TAG_VALUE_BAD.sub("-", stem)[:256]


@dataclass(frozen=True)
class Selector:
    ids: tuple[str, ...] = ()
    name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    # lifecycle: which of the matched images the rule shares (all of them stay managed)
    latest: int | None = None
    exclude: Selector | None = None
    created_after: str | None = None  # YYYY-MM-DD
    created_before: str | None = None
    max_age_days: int | None = None
    skip_deprecated: bool = False

    @property
    def lifecycle(self) -> bool:
        return (self.latest is not None or self.exclude is not None
                or self.created_after is not None or self.created_before is not None
                or self.max_age_days is not None or self.skip_deprecated)

    @property
    def by_attributes(self) -> bool:
        """True when the selector searches by name/tags (not only explicit IDs)."""
        return self.name is not None or bool(self.tags)


@dataclass(frozen=True)
class Rule:
    name: str
    select: Selector
    regions: tuple[str, ...]
    launch: tuple[Principal, ...] = ()
    copy: tuple[Principal, ...] = ()
    line: int = 0
    manages_copy: bool = False  # the rule has a `copy:` key (even an empty one)


@dataclass(frozen=True)
class Manifest:
    path: str
    sha256: str
    settings: Settings
    principals: tuple[tuple[str, Principal], ...]
    rules: tuple[Rule, ...]
    owners: tuple[Owner, ...] = ()
    default_regions: bool = False  # a rule looks in the default Region (no Region written)
    # (name, line) of each name under `principals:`, for what points into the file (SARIF)
    principal_lines: tuple[tuple[str, int], ...] = ()

    @functools.cached_property
    def _names(self) -> dict[Principal, str]:
        names: dict[Principal, str] = {}
        for name, p in self.principals:
            names.setdefault(p, name)
        return names

    def name_of(self, principal: Principal) -> str | None:
        """The manifest's name for a principal (alphabetically first), if it has one."""
        return self._names.get(principal)

    def unused_principals(self) -> list[str]:
        """Names under ``principals:`` that no rule's ``launch`` or ``copy`` uses."""
        used = {p for rule in self.rules for p in (*rule.launch, *rule.copy)}
        return [name for name, p in self.principals if p not in used]

    def hygiene(self) -> list[Finding]:
        """Warnings about the manifest itself (errors with ``--strict``)."""
        unused = [Finding.of(Code.UNUSED_PRINCIPAL, "", name,
                             f"principal {name!r} is named under `principals:` but no rule "
                             "uses it; remove it or share with it")
                  for name in self.unused_principals()]
        # EC2 User Guide, "Deprecate an AMI" (ami-deprecate.html): AWS sets the deprecation
        # time of every public AMI to two years after its creation, unless the owner sets one
        return unused + [
            Finding.of(Code.PUBLIC_AUTO_DEPRECATION, "", rule.name,
                       f"rule {rule.name!r} shares publicly and skips deprecated builds "
                       "(`deprecated: false`): AWS deprecates a public AMI two years after its "
                       "creation unless its owner set another time, and this rule then unshares "
                       "it; set a deprecation time on purpose (aws ec2 enable-image-deprecation) "
                       "or drop `deprecated: false`", rule=rule.name)
            for rule in self.rules
            if rule.select.skip_deprecated and any(p.is_public for p in rule.launch)]

    @property
    def regions(self) -> tuple[str, ...]:
        """Every Region any rule looks in, sorted."""
        return tuple(sorted({r for rule in self.rules for r in rule.regions}))

    def covered_regions(self, owner: str | None = None) -> tuple[str, ...] | None:
        """The Regions a run plans in: the rules' Regions, each owner of ``owners:`` only in
        its own ``regions:``; with ``--owner`` (``owner``) that owner's. None when
        ``owner`` names no owner of ``owners:`` (the connection refuses it)."""
        if not self.owners:
            return self.regions
        chosen = [o for o in self.owners if owner is None or o.matches(owner)]
        if not chosen:
            return None
        return tuple(sorted({r for o in chosen for r in (o.regions or self.regions)
                             if r in self.regions}))


def _bad_date(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return True
    return False


def _resolve(ref: str, names: Mapping[str, Principal]) -> tuple[Principal | None, str | None]:
    """Resolve one ``launch``/``copy`` entry; return (principal, error message)."""
    if ref in names:
        return names[ref], None
    literal = Principal.parse_literal(ref)
    if literal is not None:
        return literal, None
    pasted = principal_hint(ref)
    if pasted:
        return None, f"{ref!r} {pasted}"
    if ref.isdigit():
        return None, bad_account_id(ref)
    if ref.startswith("arn:"):
        return None, f"{ref!r} is not a valid Organization or OU ARN"
    hint = difflib.get_close_matches(ref, list(names), n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else (
        f"; declared names: {', '.join(sorted(names))}" if names else
        "; declare it under `principals:` or use a quoted 12-digit account ID")
    return None, f"unknown principal name {ref!r}{suffix}"


def _semantic(doc: Located, sha256: str) -> tuple[Manifest | None, list[Problem]]:
    """What the schema cannot check: principal names, duplicate rules, public shares without
    the opt-in, copy to organizations, quotas, calendar dates."""
    data: dict[str, Any] = doc.data
    problems: list[Problem] = []
    s = data.get("settings") or {}
    settings = _settings(s, doc.file)
    owners = tuple(Owner(o["role_arn"], tuple(o.get("regions") or ()), o.get("plan_role_arn"))
                   for o in data.get("owners") or ())
    problems += _missing_name(doc, s)
    problems += plan_role_problems(doc, s, data.get("owners") or [])
    if owners and settings.role_arn:
        problems.append(doc.problem(("owners",), "give either settings.role_arn or owners, not both",
                                    key=True))
    names: dict[str, Principal] = {}
    for name, value in (data.get("principals") or {}).items():
        p = Principal.parse_literal(value)
        if p is None or p.is_public:  # shape already reported by the schema
            continue
        names[name] = p

    rules: list[Rule] = []
    seen_rules: dict[str, int] = {}
    for i, raw in enumerate(data.get("images") or []):
        path = ("images", i)
        line = doc.where(path + ("name",))[0]
        if raw["name"] in seen_rules:
            problems.append(doc.problem(path + ("name",),
                                        f"images[{i}].name: duplicate rule name {raw['name']!r} "
                                        f"(first used on line {seen_rules[raw['name']]})"))
        else:
            seen_rules[raw["name"]] = line
        launch = _principals(doc, i, "launch", raw, names, settings, problems)
        copy = _principals(doc, i, "copy", raw, names, settings, problems)
        entities = {p for p in launch if not p.is_public}
        if len(entities) > settings.share_quota:
            problems.append(doc.problem(path + ("launch",),
                                        f"images[{i}].launch: rule {raw['name']!r} shares with "
                                        f"{len(entities)} entities; share_quota is "
                                        f"{settings.share_quota}"))
        rules.append(Rule(raw["name"], _selector(doc, i, raw["select"], problems),
                          tuple(raw.get("regions") or settings.regions), launch, copy, line,
                          "copy" in raw))
    problems += _quota_across_rules(doc, rules, settings)
    if problems:
        return None, problems
    manifest = Manifest(
        path=doc.file,
        sha256=sha256,
        settings=settings,
        principals=tuple(sorted(names.items())),
        rules=tuple(rules),
        owners=owners,
        default_regions="regions" not in s and any(
            not raw.get("regions") for raw in data.get("images") or []),
        principal_lines=tuple((name, doc.where(("principals", name), key=True)[0])
                              for name in sorted(names)),
    )
    return manifest, []


def _missing_name(doc: Located, s: Mapping[str, Any]) -> list[Problem]:
    """SPEC §7a: the ownership tag's value is chosen, never a file-name default (two
    repositories that both keep ``amis.yaml`` released each other's images)."""
    if s.get("ownership", "tag") != "tag" or s.get("name"):
        return []
    stem = default_name(doc.file)
    why = (f"settings.name is required while settings.ownership is tag (the default): it is "
           f"the value of the {OWNERSHIP_TAG} tag that marks this manifest's images, unique "
           "among the manifests that manage one owner account")
    keep = (f"; images this manifest already tagged carry {OWNERSHIP_TAG}={stem} (its file "
            f"name's stem): keep that name to continue managing them (or set ownership: none)")
    if "settings" in doc.data:
        return [doc.problem(("settings",), f'{why}; add "name: {stem}" under settings:{keep}',
                            key=True)]
    return [doc.problem((), f"{why}; add a settings: mapping with name: {stem}{keep}")]


def _settings(s: Mapping[str, Any], file: str) -> Settings:
    return Settings(
        regions=tuple(s.get("regions") or DEFAULT_REGIONS),
        prune=s.get("prune", True),
        allow_public=s.get("allow_public", False),
        # `kms: off` unquoted is the boolean false to YAML 1.1: it means "off".
        kms=KmsMode.OFF if s.get("kms") is False else KmsMode(s.get("kms", "key-policy")),
        kms_grants=GrantShape(s.get("kms_grants", GrantShape.AWS_RESOURCE.value)),
        max_removals=s.get("max_removals", 25),
        share_quota=s.get("share_quota", 1000),
        public_quota=s.get("public_quota", 5),
        keep_launched_within_days=s.get("keep_launched_within_days", 14),
        usage_reports=s.get("usage_reports", False),
        deprecate_retired=s.get("deprecate_retired", False),
        role_arn=s.get("role_arn"),
        plan_role_arn=s.get("plan_role_arn"),
        name=s.get("name") or default_name(file),
        ownership=OwnershipMode(s.get("ownership", OwnershipMode.TAG)),
        on_release=OnRelease(s.get("on_release", OnRelease.REVOKE)),
        api_rates=tuple(sorted((action, Rate(r["burst"], r["per_second"]))
                               for action, r in (s.get("api_rates") or {}).items())),
    )


def _principals(doc: Located, i: int, field_name: str, raw: Mapping[str, Any],
                names: Mapping[str, Principal], settings: Settings,
                problems: list[Problem]) -> tuple[Principal, ...]:
    """A rule's ``launch`` or ``copy`` list, resolved; what cannot be resolved is a problem."""
    out: list[Principal] = []
    for j, ref in enumerate(raw.get(field_name) or []):
        where = ("images", i, field_name, j)
        label = f"images[{i}].{field_name}[{j}]"
        p, err = _resolve(ref, names)
        if p is None:
            problems.append(doc.problem(where, f"{label}: {err}"))
        elif p.is_public and not settings.allow_public:
            problems.append(doc.problem(where, f"{label}: {PUBLIC!r} shares with every AWS "
                                               "account; set settings.allow_public: true to allow it"))
        elif field_name == "copy" and p.is_org_or_ou:
            problems.append(doc.problem(where, f"{label}: {ref!r} is an Organization/OU; snapshot "
                                               "copy permission (createVolumePermission) accepts "
                                               "only account IDs"))
        elif p not in out:
            out.append(p)
    return tuple(out)


def _selector(doc: Located, i: int, sel: Mapping[str, Any], problems: list[Problem]) -> Selector:
    exclude = sel.get("exclude")
    selector = Selector(
        ids=tuple(sel.get("ids") or ()),
        name=sel.get("name"),
        tags=tuple(sorted((sel.get("tags") or {}).items())),
        latest=sel.get("latest"),
        exclude=None if exclude is None else Selector(
            ids=tuple(exclude.get("ids") or ()), name=exclude.get("name"),
            tags=tuple(sorted((exclude.get("tags") or {}).items()))),
        created_after=sel.get("created_after"),
        created_before=sel.get("created_before"),
        max_age_days=sel.get("max_age_days"),
        skip_deprecated=sel.get("deprecated") is False,
    )
    path = ("images", i, "select")
    if sel and not (selector.ids or selector.by_attributes):
        problems.append(doc.problem(path, f"images[{i}].select: needs at least one of ids, "
                                          "name, tags"))
    for key in ("created_after", "created_before"):
        value = sel.get(key)
        if value is not None and _bad_date(value):
            problems.append(doc.problem(path + (key,), f"images[{i}].select.{key}: {value!r} is "
                                                       "not a calendar date (YYYY-MM-DD)"))
    return selector


def _quota_across_rules(doc: Located, rules: Sequence[Rule],
                        settings: Settings) -> list[Problem]:
    """An image listed by ID in several rules may not exceed the share quota in sum (a rule
    over it on its own is already reported)."""
    quota_by_id: dict[str, set[Principal]] = {}
    for r in rules:
        for ami in r.select.ids:
            quota_by_id.setdefault(ami, set()).update(p for p in r.launch if not p.is_public)
    return [doc.problem(("images",), f"images: {ami} is shared with {len(ents)} entities "
                                     f"across its rules; share_quota is {settings.share_quota}",
                        key=True)
            for ami, ents in sorted(quota_by_id.items())
            if len(ents) > settings.share_quota and not any(
                len({p for p in r.launch if not p.is_public}) > settings.share_quota
                for r in rules if ami in r.select.ids)]


def _value_hint(path: Path, value: Any) -> str | None:
    """A principal under ``principals:`` pasted with spaces or as a bare org/OU ID: say so,
    instead of the schema's list of what a principal may be."""
    if len(path) == 2 and path[0] == "principals" and isinstance(value, str):
        hint = principal_hint(value)
        return f"{value!r} {hint}" if hint else None
    return None


def _region_places(data: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Every Region the manifest names, with where: settings, owners, rules (those of a
    Region's shape: the schema reports the others)."""
    places: list[tuple[Path, Any]] = []
    s = data.get("settings")
    if isinstance(s, dict) and isinstance(s.get("regions"), list):
        places += [(("settings", "regions", i), r) for i, r in enumerate(s["regions"])]
    for key in ("owners", "images"):
        items = data.get(key)
        for i, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, dict) and isinstance(item.get("regions"), list):
                places += [((key, i, "regions", j), r) for j, r in enumerate(item["regions"])]
    return [(p, r) for p, r in places if isinstance(r, str) and REGION_RE.fullmatch(r)]


def _region_problems(doc: Located) -> list[Problem]:
    """Region names botocore does not know (with the closest one it does), and Regions of
    several partitions: one set of credentials, and so one manifest, reaches one."""
    problems: list[Problem] = []
    first: tuple[str, str] | None = None  # (Region, partition) of the first Region named
    for path, region in _region_places(doc.data):
        why = region_problem(region)
        partition = partition_of(region)
        if why:
            problems.append(doc.problem(path, f"{fmt_path(path)}: {why}"))
        elif partition is not None and first is None:
            first = (region, partition)
        elif partition is not None and first is not None and partition != first[1]:
            problems.append(doc.problem(path, f"{fmt_path(path)}: {region!r} is in partition "
                                              f"{partition}, {first[0]} in {first[1]}: one "
                                              "manifest works in one partition (its credentials "
                                              "reach no other)"))
    return problems


def saved_plan_error(file: str) -> InputError:
    return InputError([Problem(file, 1, 1, f"{file} is a saved plan, not a manifest: apply it "
                                           f"with `reconcile apply MANIFEST --plan {file}`")])


# The start of what `plan --out` writes: a saved plan, whatever its size.
SAVED_PLAN_START = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"format_version"\s*:')


def _is_saved_plan(data: Any) -> bool:
    return isinstance(data, dict) and "version" not in data and {
        "format_version", "operations"} <= data.keys()


def parse_manifest(raw: bytes, file: str) -> Manifest:
    """Validate manifest bytes; raise :class:`InputError` with every problem found."""
    if SAVED_PLAN_START.match(raw[:4096]):
        raise saved_plan_error(file)
    doc, problems = load_yaml(raw, file, "manifest")
    if doc is None:
        raise InputError(problems)
    if doc.data is None:
        raise InputError([*problems, doc.problem((), "manifest is empty")])
    if _is_saved_plan(doc.data):
        raise saved_plan_error(file)
    if not isinstance(doc.data, dict):
        kind = "a list" if isinstance(doc.data, list) else f"the value {doc.raw(()) or doc.data!r}"
        raise InputError([*problems, doc.problem((), f"manifest must be a mapping (version, settings, "
                                                     f"principals, images), got {kind}")])
    problems += schema_problems(doc, "manifest", _value_hint) + _region_problems(doc)
    if problems:
        raise InputError(problems)
    manifest, sem = _semantic(doc, hashlib.sha256(raw).hexdigest())
    if manifest is None:
        raise InputError(sem)
    return manifest
