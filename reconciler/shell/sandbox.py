"""``--sandbox STATE.yaml``: an embedded, in-process AWS (moto) seeded from a YAML file.

The state file is validated like the manifest (strict YAML, ``schemas/sandbox.schema.json``,
located one-line errors). moto is an optional extra: ``pip install 'ami-share-reconciler[sandbox]'``.

moto does not emulate everything this tool reads; :func:`install_moto_extensions`
adds what is missing, the same way the test suite does, so the sandbox behaves like AWS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from ..core.errors import InputError, Problem, ReconcilerError
from ..core.model import ImageState, Principal
from ..core.regions import region_problem
from ..core.schema import fmt_path, schema_problems
from ..core.yamlload import MAX_BYTES, Located, iter_paths, load_yaml
from .files import read_input

# (account, region) -> Image Block Public Access state, read by the patched moto handler.
IMAGE_BLOCK_PUBLIC_ACCESS: dict[tuple[str, str], str] = {}


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


@dataclass(frozen=True)
class SandboxState:
    account: str
    images: tuple[SandboxImage, ...]
    image_block_public_access: tuple[tuple[str, str], ...]
    keys: tuple[SandboxKey, ...] = ()


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
    if problems:
        raise InputError(problems)
    return SandboxState(data["account"], tuple(images),
                        tuple(sorted((data.get("image_block_public_access") or {}).items())),
                        tuple(keys))


def _unknown_regions(doc: Located) -> list[Problem]:
    """A Region name of the right shape that AWS (with the closest one it has), or the
    emulator, does not have (``ap-sotheast-2``, ``us-east-9``)."""
    from .aws import botocore_session

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
    for field_name in ("created", "deprecated"):
        if field_name in img and _utc(img[field_name]) is None:
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
                        img.get("created"), img.get("deprecated"))


def load_sandbox(path: str) -> SandboxState:
    return parse_sandbox(read_input(path, "sandbox state", MAX_BYTES), path)


def install_moto_extensions() -> None:
    """Teach moto the EC2 calls it lacks (idempotent; patches the moto classes in-process)."""
    from moto.ec2.responses import EC2Response

    if getattr(EC2Response, "_reconciler_extended", False):
        return
    _patch_ec2()
    _patch_kms()
    EC2Response._reconciler_extended = True  # type: ignore[attr-defined]


def _patch_ec2() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.models.amis import Ami
    from moto.ec2.responses import EC2Response

    def block_device_mappings(self: Any) -> list[dict[str, Any]]:
        # Like AWS, report whether the backing snapshot is encrypted.
        snap = self.ebs_snapshot
        return [{"DeviceName": self.root_device_name,
                 "Ebs": {"SnapshotId": snap.id, "VolumeSize": 15, "DeleteOnTermination": False,
                         "VolumeType": "standard", "Encrypted": bool(snap.encrypted)}}]

    Ami.block_device_mappings = property(block_device_mappings)  # type: ignore[assignment,method-assign]

    def get_image_block_public_access_state(self: Any) -> Any:
        state = IMAGE_BLOCK_PUBLIC_ACCESS.get((self.current_account, self.region), "unblocked")
        return ActionResult({"ImageBlockPublicAccessState": state, "ManagedBy": "account"})

    EC2Response.get_image_block_public_access_state = get_image_block_public_access_state  # type: ignore[attr-defined]

    def get_snapshot_block_public_access_state(self: Any) -> Any:
        return ActionResult({"State": "unblocked", "ManagedBy": "account"})

    EC2Response.get_snapshot_block_public_access_state = get_snapshot_block_public_access_state  # type: ignore[attr-defined]

    # moto answers DescribeRegions with every Region of every partition (GovCloud and China
    # included); the emulated account has only ENABLED_REGIONS enabled, as a real one does.
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    every_region = RegionsAndZonesBackend.describe_regions

    def describe_regions(self: Any, region_names: list[str] | None = None) -> Any:
        found = every_region(self, region_names)
        return [r for r in found if r.name in ENABLED_REGIONS] if ENABLED_REGIONS else found

    RegionsAndZonesBackend.describe_regions = describe_regions  # type: ignore[method-assign]


def _patch_kms() -> None:
    # moto applies a key policy's Deny statements without their Condition, so an ordinary
    # "deny everyone outside the organization" statement refused the owner's own DescribeKey.
    # The emulated caller is the key's owner, whom such statements do not deny: skip it.
    from moto.kms.responses import KmsResponse

    KmsResponse._validate_key_policy = lambda self, key_id, action: None  # type: ignore[method-assign]

    # moto generates a 2,048-bit RSA key pair for every KMS key, symmetric ones included
    # (70 ms each). A symmetric key has no key pair on AWS (Sign, Verify and GetPublicKey
    # refuse it), and nothing here signs: symmetric keys get none.
    import moto.kms.models as kms_models

    key_pair = vars(kms_models)["generate_private_key"]

    def generate_private_key(key_spec: str) -> Any:
        return None if key_spec == "SYMMETRIC_DEFAULT" else key_pair(key_spec)

    vars(kms_models)["generate_private_key"] = generate_private_key


# The Regions the emulated account has enabled (DescribeRegions); the sandbox sets them to
# the Regions its state file names (and us-east-1).
ENABLED_REGIONS: set[str] = {"us-east-1", "us-west-2", "eu-west-1"}


def set_image_id(account: str, region: str, old: str, new: str) -> None:
    """Give a moto image a chosen ID (moto always picks a random one)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account][region]
    ami = backend.amis.pop(old)
    ami.id = new
    backend.amis[new] = ami


def _stable_hex(*parts: str, length: int = 17) -> str:
    """An ID-shaped hex string derived from ``parts``: the sandbox gives the same IDs on every
    run, so plans are reproducible and a plan saved in one run applies in the next."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _stable_key_id(account: str, region: str, name: str) -> str:
    """A KMS key ID (UUID v4 form, like AWS's) derived from the key's name."""
    return str(uuid.UUID(_stable_hex(account, region, "key", name, length=32), version=4))


def set_snapshot_id(account: str, region: str, image_id: str, new: str) -> None:
    """Give a moto image's backing snapshot a chosen ID."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[account][region]
    snap = backend.amis[image_id].ebs_snapshot
    backend.snapshots.pop(snap.id, None)
    snap.id = new
    backend.snapshots[new] = snap


def set_key_id(account: str, region: str, old: str, new: str) -> str:
    """Give a moto KMS key a chosen ID; return its new ARN."""
    from moto.kms.models import kms_backends

    backend = kms_backends[account][region]
    key = backend.keys.pop(old)
    key.id = new
    key.arn = key.arn.rsplit("/", 1)[0] + "/" + new
    backend.keys[new] = key
    return str(key.arn)


def encrypt_image(account: str, region: str, image_id: str, key_arn: str) -> str:
    """Make a moto image's backing snapshot encrypted with ``key_arn``; return its ID."""
    from moto.ec2.models import ec2_backends

    snap = ec2_backends[account][region].amis[image_id].ebs_snapshot
    snap.encrypted = True
    snap.kms_key_id = key_arn
    return str(snap.id)


def make_aws_managed(account: str, region: str, key_id: str) -> None:
    """Mark a moto key as AWS managed (moto reports every key as CUSTOMER)."""
    from moto.kms.models import kms_backends

    kms_backends[account][region].keys[key_id].key_manager = "AWS"


def set_image_state(account: str, region: str, image_id: str, state: str) -> None:
    from moto.ec2.models import ec2_backends

    ec2_backends[account][region].amis[image_id].state = state


def _utc(text: str) -> dt.datetime | None:
    """A schema-checked ``created``/``deprecated`` value as an aware UTC time; None when the
    date is not on the calendar (2026-02-30)."""
    try:
        when = dt.datetime.fromisoformat(text.removesuffix("Z"))
    except ValueError:
        return None
    return when.replace(tzinfo=dt.UTC)


def set_image_dates(account: str, region: str, image_id: str, created: str | None,
                    deprecated: str | None) -> None:
    """Set CreationDate and DeprecationTime, which moto takes from its clock / never sets.
    AWS writes both as ``2026-11-01T10:00:00.000Z``."""
    from moto.ec2.models import ec2_backends

    ami = ec2_backends[account][region].amis[image_id]
    if created is not None and (when := _utc(created)) is not None:
        ami.creation_date = when
    if deprecated is not None and (when := _utc(deprecated)) is not None:
        ami.deprecation_time = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # type: ignore[attr-defined]


def _emulator_clients() -> Callable[[str, str], Any]:
    """A client of the emulator per (service, Region), made once (a client takes ~20 ms);
    they share the run's parsed service models."""
    from .aws import make_session

    session = make_session(None)

    @functools.cache
    def client(service: str, region: str) -> Any:
        return session.client(service, region_name=region)

    return client


def seed(state: SandboxState) -> list[str]:
    """Create the state's resources in the (already started) emulator; return the image IDs."""
    client = _emulator_clients()
    for (region, block) in state.image_block_public_access:
        IMAGE_BLOCK_PUBLIC_ACCESS[(state.account, region)] = block
    key_arns: dict[tuple[str, str], str] = {}
    for key in state.keys:
        kms = client("kms", key.region)
        extra = {"Policy": key.policy} if key.policy else {}
        meta = kms.create_key(Description=f"sandbox key {key.name}", **extra)["KeyMetadata"]
        key_id = _stable_key_id(state.account, key.region, key.name)
        arn = set_key_id(state.account, key.region, meta["KeyId"], key_id)
        kms.create_alias(AliasName=f"alias/{key.name}", TargetKeyId=key_id)
        key_arns[(key.region, key.name)] = arn
    for region in sorted({i.region for i in state.images if i.encrypted_with == AWS_MANAGED_KEY}):
        kms = client("kms", region)
        meta = kms.create_key(Description="Default key that protects my EBS volumes when no "
                                          "other key is defined")["KeyMetadata"]
        key_id = _stable_key_id(state.account, region, AWS_MANAGED_KEY)
        key_arns[(region, AWS_MANAGED_KEY)] = set_key_id(state.account, region, meta["KeyId"],
                                                         key_id)
        make_aws_managed(state.account, region, key_id)
    return [_seed_image(client("ec2", img.region), state.account, n, img, key_arns)
            for n, img in enumerate(state.images)]


def _seed_image(ec2: Any, account: str, n: int, img: SandboxImage,
                key_arns: Mapping[tuple[str, str], str]) -> str:
    """Create ``img`` (the ``n``-th image of the file) with its ID, snapshot, tags,
    permissions, key, dates and state; return its image ID."""
    image_id = ec2.register_image(Name=img.name, RootDeviceName="/dev/xvda")["ImageId"]
    chosen = img.image_id or "ami-" + _stable_hex(account, img.region, img.name, str(n))
    set_image_id(account, img.region, image_id, chosen)
    image_id = chosen
    set_snapshot_id(account, img.region, image_id,
                    "snap-" + _stable_hex(account, img.region, image_id))
    if img.tags:
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in img.tags])
    if img.launch:
        ec2.modify_image_attribute(ImageId=image_id, Attribute="launchPermission",
                                   LaunchPermission={"Add": [p.to_dict() for p in img.launch]})
    snapshot_id = ec2.describe_images(ImageIds=[image_id])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    if img.snapshot_tags:
        ec2.create_tags(Resources=[snapshot_id],
                        Tags=[{"Key": k, "Value": v} for k, v in img.snapshot_tags])
    if img.encrypted_with:
        encrypt_image(account, img.region, image_id, key_arns[(img.region, img.encrypted_with)])
    users = [p.value for p in img.copy if not p.is_public]
    if users:
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                      OperationType="add", UserIds=users)
    if any(p.is_public for p in img.copy):
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_id, Attribute="createVolumePermission",
                                      OperationType="add", GroupNames=["all"])
    if img.created is not None or img.deprecated is not None:
        set_image_dates(account, img.region, image_id, img.created, img.deprecated)
    if img.state != ImageState.AVAILABLE:
        set_image_state(account, img.region, image_id, img.state)
    return image_id


def dump(state: SandboxState, image_ids: list[str]) -> str:
    """The emulator's current state, as a sandbox state file (for ``--sandbox-save``)."""
    import yaml

    client = _emulator_clients()

    def labels(entries: list[dict[str, str]]) -> list[str]:
        return [p.label for p in sorted((Principal.from_dict(e) for e in entries),
                                        key=lambda p: p.sort_key)]

    keys = []
    for key in state.keys:
        kms = client("kms", key.region)
        key_id = kms.describe_key(KeyId=f"alias/{key.name}")["KeyMetadata"]["KeyId"]
        policy = kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
        keys.append({"name": key.name, "region": key.region, "policy": json.loads(policy)})
    images = []
    for img, image_id in zip(state.images, image_ids, strict=True):
        ec2 = client("ec2", img.region)
        perms = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")
        described = ec2.describe_images(ImageIds=[image_id])["Images"][0]
        snapshot_id = described["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        snap = ec2.describe_snapshot_attribute(SnapshotId=snapshot_id,
                                               Attribute="createVolumePermission")
        entry: dict[str, Any] = {"id": image_id, "region": img.region, "name": img.name}
        tags = {t["Key"]: t["Value"] for t in described.get("Tags") or []}
        if tags:  # as AWS has them now: apply adds and removes the ownership tag
            entry["tags"] = dict(sorted(tags.items()))
        snap_tags = {t["Key"]: t["Value"] for t in ec2.describe_snapshots(
            SnapshotIds=[snapshot_id])["Snapshots"][0].get("Tags") or []}
        if snap_tags:
            entry["snapshot_tags"] = dict(sorted(snap_tags.items()))
        for field_name in ("created", "deprecated"):
            if getattr(img, field_name) is not None:
                entry[field_name] = getattr(img, field_name)
        if img.state != ImageState.AVAILABLE:
            entry["state"] = img.state
        if img.encrypted_with:
            entry["encrypted_with"] = img.encrypted_with
        if launch := labels(perms.get("LaunchPermissions") or []):
            entry["launch"] = launch
        if copy := labels(snap.get("CreateVolumePermissions") or []):
            entry["copy"] = copy
        images.append(entry)
    doc: dict[str, Any] = {"version": 1, "account": state.account}
    if state.image_block_public_access:
        doc["image_block_public_access"] = dict(state.image_block_public_access)
    if keys:
        doc["keys"] = keys
    doc["images"] = images
    header = "# Sandbox state written by `reconcile apply --sandbox-save`.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


_SANDBOX_ENV = {
    "AWS_ACCESS_KEY_ID": "sandbox",
    "AWS_SECRET_ACCESS_KEY": "sandbox",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
}
_CLEARED_ENV_PREFIXES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                         "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                         "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@contextlib.contextmanager
def _one_data_loader() -> Iterator[None]:
    """While the emulator runs, every botocore session in the process — the emulator's own
    included — shares the run's data loader, so the EC2 model (megabytes of JSON) is parsed
    once instead of four times. The models are static data: nothing else changes."""
    import botocore.session

    from .aws import botocore_session

    loader = botocore_session().get_component("data_loader")
    original = botocore.session.Session._register_data_loader

    def register(self: botocore.session.Session) -> None:
        self._components.lazy_register_component("data_loader", lambda: loader)

    botocore.session.Session._register_data_loader = register
    try:
        yield
    finally:
        botocore.session.Session._register_data_loader = original


@contextlib.contextmanager
def running_sandbox(path: str, save_to: str | None = None) -> Iterator[SandboxState]:
    """Validate the state file, start moto in this process, seed it, and yield.

    With ``save_to``, the emulator's state is written there when the block ends (even after
    a failure: the file then shows what was really changed).
    """
    state = load_sandbox(path)
    try:
        from moto import mock_aws
    except ImportError:
        raise ReconcilerError("--sandbox needs the emulator: pip install 'ami-share-reconciler[sandbox]'") from None
    saved = dict(os.environ)
    enabled = set(ENABLED_REGIONS)
    try:
        for k in list(os.environ):
            if k.startswith(_CLEARED_ENV_PREFIXES):
                del os.environ[k]
        os.environ.update(_SANDBOX_ENV)
        os.environ["MOTO_ACCOUNT_ID"] = state.account
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        install_moto_extensions()
        ENABLED_REGIONS.clear()
        ENABLED_REGIONS.update({"us-east-1", *(i.region for i in state.images),
                                *(k.region for k in state.keys),
                                *(r for r, _ in state.image_block_public_access)})
        with _one_data_loader(), mock_aws():
            ids = seed(state)
            try:
                yield state
            finally:
                if save_to:
                    text = dump(state, ids)
                    try:
                        FsPath(save_to).write_text(text, encoding="utf-8")
                    except OSError as exc:
                        raise ReconcilerError(f"cannot write {save_to}: {exc.strerror}") from None
    finally:
        os.environ.clear()
        os.environ.update(saved)
        IMAGE_BLOCK_PUBLIC_ACCESS.clear()
        ENABLED_REGIONS.clear()
        ENABLED_REGIONS.update(enabled)
