"""Least privilege (the tool calls nothing beyond README's IAM policies) and secrets hygiene."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
from helpers import (
    ACCOUNT,
    DEV,
    HAND,
    OU,
    PROD,
    Calls,
    Images,
    MotoServer,
    Runner,
    readme_policies,
    readme_write_statements,
)

from reconciler.core.manifest import parse_manifest
from reconciler.core.model import DEPRECATED_BY_TAG, OWNERSHIP_TAG
from reconciler.shell.applier import Applier, write_tags
from reconciler.shell.aws import Clients
from reconciler.shell.gather import build_plan
from reconciler.shell.reader import Reader
from reconciler.shell.sandbox import IMAGE_USAGE_REPORTS, encrypt_image


def _iam_action(service_id: str, op: str) -> str:
    prefix = {"EC2": "ec2", "KMS": "kms", "STS": "sts"}[service_id]
    return f"{prefix}:{op}"


class Actions(Calls):
    def __init__(self) -> None:
        super().__init__()
        self.actions: set[str] = set()

    def __call__(self, model: Any, params: Any, **kw: Any) -> None:
        super().__call__(model, params, **kw)
        self.actions.add(_iam_action(model.service_model.service_id, model.name))


def test_every_call_is_covered_by_the_documented_policies(aws: Images) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/golden", TargetKeyId=key)
    enc = aws.create("golden-enc", launch=[{"UserId": HAND}])
    snap = encrypt_image(ACCOUNT, "us-east-1", enc, key)
    boto3.client("ec2", region_name="us-east-1").modify_snapshot_attribute(
        SnapshotId=snap, Attribute="createVolumePermission", OperationType="add", UserIds=[DEV])
    aws.create("golden-plain")
    aws.create("public-base")
    # usage_reports: HAND's removal from golden-enc reads the image's report and its entries
    IMAGE_USAGE_REPORTS.add(ACCOUNT, "us-east-1", enc, created=dt.datetime.now(dt.UTC))
    text = f"""\
version: 1
settings: {{name: amis, regions: [us-east-1], allow_public: true, usage_reports: true}}
images:
  - {{name: enc, select: {{name: "golden-enc"}}, launch: ["{PROD}", "{OU}"], copy: ["{PROD}"]}}
  - {{name: plain, select: {{name: "golden-plain"}}, launch: ["{PROD}"]}}
  - {{name: pub, select: {{name: "public-base"}}, launch: [public], copy: [public]}}
""".encode()
    read, write = readme_policies()

    session = boto3.Session()
    actions = Actions()
    session.events.register("before-call", actions)
    tag_keys: set[str] = set()

    def record_tags(params: dict[str, Any], **_: Any) -> None:
        tag_keys.update(t["Key"] for t in params.get("Tags") or [])

    for op in ("CreateTags", "DeleteTags"):
        session.events.register(f"provide-client-params.ec2.{op}", record_tags)
    clients = Clients(session, 4)
    reader = Reader(clients, 4)
    plan = build_plan(parse_manifest(text, "m.yaml"), reader)
    assert not plan.errors
    plan_actions = set(actions.actions)
    assert plan_actions <= read, f"plan used undocumented actions: {plan_actions - read}"
    # The flow above exercises every read the tool has.
    assert plan_actions == read

    applier = Applier.for_plan(clients, reader.identity(), plan)
    report = applier.apply(plan.operations)
    assert not report.failed
    assert plan.ownership is not None
    assert not write_tags(applier, plan.ownership, report).failed
    assert actions.actions - plan_actions <= write | {"kms:GetKeyPolicy"}
    # the tags statement allows exactly the tool's own tag keys, and the tool writes no other
    (tags,) = [st for st in readme_write_statements() if "ec2:CreateTags" in st["Action"]]
    allowed = set(tags["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"])
    assert allowed == {OWNERSHIP_TAG, DEPRECATED_BY_TAG}
    assert tag_keys == {OWNERSHIP_TAG}, tag_keys  # DEPRECATED_BY_TAG: only with deprecate_retired
    assert {"ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute", "kms:PutKeyPolicy",
            "ec2:CreateTags"} <= actions.actions


def _consumer_role_actions() -> set[str]:
    """The actions of README's consumer role ("Check from the consumer's side")."""
    import re

    from helpers import ROOT

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### The consumer role"):]
    doc = json.loads(re.findall(r"```json\n(.*?)```", section, flags=re.S)[0])
    return {a for st in doc["Statement"] for a in
            (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}


def test_verify_calls_nothing_beyond_the_documented_policies(
        aws: Images, consumers: Any, monkeypatch: Any, tmp_path: Path) -> None:
    """The owner side stays within the read policy (plus kms:ListGrants with kms_grants:
    any), the consumer side within README's consumer role: every read it documents."""
    from builders import P_PROD, key_policy
    from consumer_view import TEMPLATE
    from helpers import run_main

    import reconciler.shell.consumer as consumer

    consumers.roles.add(PROD)
    key = boto3.client("kms", region_name="us-east-1").create_key(
        Policy=json.dumps(key_policy(P_PROD)))["KeyMetadata"]["Arn"]
    enc = aws.create("golden-enc", launch=[{"UserId": PROD}])
    encrypt_image(ACCOUNT, "us-east-1", enc, key)
    gone = aws.create("golden-gone")  # declared, not shared: the owner's launch permissions
    sides: dict[bool, set[str]] = {True: set(), False: set()}
    theirs: set[int] = set()
    made = consumer.consumer_clients

    def consumer_clients(*args: Any, **kw: Any) -> Clients:
        c = made(*args, **kw)
        theirs.add(id(c))
        return c

    get = Clients.get

    def recording_get(self: Clients, service: str, region: str | None = None) -> Any:
        client = get(self, service, region)
        side = id(self) in theirs
        client.meta.events.register("before-call", lambda model, **_: sides[side].add(
            _iam_action(model.service_model.service_id, model.name)), unique_id="least")
        return client

    monkeypatch.setattr(consumer, "consumer_clients", consumer_clients)
    monkeypatch.setattr(Clients, "get", recording_get)
    path = tmp_path / "amis.yaml"
    path.write_text(f"""\
version: 1
settings: {{name: amis, regions: [us-east-1], kms_grants: any}}
images:
  - {{name: r, select: {{ids: [{enc}, {gone}]}}, launch: ["{PROD}"]}}
""")
    r = run_main("verify", str(path), "--consumer-role", TEMPLATE)
    assert r.code == 3, r.out + r.err
    read, _ = readme_policies()
    assert sides[False] <= read | {"kms:ListGrants"}, sides[False] - read
    assert "kms:ListGrants" in sides[False] and "ec2:DescribeImageAttribute" in sides[False]
    assert sides[True] == _consumer_role_actions(), sides[True]


SECRET_KEY = "S3cr3tKeyValueThatMustNeverBeLogged0000"
SESSION_TOKEN = "SessionTokenThatMustNeverBeLogged1111"
ACCESS_KEY = "AKIASECRETACCESSKEY9"


def test_credentials_never_appear_in_output_or_logs(server: tuple[MotoServer, Images],
                                                    run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    images.create("golden-1", launch=[{"UserId": HAND}])
    m = tmp_path / "amis.yaml"
    m.write_text(f'version: 1\nsettings: {{name: amis}}\nimages:\n  - {{name: g, select: {{name: "golden-*"}}, '
                 f'launch: ["{PROD}"]}}\n')
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_SESSION_TOKEN": SESSION_TOKEN}
    log = tmp_path / "apply.jsonl"
    outputs = []
    for args in (["plan", str(m), "-v"], ["plan", str(m), "--format", "json"],
                 ["apply", str(m), "--auto-approve", "-v", "--log-file", str(log)]):
        r = run_cli(*args, env=env)
        assert r.code == 0, r.err
        outputs += [r.out, r.err]
    # An AWS failure's message must not leak them either.
    with _Refusing() as url:
        r = run_cli("plan", str(m), env={**env, "AWS_ENDPOINT_URL": url})
    assert r.code == 1 and "InvalidClientTokenId" in r.err and "sts:GetCallerIdentity" in r.err
    outputs += [r.out, r.err, log.read_text()]
    blob = "\n".join(outputs)
    for secret in (SECRET_KEY, SESSION_TOKEN, ACCESS_KEY):
        assert secret not in blob
    records = [r for r in map(json.loads, log.read_text().splitlines())
               if r["kind"] != "ownership_tag"]
    assert records and all({"time", "caller", "action", "principal", "result"} <= r.keys()
                           for r in records)


class _Refusing:
    """An endpoint on 127.0.0.1 that answers every request with an STS-style 403."""

    BODY = (b"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>"
            b"<Message>The security token included in the request is invalid.</Message>"
            b"</Error></ErrorResponse>")

    def __enter__(self) -> str:
        import http.server
        import threading

        body = self.BODY

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(403)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
