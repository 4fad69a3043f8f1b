"""The sandbox state file (``--sandbox STATE.yaml``), read into frozen values.

It is validated like the manifest (strict YAML, ``schemas/sandbox.schema.json``, located
one-line errors), then checked for what the schema cannot say: principals, calendar dates,
keys that exist, Regions AWS and the emulator have, image IDs given twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ...core.errors import InputError, Problem
from ...core.model import Principal
from ...core.regions import region_problem
from ...core.schema import fmt_path, schema_problems
from ...core.yamlload import MAX_BYTES, Located, iter_paths, load_yaml
from ..files import read_input

AWS_MANAGED_KEY = "aws/ebs"


@dataclass(frozen=True)
class SandboxKey:
    name: str  # alias without the alias/ prefix
    region: str
    policy: str | None = None  # JSON text; moto's default policy when None


@dataclass(frozen=True)
class SandboxImage:
    region: str
    name: str
    image_id: str | None
    tags: tuple[tuple[str, str], ...]
    state: str
    launch: tuple[Principal, ...]
    copy: tuple[Principal, ...] = ()
    encrypted_with: str | None = None  # a key name, or aws/ebs
    snapshot_tags: tuple[tuple[str, str], ...] = ()
    created: str | None = None  # as written in the file; None: when the sandbox starts
    deprecated: str | None = None
    last_launched: str | None = None


DATED = ("created", "deprecated", "last_launched")  # the image fields that hold a time


@dataclass(frozen=True)
class SandboxState:
    account: str
    images: tuple[SandboxImage, ...]
    image_block_public_access: tuple[tuple[str, str], ...]
    keys: tuple[SandboxKey, ...] = ()
    now: str = ""  # the time the run plans by (ISO 8601, UTC); "" for the clock


def parse_sandbox(raw: bytes, file: str) -> SandboxState:
    doc, problems = load_yaml(raw, file, "sandbox state")
    if doc is None:
        raise InputError(problems)
    if not isinstance(doc.data, dict):
        raise InputError([*problems, doc.problem((), "sandbox state must be a mapping")])
    problems += schema_problems(doc, "sandbox")
    if problems:
        raise InputError(problems)
    data = doc.data
    keys = []
    key_names: set[tuple[str, str]] = set()
    for i, k in enumerate(data.get("keys") or []):
        if (k["region"], k["name"]) in key_names:
            problems.append(doc.problem(("keys", i, "name"), f"keys[{i}].name: duplicate key "
                                                              f"{k['name']!r} in {k['region']}"))
        key_names.add((k["region"], k["name"]))
        keys.append(SandboxKey(k["name"], k["region"], _key_policy(doc, i, k, problems)))
    images = [_sandbox_image(doc, i, img, key_names, problems)
              for i, img in enumerate(data.get("images") or [])]
    problems += _unknown_regions(doc) + _duplicate_ids(doc)
    now = ""
    if "now" in data:
        when = parse_utc(data["now"])
        if when is None:
            problems.append(doc.problem(("now",), f"now: {data['now']!r} is not on the calendar"))
        else:
            now = when.isoformat(timespec="seconds")
    if problems:
        raise InputError(problems)
    return SandboxState(data["account"], tuple(images),
                        tuple(sorted((data.get("image_block_public_access") or {}).items())),
                        tuple(keys), now)


def _unknown_regions(doc: Located) -> list[Problem]:
    """A Region name of the right shape that AWS (with the closest one it has), or the
    emulator, does not have (``ap-sotheast-2``, ``us-east-9``)."""
    from ..aws import botocore_session

    session = botocore_session()  # the endpoint data is then parsed once for the run
    emulated = {r for partition in session.get_available_partitions()
                for r in session.get_available_regions("ec2", partition)}
    places: list[tuple[tuple[str | int, ...], str]] = [
        (("images", i, "region"), img["region"]) for i, img in enumerate(doc.data.get("images") or [])]
    places += [(("keys", i, "region"), k["region"]) for i, k in enumerate(doc.data.get("keys") or [])]
    places += [(("image_block_public_access", r), r)
               for r in doc.data.get("image_block_public_access") or {}]
    problems = []
    for path, region in places:
        why = region_problem(region) or (
            None if region in emulated else f"{region!r} is not a Region the emulator has")
        if why:
            problems.append(doc.problem(path, f"{fmt_path(path)}: {why}",
                                        key=path[0] == "image_block_public_access"))
    return problems


def _duplicate_ids(doc: Located) -> list[Problem]:
    """Two images with one ``id``: the emulator would keep only one of them."""
    first: dict[str, int] = {}
    out = []
    for i, img in enumerate(doc.data.get("images") or []):
        image_id = img.get("id")
        if image_id is None:
            continue
        if image_id in first:
            out.append(doc.problem(("images", i, "id"), f"images[{i}].id: {image_id} is "
                                                         f"already images[{first[image_id]}].id"))
        first.setdefault(image_id, i)
    return out


def _key_policy(doc: Located, i: int, k: dict[str, Any], problems: list[Problem]) -> str | None:
    """The JSON text of ``keys[i].policy`` (None: moto's default), or problems."""
    policy_doc = k.get("policy")
    if isinstance(policy_doc, dict) and isinstance(policy_doc.get("Statement"), dict):
        problems.append(doc.problem(("keys", i, "policy", "Statement"),
                                    f"keys[{i}].policy.Statement: a single statement object; "
                                    "write the statements as a list (Statement: [...])"))
        return None
    if "policy" not in k:
        return None
    # An unquoted `Version: 2012-10-17` is a date to YAML; a key policy is JSON text.
    bad = [(path, value) for path, value in iter_paths(k["policy"], ("keys", i, "policy"))
           if not isinstance(value, (dict, list, str, int, float, bool, type(None)))]
    for path, value in bad:
        raw_text = doc.raw(path) or str(value)
        problems.append(doc.problem(path, f"{fmt_path(path)}: {raw_text!r} was read by YAML "
                                          f"as {type(value).__name__}, which a JSON key "
                                          f"policy cannot hold; quote it: \"{raw_text}\""))
    return None if bad else json.dumps(k["policy"])


def _sandbox_image(doc: Located, i: int, img: dict[str, Any], key_names: set[tuple[str, str]],
                   problems: list[Problem]) -> SandboxImage:
    """``images[i]``, with a problem for each principal, date or key that does not hold."""
    perms: dict[str, list[Principal]] = {"launch": [], "copy": []}
    for field_name, out in perms.items():
        for j, ref in enumerate(img.get(field_name) or []):
            p = Principal.parse_literal(ref)
            if p is None:
                problems.append(doc.problem((("images", i, field_name, j)),
                                            f"images[{i}].{field_name}[{j}]: {ref!r} is not an "
                                            "account ID, Organization/OU ARN or public"))
                continue
            out.append(p)
    for field_name in DATED:
        if field_name in img and parse_utc(img[field_name]) is None:
            problems.append(doc.problem(("images", i, field_name),
                                        f"images[{i}].{field_name}: {img[field_name]!r} is "
                                        "not a date on the calendar"))
    enc = img.get("encrypted_with")
    if enc and enc != AWS_MANAGED_KEY and (img["region"], enc) not in key_names:
        problems.append(doc.problem(("images", i, "encrypted_with"),
                                    f"images[{i}].encrypted_with: no key {enc!r} in "
                                    f"{img['region']} under `keys:` (or use {AWS_MANAGED_KEY})"))
    return SandboxImage(img["region"], img["name"], img.get("id"),
                        tuple(sorted((img.get("tags") or {}).items())),
                        img.get("state", "available"), tuple(perms["launch"]),
                        tuple(perms["copy"]), enc,
                        tuple(sorted((img.get("snapshot_tags") or {}).items())),
                        img.get("created"), img.get("deprecated"), img.get("last_launched"))


def load_sandbox(path: str) -> SandboxState:
    return parse_sandbox(read_input(path, "sandbox state", MAX_BYTES), path)


def parse_utc(text: str) -> dt.datetime | None:
    """A schema-checked ``created``/``deprecated`` value as an aware UTC time; None when the
    date is not on the calendar (2026-02-30)."""
    try:
        when = dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC)
