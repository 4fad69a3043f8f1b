"""Test helpers shared by the suite (imported as ``helpers``: tests/ is on sys.path)."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from reconciler.core import kms
from reconciler.core.manifest import parse_manifest
from reconciler.core.plan import Plan
from reconciler.shell.applier import Applier, ApplyReport
from reconciler.shell.aws import Clients
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader
from reconciler.shell.sandbox import (
    IMAGE_BLOCK_PUBLIC_ACCESS,
    IMAGE_USAGE_REPORTS,
    RECYCLE_BIN,
    encrypt_image,
    set_image_id,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ACCOUNT = "123456789012"

# Principals and Regions the tests use (a test that needs different values names its own).
US, EU = "us-east-1", "eu-west-1"
PROD, STAGING, DEV, HAND = "111122223333", "444455556666", "777788889999", "999988887777"
ORG = "arn:aws:organizations::123456789012:organization/o-a1b2c3d4e5"
OU = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456"

PRINCIPALS = {"prod": PROD, "staging": STAGING, "dev": DEV, "org": ORG, "ou": OU}


SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"  # see data/README.md


@contextlib.contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """A SIGALRM ``seconds`` in raises ``Interrupted`` in the main thread, as the CLI's
    SIGINT and SIGTERM handlers do; the handler and the timer are restored on the way out."""
    from reconciler.shell.concurrency import Interrupted

    def alarm(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sarif_results(text: str) -> list[dict[str, Any]]:
    """The results of a SARIF log, once the OASIS SARIF 2.1.0 schema accepted it."""
    import jsonschema

    doc = json.loads(text)
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-schema-2.1.0.json")
    validator = jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, errors[0]
    (run,) = doc["runs"]
    return list(run["results"])


def manifest_yaml(images: str, *, regions: Sequence[str] = (US,), settings: str = "",
                  principals: Mapping[str, str] = PRINCIPALS, name: str = "m") -> str:
    """The tests' one manifest builder. ``images``: the YAML of the ``images:`` list (a
    block, dedented then indented under the key); ``settings``: more ``settings:`` lines;
    ``principals``: name -> account ID or ARN (default: prod, staging, dev, org, ou);
    ``name``: ``settings.name`` unless ``settings`` gives one."""
    lines = ["version: 1", "settings:", f"  regions: [{', '.join(regions)}]"]
    if not re.search(r"^\s*name:", textwrap.dedent(settings), re.M):
        lines.append(f"  name: {name}")
    lines += [f"  {line}" for line in textwrap.dedent(settings).splitlines() if line.strip()]
    lines += ["principals:", *(f'  {k}: "{v}"' for k, v in principals.items()), "images:"]
    lines += [f"  {line}" for line in textwrap.dedent(images).strip("\n").splitlines()]
    return "\n".join(lines) + "\n"


# The environment every test runs in (set by conftest's session fixture, not at import):
# fake credentials, no endpoint, profile or session token from the developer's shell.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    # Never let botocore look for credentials on the instance metadata address.
    "AWS_EC2_METADATA_DISABLED": "true",
}
CLEARED_ENV_PREFIXES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN")


def reconcile_executable() -> list[str]:
    """The installed console script next to this interpreter (as CI runs it)."""
    exe = Path(sys.executable).parent / "reconcile"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("reconcile")
    if found:
        return [found]
    return [sys.executable, "-m", "reconciler"]


@dataclass
class Result:
    code: int
    out: str
    err: str


class Images:
    """Creates images in an emulator reachable through ``client_factory``."""

    def __init__(self, client_factory: Callable[[str], Any], account: str = ACCOUNT) -> None:
        self.client = client_factory
        self.account = account
        self._n = 0

    def create(self, name: str, region: str = "us-east-1", *, tags: dict[str, str] | None = None,
               launch: list[dict[str, str]] | None = None, image_id: str | None = None) -> str:
        ec2 = self.client(region)
        iid = ec2.register_image(Name=name, RootDeviceName="/dev/xvda")["ImageId"]
        if image_id:
            set_image_id(self.account, region, iid, image_id)
            iid = image_id
        if tags:
            ec2.create_tags(Resources=[iid], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        if launch:
            ec2.modify_image_attribute(ImageId=iid, Attribute="launchPermission",
                                       LaunchPermission={"Add": launch})
        return iid

    def launch(self, image_id: str, region: str = "us-east-1") -> list[dict[str, str]]:
        resp = self.client(region).describe_image_attribute(ImageId=image_id,
                                                            Attribute="launchPermission")
        return sorted(resp["LaunchPermissions"], key=lambda d: sorted(d.items()))


@dataclass
class MotoServer:
    url: str
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def client(self, service: str, region: str = "us-east-1") -> Any:
        """A client of the server, made once per (service, Region): a client takes ~20 ms."""
        if (service, region) not in self._clients:
            self._clients[(service, region)] = boto3.client(service, region_name=region,
                                                            endpoint_url=self.url)
        return self._clients[(service, region)]

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))
        IMAGE_BLOCK_PUBLIC_ACCESS.clear()
        RECYCLE_BIN.clear()
        IMAGE_USAGE_REPORTS.clear()


Runner = Callable[..., Result]


class ConnectionCounter:
    """A TCP listener on 127.0.0.1 that counts connections and answers nothing useful."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.count = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def cli_env(endpoint: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "NO_COLOR": "1",
                "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                "AWS_EC2_METADATA_DISABLED": "true"})
    env.pop("GITHUB_STEP_SUMMARY", None)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    env.update(extra or {})
    return env


def run_main(*args: str, env: dict[str, str | None] | None = None, input: str = "") -> Result:
    """Run ``reconcile ARGS`` in this process through :func:`reconciler.cli.main` (the
    console script's entry point), with stdout/stderr captured and ``env`` set for the run."""
    from click.testing import CliRunner

    from reconciler.cli import main

    code: int | str | None = 0
    # main installs SIGINT/SIGTERM handlers for the rest of its process (the console script's):
    # this one's are put back.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
    return Result(code if isinstance(code, int) else 1, out.getvalue().decode(),
                  err.getvalue().decode())


# --------------------------------------------------------------------------- AWS calls


class Calls:
    """Counts API calls by operation through botocore's event system."""

    def __init__(self) -> None:
        self.by_op: collections.Counter[str] = collections.Counter()
        self.params: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, model: Any, params: Any, **_: Any) -> None:
        self.by_op[model.name] += 1

    def record_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.params.append((model.name, dict(params)))


def counted_clients(concurrency: int = 4) -> tuple[Clients, Calls]:
    session = boto3.Session()
    calls = Calls()
    session.events.register("before-call", calls)
    session.events.register("provide-client-params", calls.record_params)
    return Clients(session, concurrency), calls


# --------------------------------------------------------------------------- KMS


ROOT_STATEMENT = {"Sid": "EnableRoot", "Effect": "Allow",
                  "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
                  "Resource": "*"}
FOREIGN = {"Sid": "BackupVault", "Effect": "Allow",
           "Principal": {"AWS": "arn:aws:iam::246813579024:root"},
           "Action": ["kms:Decrypt"], "Resource": "*"}


def make_key(*statements: dict[str, Any]) -> str:
    policy = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT, *statements]}
    meta = boto3.client("kms", region_name="us-east-1").create_key(Policy=json.dumps(policy))
    return str(meta["KeyMetadata"]["Arn"])


def policy_of(key_arn: str) -> dict[str, Any]:
    text = boto3.client("kms", region_name="us-east-1").get_key_policy(
        KeyId=key_arn, PolicyName="default")["Policy"]
    return dict(json.loads(text))


def encrypted_image(aws: Images, name: str, key_arn: str, **kw: Any) -> tuple[str, str]:
    image = aws.create(name, **kw)
    return image, encrypt_image(ACCOUNT, "us-east-1", image, key_arn)


def kms_manifest(rules: str, settings: str = "") -> bytes:
    """:func:`manifest_yaml` in us-east-1; ``settings`` as ``, key: value`` pairs."""
    extra = "\n".join(part.strip() for part in settings.split(",") if part.strip())
    return manifest_yaml(rules, settings=extra).encode()


def session_with(calls: Calls | None = None) -> Clients:
    session = boto3.Session()
    if calls is not None:
        session.events.register("before-call", calls)
        session.events.register("provide-client-params", calls.record_params)
    return Clients(session, 4)


def plan_and_apply(text: bytes, clients: Clients | None = None) -> tuple[Plan, ApplyReport]:
    clients = clients or session_with()
    reader = Reader(clients, 4)
    m = parse_manifest(text, "m.yaml")
    plan = build_plan(m, reader)
    report = Applier.for_plan(clients, reader.identity(), plan,
                              m.settings.kms_grants).apply(plan.operations)
    return plan, report


def replan(text: bytes) -> Plan:
    return build_plan(parse_manifest(text, "m.yaml"), Reader(session_with(), 4))


def owned(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {st["Sid"]: st for st in policy["Statement"] if st["Sid"] in kms.OWNED_SIDS}


def readme_write_statements() -> list[dict[str, Any]]:
    """The statements of README's apply addition to the read-only policy."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## IAM permissions"):]
    statements: list[dict[str, Any]] = json.loads(
        re.findall(r"```json\n(.*?)```", section, flags=re.S)[1])
    return statements


def readme_policies() -> tuple[set[str], set[str]]:
    """The actions of README's read-only policy and of its apply addition."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## IAM permissions"):]
    read_doc = json.loads(re.findall(r"```json\n(.*?)```", section, flags=re.S)[0])
    read = {a for st in read_doc["Statement"] for a in st["Action"]}
    return read, {a for st in readme_write_statements() for a in st["Action"]}
