"""Client-side pacing (reconciler/core/pacing.py): a token bucket per (account, Region, action) at
the documented defaults, in front of every request.

The rates modelled are those of the EC2 developer guide, "Request throttling for the Amazon
EC2 API" (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html, "Request
token limits"), the KMS developer guide, "Request quotas"
(https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html) and the IAM
user guide, "IAM and AWS STS quotas"."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest
from builders import IDENTITY, P_PROD, image
from helpers import EU, US, Images, MotoServer, Runner, run_main

from reconciler.core.model import Action, Operation, OpKind, Principal
from reconciler.core.pacing import (
    Pacer,
    Rate,
    TokenBucket,
    default_rate,
    describe_duration,
    with_eta,
)
from reconciler.shell.applier import Applier, write_calls
from reconciler.shell.aws import Clients
from reconciler.shell.concurrency import parallel_map, spread
from reconciler.shell.reader import Reader


class FakeClock:
    """Time that moves only when someone sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)


def test_a_bucket_lets_its_burst_through_then_paces_at_its_refill_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(Rate(100, 20), clock)
    waits = [bucket.take()[0] for _ in range(104)]
    assert waits[:100] == [0.0] * 100
    # the 101st request takes the token that arrives 1/20 s later, the next one 2/20 s ...
    assert waits[100:] == pytest.approx([0.05, 0.10, 0.15, 0.20])
    for _ in range(104):
        bucket.settled(1, answered=True)
    clock.now = 10.0  # ten seconds later the bucket is full again (never above its burst)
    assert [bucket.take()[0] for _ in range(100)] == [0.0] * 100
    assert bucket.take()[0] == pytest.approx(0.05)


def test_the_estimate_counts_requests_already_waiting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(Rate(100, 5), clock)
    assert bucket.estimate(100) == 0.0
    assert bucket.estimate(400) == pytest.approx(60.0)  # (400 - 100) / 5
    for _ in range(110):
        bucket.take()  # 10 are queued
    assert bucket.estimate(5) == pytest.approx(3.0)  # (10 + 5) / 5


def test_refill_counts_from_the_first_answer_or_after_the_headroom() -> None:
    """AWS's bucket starts refilling when the run's first request arrives, which the client
    cannot see; an answer comes after its request arrived, so from an answer on the refill
    is certain. Without one, the refill is assumed to start 0.2 s after the first send."""
    clock = FakeClock()
    bucket = TokenBucket(Rate(100, 20), clock, headroom=0.2)
    waits = [bucket.take() for _ in range(102)]
    assert [w for w, _ in waits[:100]] == [0.0] * 100
    assert {run for _, run in waits} == {1}
    # no answer yet: the 0.2 s of headroom, then a token every 1/20 s
    assert [w for w, _ in waits[100:]] == pytest.approx([0.25, 0.30])
    assert bucket.estimate(2) == pytest.approx(0.2 + 4 / 20)
    clock.now = 0.06
    bucket.settled(1, answered=True)  # AWS answered one: its refill started by now at the latest
    assert bucket.take() == (pytest.approx(3 / 20), 1)  # 0.06 + 3/20 from the start
    clock.now = 0.1
    bucket.settled(1, answered=True)  # a later answer proves nothing more
    assert bucket.take() == (pytest.approx(0.06 + 4 / 20 - 0.1), 1)
    bucket.settled(1, answered=False)  # a request that failed on its way proves nothing
    assert bucket.take() == (pytest.approx(0.06 + 5 / 20 - 0.1), 1)


def test_a_request_on_its_way_holds_its_token_at_aws() -> None:
    """AWS takes a token when a request arrives and stops refilling when full: five
    requests sent at 0.03 that reach AWS at 0.13 leave it 95 + 0.17 s x 20 = 98.4 tokens at
    0.30, however much the client's bucket refilled. Until they are answered, the client
    counts no more than 100 less those five."""
    clock = FakeClock()
    bucket = TokenBucket(Rate(100, 20), clock, headroom=0.2)
    _, run = bucket.take()
    clock.now = 0.01
    bucket.settled(run, answered=True)
    clock.now = 0.03
    for _ in range(5):
        bucket.take()
    clock.now = 0.30
    assert sum(bucket.take()[0] == 0 for _ in range(100)) == 95


def test_a_new_run_starts_only_when_nothing_is_on_its_way() -> None:
    """A request sent long ago and not answered yet may still reach AWS: the bucket does not
    count as full (which would start a run with a burst of 100) until it is answered."""
    clock = FakeClock()
    bucket = TokenBucket(Rate(100, 20), clock, headroom=0.2)
    assert bucket.take() == (0.0, 1)
    clock.now = 60.0
    assert [bucket.take() for _ in range(99)] == [(0.0, 1)] * 99
    assert bucket.take() == (pytest.approx(0.05), 1)  # the 100th waits: one is on its way
    for _ in range(101):
        bucket.settled(1, answered=True)
    clock.now = 120.0  # everything answered, idle: full again, a new run
    assert [bucket.take()[1] for _ in range(100)] == [2] * 100


@pytest.mark.parametrize(("service", "action", "rate"), [
    ("ec2", "DescribeImages", Rate(100, 20)),
    ("ec2", "DescribeImageAttribute", Rate(100, 20)),
    ("ec2", "GetImageBlockPublicAccessState", Rate(100, 20)),
    # its "unfiltered and unpaginated" row is for calls with neither a filter nor pagination:
    # the reader's name their snapshots or filter them
    ("ec2", "DescribeSnapshots", Rate(100, 20)),
    ("ec2", "ModifyImageAttribute", Rate(100, 5)),
    ("ec2", "ModifySnapshotAttribute", Rate(100, 5)),
    ("ec2", "CreateTags", Rate(100, 10)),
    ("ec2", "DeleteTags", Rate(100, 10)),
    ("ec2", "EnableImageDeprecation", Rate(50, 5)),  # other mutating actions
    ("kms", "DescribeKey", Rate(2000, 2000)),
    ("kms", "GetKeyPolicy", Rate(1000, 1000)),
    ("kms", "PutKeyPolicy", Rate(15, 15)),
    ("kms", "ListAliases", Rate(500, 500)),
    ("sts", "GetCallerIdentity", Rate(600, 600)),
])
def test_documented_default_rates(service: str, action: str, rate: Rate) -> None:
    assert default_rate(service, action) == rate


def test_share_overrides_and_separate_buckets() -> None:
    clock = FakeClock()
    half = Pacer(0.5, {"ModifyImageAttribute": Rate(200, 10)}, clock=clock, sleep=clock.sleep)
    assert half.rate("ec2", "DescribeImageAttribute") == Rate(50, 10)
    assert half.rate("ec2", "ModifyImageAttribute") == Rate(200, 10)  # raised limit, as given
    # 50 tokens at once, then no refill counted before an answer or 0.2 s of headroom
    for _ in range(50):
        half.acquire(US, "ec2", "DescribeImageAttribute")
    assert clock.slept == []
    # another Region and another action have buckets of their own
    half.acquire(EU, "ec2", "DescribeImageAttribute")
    half.acquire(US, "ec2", "DescribeSnapshotAttribute")
    assert clock.slept == []
    ticket = half.acquire(US, "ec2", "DescribeImageAttribute")
    assert clock.slept == [pytest.approx(0.2 + 0.1)]
    assert ticket is not None
    half.settled(ticket, answered=True)  # at 0 on this clock: the refill started then
    half.acquire(US, "ec2", "DescribeImageAttribute")
    assert clock.slept[1:] == [pytest.approx(0.2)]  # the 52nd token
    # STS operations share one bucket (600 per second; 0.1 s of headroom: a tenth of it)
    clock.slept.clear()
    sts = Pacer(clock=clock, sleep=clock.sleep)
    for _ in range(300):
        sts.acquire(US, "sts", "AssumeRole")
        sts.acquire(US, "sts", "GetCallerIdentity")
    assert clock.slept == []
    sts.acquire(US, "sts", "AssumeRole")
    assert clock.slept == [pytest.approx(0.1 + 1 / 600)]
    with pytest.raises(ValueError):
        Pacer(0)
    off = Pacer(enabled=False, clock=clock, sleep=clock.sleep)
    assert [off.acquire(US, "ec2", "ModifyImageAttribute") for _ in range(500)] == [None] * 500
    assert off.waited == 0.0


def test_the_slowest_bucket_decides_and_durations_read_well() -> None:
    pacer = Pacer(clock=FakeClock())
    seconds, slowest = pacer.bottleneck({(US, "ec2", "ModifyImageAttribute"): 400,
                                         (US, "ec2", "CreateTags"): 2,
                                         (EU, "ec2", "ModifyImageAttribute"): 300})
    # (400 - 100) / 5
    assert (seconds, slowest) == (pytest.approx(60.0), (US, "ec2", "ModifyImageAttribute"))
    assert [describe_duration(s) for s in (0.2, 45, 89, 150, 3900)] == [
        "~1 s", "~45 s", "~89 s", "~3 min", "~1 h 5 min"]
    assert with_eta("Reading", 9.9) == "Reading"
    assert with_eta("Reading", 45) == "Reading (~45 s at the request rate)"


def test_every_request_waits_for_its_token(aws: Images) -> None:
    """The pacer sits in front of every request a client sends (botocore's before-send)."""
    clock = FakeClock()
    pacer = Pacer(overrides={"DescribeRegions": Rate(20, 10)}, clock=clock, sleep=clock.sleep)
    ec2 = Clients(boto3.Session(region_name=US), pacer=pacer).get("ec2", US)
    for _ in range(22):  # 20 tokens, then the refill counted from the first answer
        ec2.describe_regions()
    assert pacer.requests == 22
    # The clock stands still: the answers came at 0, when the 21st and 22nd tokens are due
    # 1/10 and 2/10 s later (without the answers, after 0.2 s more of headroom).
    assert clock.slept == pytest.approx([0.1, 0.2])
    with pytest.raises(ec2.exceptions.ClientError):  # an error answer settles its token too
        ec2.describe_images(ImageIds=["ami-0123456789abcdef0"])
    assert [pacer._bucket(US, "ec2", action).pending  # type: ignore[union-attr]
            for action in ("DescribeRegions", "DescribeImages")] == [0, 0]


def test_workers_spread_across_regions_and_results_keep_their_order() -> None:
    items = [(US, 1), (US, 2), (US, 3), (EU, 4), (EU, 5), ("ap-south-1", 6)]
    assert [items[i][1] for i in spread(items, lambda x: x[0])] == [1, 4, 6, 2, 5, 3]
    assert parallel_map(lambda x: x[1] * 10, items, 4, lambda x: x[0]) == [10, 20, 30, 40, 50, 60]
    assert parallel_map(lambda x: x[1], items, 1) == [1, 2, 3, 4, 5, 6]


def test_a_long_read_says_how_long_it_takes(aws: Images) -> None:
    clock = FakeClock()
    pacer = Pacer(overrides={"DescribeImageAttribute": Rate(1, 0.1)}, clock=clock,
                  sleep=clock.sleep)
    images = [image(aws.create(f"golden-{n}"), name=f"golden-{n}") for n in range(5)]
    labels: list[str] = []

    class Recorder:
        def start(self, label: str, total: int) -> None:
            labels.append(label)

        def advance(self, n: int = 1) -> None:
            pass

        def finish(self) -> None:
            pass

    reader = Reader(Clients(boto3.Session(region_name=US), pacer=pacer), 2)
    reader.progress = Recorder()
    reader.all_launch_permissions(images)
    assert labels == ["Reading launch permissions (~40 s at the request rate)"]  # (5 - 1) / 0.1


def test_write_calls_model_one_call_per_changed_resource() -> None:
    def op(kind: OpKind, action: Action, resource: str, p: Principal = P_PROD) -> Operation:
        return Operation(action, kind, US, resource, p, ("golden",))

    many = [Principal.account(f"{100000000000 + i}") for i in range(501)]
    ops = [op(OpKind.LAUNCH, Action.ADD, "ami-1"), op(OpKind.LAUNCH, Action.REMOVE, "ami-1"),
           op(OpKind.LAUNCH, Action.ADD, "ami-2"),
           *[op(OpKind.COPY, Action.ADD, "snap-1", p) for p in many],
           op(OpKind.COPY, Action.REMOVE, "snap-1", Principal.account("999988887777")),
           op(OpKind.KMS, Action.ADD, "arn:aws:kms:us-east-1:1:key/k"),
           op(OpKind.KMS, Action.REMOVE, "arn:aws:kms:us-east-1:1:key/k",
              Principal.account("999988887777"))]
    assert write_calls(ops, {(US, "ami-2"): "210987654321"}) == {
        "": {(US, "ec2", "ModifyImageAttribute"): 1,
             (US, "ec2", "ModifySnapshotAttribute"): 2 + 1,  # 501 adds: 2 calls; 1 removal
             (US, "kms", "GetKeyPolicy"): 2, (US, "kms", "PutKeyPolicy"): 2},
        "210987654321": {(US, "ec2", "ModifyImageAttribute"): 1},
    }


@pytest.mark.parametrize(("args", "env", "said"), [
    (["--api-rate-share", "0"], None, "--api-rate-share must be a number between 0.05 and 1, "
                                      "got '0'"),
    (["--api-rate-share", "0.01"], None, "got '0.01'"),
    (["--api-rate-share", "1.5"], None, "got '1.5'"),
    (["--api-rate-share", "nan"], None, "got 'nan'"),
    (["--api-rate-share", "abc"], None, "--api-rate-share must be a number"),
    # from the environment: the message names the variable, not an option nobody typed
    ([], "abc", "error: RECONCILE_API_RATE_SHARE must be a number between 0.05 and 1, got 'abc'"),
    ([], "0", "RECONCILE_API_RATE_SHARE must be a number between 0.05 and 1, got '0'"),
])
def test_the_share_is_checked(args: list[str], env: str | None, said: str,
                              tmp_path: Path) -> None:
    m = tmp_path / "amis.yaml"
    m.write_text("version: 1\nimages: []\n")
    r = run_main("plan", str(m), *args, env={"RECONCILE_API_RATE_SHARE": env})
    assert r.code == 1 and said in r.err, r.err


@pytest.mark.parametrize(("rates", "said"), [
    ("{modify: {burst: 1, per_second: 1}}", "'modify' is not an API action reconcile calls"),
    ("{ModifyImageAttribute: {burst: 0, per_second: 1}}", "burst"),
    ("{ModifyImageAttribute: {burst: 10, per_second: 0}}", "per_second"),
    ("{ModifyImageAttribute: {burst: 10}}", "per_second"),
])
def test_api_rates_are_validated_with_located_errors(rates: str, said: str,
                                                     tmp_path: Path) -> None:
    m = tmp_path / "amis.yaml"
    m.write_text(f"version: 1\nsettings:\n  api_rates: {rates}\nimages: []\n")
    r = run_main("validate", str(m))
    assert r.code == 1 and f"{m}:3:" in r.err and said in r.err, r.err


def test_plan_says_how_long_a_long_apply_takes(server: tuple[MotoServer, Images],
                                               run_cli: Runner, tmp_path: Path) -> None:
    """Three images to change at a (configured) 1 write per 20 s, after a burst of 1."""
    _, images = server
    ids = [images.create(f"golden-{n}") for n in range(3)]
    m = tmp_path / "amis.yaml"
    m.write_text('version: 1\nsettings:\n  name: amis\n  regions: [us-east-1]\n'
                 '  api_rates: {ModifyImageAttribute: {burst: 1, per_second: 0.05}}\n'
                 'principals: {prod: "111122223333"}\n'
                 'images:\n  - {name: golden, select: {name: "golden-*"}, launch: [prod]}\n')
    r = run_cli("plan", str(m))
    assert r.code == 0 and all(i in r.out for i in ids), r.err
    assert ("Applying this plan takes ~40 s at the configured request rate for "
            "ModifyImageAttribute (0.05 per second) in us-east-1.") in r.err
    r = run_cli("plan", str(m), "--api-rate-share", "0.5")  # the share scales defaults only
    assert "~40 s at the configured request rate" in r.err


def test_the_wait_comes_before_signing(aws: Images) -> None:
    """A request is signed after its token arrives, so its SigV4 time is the time it is sent
    (AWS refuses a signature older than 5 minutes; a long wait must not age it)."""
    clock = FakeClock()
    order: list[str] = []
    pacer = Pacer(overrides={"DescribeRegions": Rate(1, 10)}, clock=clock,
                  sleep=lambda s: order.append("wait"))
    clients = Clients(boto3.Session(region_name=US), pacer=pacer)
    ec2 = clients.get("ec2", US)
    ec2.meta.events.register("before-sign.ec2", lambda **_: order.append("sign"))
    for _ in range(3):
        ec2.describe_regions()
    assert order == ["sign", "wait", "sign", "wait", "sign"]


def test_concurrency_caps_requests_in_flight_across_pools() -> None:
    """Two reads of one account at the same time (as a plan runs launch and snapshot reads)
    still have at most --concurrency requests in flight."""
    import http.server
    import os

    from reconciler.shell.concurrency import run_all

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    class Slow(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            self.rfile.read(int(self.headers["Content-Length"]))
            threading.Event().wait(0.05)
            body = (b"<DescribeImageAttributeResponse><imageId>ami-1</imageId>"
                    b"<launchPermission/></DescribeImageAttributeResponse>")
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with lock:
                state["now"] -= 1

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        session = boto3.Session(region_name=US)
        clients = Clients(session, 4)
        os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{server.server_port}"
        reader = Reader(clients, 4)
        images = [image(i, name="n") for i in range(24)]
        run_all(lambda: reader.all_launch_permissions(images[:12]),
                lambda: reader.all_launch_permissions(images[12:]))
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
        server.shutdown()
    assert state["peak"] == 4


def test_an_unparseable_answer_gives_its_request_slot_back() -> None:
    """botocore raises a parse error before its response-received event: the slot must
    still come back, or a later pool waits for ever (here: concurrency 2, so two lost
    slots would hang the second read)."""
    import http.server
    import os

    from reconciler.shell.aws import CallError

    class Garbage(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"\x00\x01 this is not a response {]"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    images = [image(i, name="n") for i in range(6)]
    outcome: list[str] = []

    def two_reads_and_two_applies() -> None:
        clients = Clients(boto3.Session(region_name=US), 2)
        reader = Reader(clients, 2)
        for _ in range(2):
            try:
                reader.all_launch_permissions(images)
            except CallError as exc:
                outcome.append(exc.operation)
        applier = Applier(clients, IDENTITY, concurrency=2)
        ops = [Operation(Action.ADD, OpKind.LAUNCH, US, i.image_id, P_PROD, ("r",)) for i in images]
        for _ in range(2):
            report = applier.apply(ops)
            outcome.append(f"{len(report.failed)} writes failed")

    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{server.server_port}"
    try:
        worker = threading.Thread(target=two_reads_and_two_applies, daemon=True)
        worker.start()
        worker.join(timeout=30)
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
        server.shutdown()
    assert not worker.is_alive(), "a call waited for ever for a request slot"
    assert outcome == ["DescribeImageAttribute", "DescribeImageAttribute",
                       "6 writes failed", "6 writes failed"]


@pytest.mark.parametrize("kind", ["garbage200", "html500", "drop"])
def test_every_token_is_settled_whatever_the_answer(moto_server_session: MotoServer,
                                                   kind: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer botocore cannot read (no response-received), a proxy's error page or a
    dropped connection (retried): no token stays counted as on its way, or the bucket's
    ceiling would sink for the rest of the run."""
    from faultproxy import FaultProxy

    from reconciler.shell.aws import CallError, aws_call

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    pacer = Pacer()
    with FaultProxy(moto_server_session.url, faults={"DescribeRegions": kind}) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        ec2 = Clients(boto3.Session(region_name=US), pacer=pacer).get("ec2", US)
        with pytest.raises(CallError), aws_call("ec2", "DescribeRegions"):
            ec2.describe_regions()
    assert pacer.requests >= 1
    assert pacer._bucket(US, "ec2", "DescribeRegions").pending == 0  # type: ignore[union-attr]
