"""Benchmark against a model of AWS's request limits, run on demand (not in the suite):

    .venv/bin/python tests/perf/buckets.py              # N = 300, 1,000 and 3 Regions x 300
    .venv/bin/python tests/perf/buckets.py --sizes 300  # just one size
    .venv/bin/python tests/perf/buckets.py --sizes 1000 --events-only  # one image's event
    .venv/bin/python tests/perf/buckets.py --sizes 300 --repeat-plan 5  # the plan, 5 times

The installed ``reconcile`` runs in a subprocess against a moto server behind a loopback
proxy (tests/faultproxy.py) that adds a fixed latency to every request and enforces EC2's
per-action token buckets per Region as the EC2 developer guide documents them ("Request
throttling for the Amazon EC2 API": non-mutating actions 100 tokens refilled at 20/s;
DescribeSnapshots and six other reads made with neither a filter nor pagination 50 / 10;
ModifyImageAttribute and ModifySnapshotAttribute 100 / 5, CreateTags and DeleteTags 100 / 10,
other mutating actions 50 / 5): a request finding its bucket empty is refused with
RequestLimitExceeded (HTTP 503), as AWS does. The buckets are implemented here, from the
requests' parameters, independently of the client's pacer (reconciler/core/pacing.py).

The package is byte-compiled first, as pip does when it installs it (bench.byte_compile).

Estate: N images per Region, each shared with 5 of 50 accounts; the manifest allows 10. Each
command runs behind a fresh proxy (full buckets, as for runs far apart). Printed per run:
wall time, the floor the buckets allow and wall / floor, requests by action (and refused),
and the reconcile process's peak memory. After the sweep, one image of the estate drifts by
hand and its CloudTrail event goes through ``reconcile event`` (and ``--detect-only``).

Floor: the reads of a phase can go no faster than their slowest bucket allows,
max(0, requests - capacity) / refill, and an apply reads everything (its guards need the
whole plan) before its first write, so its floor is the read floor plus the write floor.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.request import urlopen

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench import _PEAK_RSS_WRAPPER, ACCOUNT, accounts, byte_compile, listing_calls  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

LATENCY = 0.050
REGIONS3 = ("us-east-1", "eu-west-1", "ap-southeast-2")
# EC2 developer guide, "Request token bucket sizes and refill rates" (capacity, refill per
# second): https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html
EC2_BUCKETS = {"ModifyImageAttribute": (100, 5), "ModifySnapshotAttribute": (100, 5),
               "CreateTags": (100, 10), "DeleteTags": (100, 10)}
MUTATING = ("Modify", "Create", "Delete", "Put")
# "Unfiltered and unpaginated non-mutating actions": a bucket of their own, 50 / 10, for the
# calls that specify "neither pagination nor a filter"; a filter (Filter.N, or the resources
# named by ID) or pagination (MaxResults, NextToken) takes the non-mutating bucket.
UNFILTERED = ("DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces",
              "DescribeSecurityGroups", "DescribeSnapshots", "DescribeSpotInstanceRequests",
              "DescribeVolumes")
NARROWING = ("Filter.", "MaxResults", "NextToken", "SnapshotId.", "InstanceId.", "VolumeId.",
             "GroupId.", "NetworkInterfaceId.", "SpotInstanceRequestId.")


def ec2_bucket(action: str, params: Mapping[str, list[str]] | None = None) -> str:
    """The bucket a request takes: its action's, or the unfiltered one of that action."""
    if action in UNFILTERED and not any(k.startswith(NARROWING) for k in params or {}):
        return f"{action} (unfiltered)"
    return action


def ec2_rate(bucket: str) -> tuple[int, int]:
    if bucket.endswith(" (unfiltered)"):
        return (50, 10)
    if bucket in EC2_BUCKETS:
        return EC2_BUCKETS[bucket]
    return (50, 5) if bucket.startswith(MUTATING) else (100, 20)


class AwsBuckets:
    """Server-side buckets: a request takes a token or is refused (no queue, no waiting)."""

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, region: str, service: str, bucket: str) -> bool:
        if service != "ec2":
            return True  # KMS and STS quotas are far above what these runs ask
        capacity, refill = ec2_rate(bucket)
        now = time.monotonic()
        with self._lock:
            tokens, at = self._state.get((region, bucket), (float(capacity), now))
            tokens = min(capacity, tokens + (now - at) * refill)
            ok = tokens >= 1
            self._state[(region, bucket)] = (tokens - 1 if ok else tokens, now)
            return ok


def floor(requests: dict[tuple[str, str], int]) -> float:
    """Seconds the buckets allow at best, from the requests per (Region, bucket): reads,
    then writes."""
    def slowest(writes: bool) -> float:
        return max((max(0, n - ec2_rate(b)[0]) / ec2_rate(b)[1]
                    for (_, b), n in requests.items() if b.startswith(MUTATING) is writes),
                   default=0.0)
    return slowest(False) + slowest(True)


def seed(url: str, n: int, regions: tuple[str, ...]) -> None:
    import boto3
    from moto.ec2.models import ec2_backends

    pool = accounts(50)
    for region in regions:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
        backend = ec2_backends[ACCOUNT][region]
        for i in range(n):
            iid = ec2.register_image(Name=f"golden-{i:05d}", RootDeviceName="/dev/xvda")["ImageId"]
            backend.amis[iid].launch_permissions = [
                {"UserId": pool[(i * 7 + k * 11) % 50]} for k in range(5)]


def manifest(regions: tuple[str, ...]) -> str:
    allowed = ", ".join(f'"{a}"' for a in accounts(10))
    return (f"version: 1\nsettings: {{name: bench, regions: [{', '.join(regions)}], "
            "max_removals: 1000000}\n"
            f"images:\n  - name: golden\n    select: {{name: \"golden-*\"}}\n"
            f"    launch: [{allowed}]\n")


def run(url: str, command: list[str]) -> dict[str, Any]:
    import subprocess

    buckets = AwsBuckets()
    counts: dict[tuple[str, str], int] = {}  # (Region, bucket) -> requests
    seen: dict[str, list[float]] = {}  # action -> [first, last] arrival, from the start
    lock = threading.Lock()
    t0 = time.perf_counter()

    def admit(region: str, service: str, action: str, params: Mapping[str, list[str]]) -> bool:
        bucket = ec2_bucket(action, params) if service == "ec2" else action
        with lock:
            counts[(region, bucket)] = counts.get((region, bucket), 0) + 1
            at = time.perf_counter() - t0
            seen.setdefault(action, [at, at])[1] = at
        return buckets.admit(region, service, bucket)

    with FaultProxy(url, latency=LATENCY, admit=admit) as proxy:
        env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "NO_COLOR": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _PEAK_RSS_WRAPPER, *command, "--quiet"],
                              env=env, text=True, capture_output=True)
        wall = time.perf_counter() - t0
    assert proc.returncode in (0, 2), proc.stderr
    peak_kib = int(proc.stderr.strip().splitlines()[-1].split()[1])
    by_action: dict[str, int] = {}
    for (_, bucket), n in counts.items():
        action = bucket.removesuffix(" (unfiltered)")
        by_action[action] = by_action.get(action, 0) + n
    return {"wall": wall, "floor": floor(counts), "requests": by_action,
            "refused": dict(proxy.refused), "peak_mib": peak_kib / 1024, "seen": seen}


def formula(n: int, regions: tuple[str, ...], enabled: set[str], apply: bool) -> dict[str, int]:
    """The README's call formula ("AWS calls") for this estate: unencrypted images with one
    snapshot each, no copy rules, ownership tags on, no --region."""
    calls = {"GetCallerIdentity": 1, "DescribeRegions": 1,
             # the listing's pages per Region, and the ownership scan of every other enabled
             # Region
             "DescribeImages": listing_calls(n) * len(regions) + len(enabled - set(regions)),
             "DescribeImageAttribute": n * len(regions),
             "DescribeSnapshots": -(-n // 200) * len(regions)}
    if apply:
        calls |= {"ModifyImageAttribute": n * len(regions),
                  "CreateTags": -(-n // 1000) * len(regions)}
    return calls


def event_formula() -> dict[str, int]:
    """``reconcile event`` for a ModifyImageAttribute on one unencrypted managed image whose
    copy the rules leave alone (README, "Event-driven correction"): the caller, the image
    (for the event, then for the run), its launch permissions, its snapshot, the write."""
    return {"GetCallerIdentity": 1, "DescribeImages": 2, "DescribeImageAttribute": 1,
            "DescribeSnapshots": 1, "ModifyImageAttribute": 1}


def event_rows(url: str, n: int, m: Path, tmp: str, tagged: bool) -> list[dict[str, Any]]:
    """One image drifts by hand (an account added); its CloudTrail event, as EventBridge
    delivers it, goes through ``reconcile event``, then ``--detect-only`` on a second one."""
    import json

    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
    images = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"])
    rows = []
    for name, image, extra in (("event", images[n // 2], []),
                               ("event --detect-only", images[n // 3], ["--detect-only"])):
        ec2.modify_image_attribute(ImageId=image, Attribute="launchPermission",
                                   LaunchPermission={"Add": [{"UserId": "999988887777"}]})
        event = Path(tmp) / "event.json"
        event.write_text(json.dumps(modify_image_event(image)))
        row = run(url, ["event", str(m), str(event), *extra])
        row["name"] = f"{name}, 1 image of N = {n:,}"
        expected = event_formula()
        if extra:
            expected.pop("ModifyImageAttribute")
        elif not tagged:  # no sweep before: the image gets its ownership tag too
            expected["CreateTags"] = 1
        row["formula"] = "= formula" if row["requests"] == expected else f"!= {expected}"
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def modify_image_event(image: str) -> dict[str, Any]:
    """An "AWS API Call via CloudTrail" event for ModifyImageAttribute, shaped as
    tests/sample_events.py (which cites the AWS pages) builds it."""
    sys.path.insert(0, str(HERE.parent))
    from sample_events import modify_image

    return modify_image(image, add=[{"UserId": "999988887777"}], account=ACCOUNT)


def scenario(url: str, n: int, regions: tuple[str, ...],
             sweep: bool = True) -> list[dict[str, Any]]:
    urlopen(f"{url}/moto-api/reset", data=b"").close()
    t0 = time.perf_counter()
    seed(url, n, regions)
    print(f"seeded {n} x {len(regions)} Region(s) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        m = Path(tmp) / "bench.yaml"
        m.write_text(manifest(regions))
        import boto3

        enabled = {r["RegionName"] for r in boto3.client(
            "ec2", region_name="us-east-1", endpoint_url=url).describe_regions()["Regions"]}
        runs = (("plan", ["plan", str(m)]),
                ("apply --auto-approve", ["apply", str(m), "--auto-approve"]),
                ("plan after apply", ["plan", str(m), "--detailed-exitcode"]))
        for name, command in runs if sweep else ():
            row = run(url, command)
            row["name"] = f"{name}, N = {n:,} x {len(regions)} Region(s)"
            expected = formula(n, regions, enabled, name.startswith("apply"))
            row["formula"] = "= formula" if row["requests"] == expected else f"!= {expected}"
            rows.append(row)
            print(format_row(row), flush=True)
        if len(regions) == 1:
            rows += event_rows(url, n, m, tmp, tagged=sweep)
    return rows


def repeated_plans(url: str, n: int, times: int) -> None:
    """The plan of N images in one Region, ``times`` times over (a fresh proxy each): each
    wall time and its ratio to the floor to the millisecond, then the range."""
    import statistics

    urlopen(f"{url}/moto-api/reset", data=b"").close()
    seed(url, n, ("us-east-1",))
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        m = Path(tmp) / "bench.yaml"
        m.write_text(manifest(("us-east-1",)))
        for i in range(times):
            row = run(url, ["plan", str(m)])
            ratios.append(row["wall"] / row["floor"])
            first = row["seen"]["DescribeImageAttribute"][0]
            print(f"plan {i + 1}, N = {n:,}: {row['wall']:.3f} s, floor {row['floor']:.1f} s, "
                  f"x {ratios[-1]:.3f}, refused {sum(row['refused'].values())}, first "
                  f"launch-permission read at {first:.3f} s", flush=True)
    print(f"N = {n:,}, {times} plans: x floor min {min(ratios):.3f}, median "
          f"{statistics.median(ratios):.3f}, max {max(ratios):.3f}")


def format_row(r: dict[str, Any]) -> str:
    ratio = r["wall"] / r["floor"] if r["floor"] else float("nan")
    refused = sum(r["refused"].values())
    reqs = ", ".join(f"{k} {v:,}" for k, v in sorted(r["requests"].items()))
    return (f"{r['name']:<44} {r['wall']:>7.1f} s  floor {r['floor']:>6.1f} s  "
            f"x {ratio:>4.2f}  refused {refused:>3}  peak {r['peak_mib']:>5.0f} MiB\n"
            f"    requests {sum(r['requests'].values()):,} {r['formula']}: {reqs}\n"
            "    arrivals (s from start): " + ", ".join(
                f"{a} {t0:.1f}-{t1:.1f}" for a, (t0, t1) in sorted(r["seen"].items(),
                                                                   key=lambda kv: kv[1])))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[300, 1000])
    ap.add_argument("--no-regions", action="store_true", help="skip 3 Regions x 300")
    ap.add_argument("--events-only", action="store_true",
                    help="only the event rows (no plan/apply sweep): one image's event")
    ap.add_argument("--repeat-plan", type=int, metavar="K", default=0,
                    help="only the plan of each size, K times (wall to the millisecond)")
    args = ap.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1", "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    import logging

    from moto.server import ThreadedMotoServer

    from reconciler.shell.sandbox import install_moto_extensions

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    install_moto_extensions()
    byte_compile()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    rows = []
    try:
        if args.repeat_plan:
            for n in args.sizes:
                repeated_plans(url, n, args.repeat_plan)
            return
        for n in args.sizes:
            rows += scenario(url, n, ("us-east-1",), sweep=not args.events_only)
        if not args.no_regions and not args.events_only:
            rows += scenario(url, 300, REGIONS3)
    finally:
        server.stop()
    print(f"\n{LATENCY * 1000:.0f} ms per request; python {sys.version.split()[0]}")
    print("| run | wall | floor | x floor | requests | refused | peak memory |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['wall'] / r['floor']:.2f}" if r["floor"] else "-"
        print(f"| {r['name']} | {r['wall']:.1f} s | {r['floor']:.1f} s | {ratio} | "
              f"{sum(r['requests'].values()):,} ({r['formula']}) | "
              f"{sum(r['refused'].values())} | {r['peak_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
