"""Benchmarks, run on demand (not part of the test suite):

    .venv/bin/python tests/perf/bench.py            # 1,000 images + pure 10k x 100
    .venv/bin/python tests/perf/bench.py --large    # also 10,000 images

Prints one table row per scenario with wall time, peak memory and AWS calls by operation,
and a verdict against the targets. Figures depend on the machine; nothing here asserts
timings inside the unit suite.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                   "AWS_DEFAULT_REGION": "us-east-1", "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                   "AWS_EC2_METADATA_DISABLED": "true"})
for k in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
    del os.environ[k]

import boto3  # noqa: E402

from reconciler.core.desired import ManagedImage, Selection  # noqa: E402
from reconciler.core.manifest import parse_manifest  # noqa: E402
from reconciler.core.model import Identity, Image, Principal  # noqa: E402
from reconciler.core.planning import CurrentState, compute_plan  # noqa: E402
from reconciler.core.render import render_markdown, render_text  # noqa: E402
from reconciler.shell.aws import Clients  # noqa: E402
from reconciler.shell.gather import build_plan  # noqa: E402
from reconciler.shell.reader import Reader  # noqa: E402

ACCOUNT = "123456789012"


def accounts(n: int, base: int = 100000000000) -> list[str]:
    return [str(base + i) for i in range(n)]


def manifest_text(principals: list[str]) -> bytes:
    launch = ", ".join(f'"{p}"' for p in principals)
    return (f"version: 1\nsettings: {{name: bench, ownership: none, regions: [us-east-1], "
            f"max_removals: 1000000}}\n"
            f"images:\n  - name: golden\n    select: {{name: \"golden-*\"}}\n"
            f"    launch: [{launch}]\n").encode()


def seed_images(n: int, current: list[str], endpoint_url: str | None = None) -> None:
    """n owned images; each already shared with ``current`` (set in the backend directly)."""
    from moto.ec2.models import ec2_backends

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint_url)
    backend = ec2_backends[ACCOUNT]["us-east-1"]
    for i in range(n):
        iid = ec2.register_image(Name=f"golden-{i:05d}", RootDeviceName="/dev/xvda")["ImageId"]
        backend.amis[iid].launch_permissions = [{"UserId": a} for a in current]
    ec2.register_image(Name="unmanaged", RootDeviceName="/dev/xvda")


def bench_plan(n: int, principals: int) -> dict[str, Any]:
    from moto import mock_aws

    from reconciler.shell.sandbox import install_moto_extensions

    install_moto_extensions()  # what moto lacks, DescribeImages pages among it
    desired = accounts(principals)
    # Half of the desired accounts are already there, plus some drift to remove.
    current = desired[: principals // 2] + accounts(5, base=900000000000)
    with mock_aws():
        t0 = time.perf_counter()
        seed_images(n, current)
        seed_s = time.perf_counter() - t0
        calls: collections.Counter[str] = collections.Counter()
        session = boto3.Session()
        session.events.register("before-call", lambda model, **_: calls.update([model.name]))
        reader = Reader(Clients(session, 16), 16)
        m = parse_manifest(manifest_text(desired), "bench.yaml")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        plan = build_plan(m, reader)
        wall = time.perf_counter() - t0
        # Growth of the process's peak RSS during the plan (tracemalloc would slow it 3x).
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    expected = {"GetCallerIdentity": 1, "DescribeImages": listing_calls(n),
                "DescribeImageAttribute": n,
                "DescribeSnapshots": -(-n // 200)}
    return {"scenario": f"(a) plan {n:,} images x {principals} principals (moto in-process)",
            "wall_s": wall, "peak_mib": peak / 2**20, "calls": dict(calls),
            "detail": f"seeding moto took {seed_s:.1f}s; peak MiB = growth of max RSS during plan",
            "ops": len(plan.operations),
            "verdict": "calls = formula" if dict(calls) == expected else f"calls != {expected}"}


def bench_pure(n: int, principals: int, changed: int) -> dict[str, Any]:
    """compute_plan + every renderer over ``n`` images x ``principals``; ``changed`` of each
    image's principals are missing (adds) and one undeclared account is present (remove)."""
    from reconciler.core.model import Snapshot

    desired = [Principal.account(a) for a in accounts(principals)]
    current = frozenset(desired[changed:] + [Principal.account("900000000000")])
    m = parse_manifest(manifest_text([p.value for p in desired]), "bench.yaml")
    rules = ("golden",)
    declared = {p: rules for p in desired}
    images = [Image(f"ami-{i:017x}", "us-east-1", ACCOUNT, f"golden-{i:05d}", "available", False,
                    (), (f"snap-{i:017x}",)) for i in range(n)]
    selection = Selection(tuple(ManagedImage(img, rules, declared, {}) for img in images), ())
    state = CurrentState({img.key: current for img in images},
                         snapshots={(img.region, img.snapshot_ids[0]):
                                    Snapshot(img.snapshot_ids[0], img.region) for img in images})
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    plan = compute_plan(m, Identity(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/bench"), selection, state)
    t_diff = time.perf_counter() - t0
    text = render_text(plan, m)
    md = render_markdown(plan, m)
    js = plan.to_json()
    wall = time.perf_counter() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    return {"scenario": f"(c) diff+render {n:,} x {principals}, {changed + 1} changes/image",
            "wall_s": wall, "peak_mib": peak / 2**20, "calls": {},
            "ops": len(plan.operations),
            "detail": f"compute_plan {t_diff:.2f}s; text {len(text)/2**20:.1f} MiB, json "
                      f"{len(js)/2**20:.1f} MiB, markdown {len(md)/1024:.0f} KiB (capped)",
            "verdict": "target < 1 s: " + ("met" if wall < 1 else "NOT met")}


def listing_calls(n: int) -> int:
    """``DescribeImages`` calls of one Region's listing of ``n`` images: pages of 20, 100,
    500, then 1,000 (README, "AWS calls")."""
    calls, size, left = 1, 20, n - 20
    while left > 0:
        size = min(1000, size * 5)
        calls, left = calls + 1, left - size
    return calls


def byte_compile() -> None:
    """Byte-compile the package, as pip does when it installs a wheel: a run then measures
    the tool as installed, not the compilation of its sources (which a process that may
    not write bytecode, PYTHONDONTWRITEBYTECODE, repeats at every start: ~0.1 s here)."""
    import compileall

    import reconciler

    compileall.compile_dir(str(Path(reconciler.__file__).parent), quiet=1)


# Runs `reconcile` (same entry point as the console script) and prints the process's own peak
# RSS at exit. getrusage/wait4 would count the forked parent's pages too (this process hosts
# the emulator), so read VmHWM, which exec resets.
_PEAK_RSS_WRAPPER = """
import atexit, sys
def _peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            sys.stderr.write(line)
atexit.register(_peak)
sys.argv = ['reconcile', *sys.argv[1:]]
from reconciler.cli import main
main()
"""


def bench_latency(n: int, latency: float, concurrency: int = 16, plan_only: bool = False,
                  formats: tuple[str, ...] = ("text",)) -> list[dict[str, Any]]:
    """The real CLI in a subprocess -> latency proxy -> moto server (all on 127.0.0.1).

    Peak memory is the ``reconcile`` process's own max RSS (the emulator runs elsewhere)."""
    import subprocess
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from urllib.request import urlopen

    from faultproxy import FaultProxy
    from moto.server import ThreadedMotoServer

    from reconciler.shell.sandbox import install_moto_extensions

    install_moto_extensions()
    byte_compile()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # The server shares this process's backends: start each scenario from an empty emulator.
    urlopen(f"{url}/moto-api/reset", data=b"").close()
    rows: list[dict[str, Any]] = []
    baseline: dict[str, float] = {}
    try:
        # Same shape as (a): 50 declared principals, half already shared, 5 to remove.
        desired = accounts(50)
        seed_images(n, desired[:25] + accounts(5, base=900000000000), endpoint_url=url)
        with tempfile.TemporaryDirectory() as tmp:
            m = Path(tmp) / "bench.yaml"
            m.write_text(manifest_text(desired).decode())
            env = {**os.environ, "AWS_ENDPOINT_URL": "", "NO_COLOR": "1"}
            commands = [["plan", str(m), "--format", f] for f in formats]
            if not plan_only:
                commands.append(["apply", str(m), "--auto-approve"])
            for command in commands:
                for lat in ((0.0,) if plan_only else (0.0, latency)):
                    if command[0] == "apply" and lat == 0.0:
                        continue  # apply once only: it changes the state
                    with FaultProxy(url, latency=lat) as proxy:
                        env["AWS_ENDPOINT_URL"] = proxy.url
                        t0 = time.perf_counter()
                        proc = subprocess.run([sys.executable, "-c", _PEAK_RSS_WRAPPER, *command,
                                               "--quiet", "--concurrency", str(concurrency)],
                                              env=env, text=True, capture_output=True)
                        wall = time.perf_counter() - t0
                        stderr = proc.stderr
                        peak_kib = int(stderr.strip().splitlines()[-1].split()[1])
                    assert proc.returncode == 0, stderr
                    calls = sum(proxy.forwarded.values())
                    # the lower bound: the latency spread over the workers, or EC2's request
                    # buckets (the tool paces to them), whichever is slower
                    ideal = max(calls * lat / concurrency, paced_floor(proxy.forwarded))
                    name = " ".join(command[:1] + command[2:])
                    if not lat:
                        baseline[name] = wall
                    # Same command without latency = what the emulator alone costs (plan only:
                    # apply changes the state, so it runs once).
                    added = wall - baseline[name] if name in baseline else float("nan")
                    rows.append({
                        "scenario": f"(b) {name} {n:,} images, {lat * 1000:.0f} ms/request, "
                                    f"concurrency {concurrency}",
                        "wall_s": wall, "peak_mib": peak_kib / 1024,
                        "calls": dict(proxy.forwarded),
                        "ops": calls,
                        "detail": (f"ideal = max(calls x latency / concurrency, the paced "
                                   f"floor {paced_floor(proxy.forwarded):.1f}s) = {ideal:.2f}s; "
                                   f"time added over the emulator-bound 0 ms run ~ {added:.2f}s"
                                   if lat else "no latency: the emulator and the paced floor "
                                   f"({paced_floor(proxy.forwarded):.1f}s); peak MiB = the "
                                   "reconcile process's own max RSS"),
                        "verdict": ("paced baseline" if not lat else
                                    f"{wall / ideal:.2f} x ideal (target <= 1.25); latency "
                                    f"added {added / ideal:.2f} x ideal")})
    finally:
        server.stop()
    return rows


def paced_floor(calls: dict[str, int]) -> float:
    """Seconds EC2's default token buckets allow at best for these requests (README,
    "Pacing"): the slowest read bucket, then the slowest write bucket."""
    from reconciler.core.pacing import EC2_MUTATING_PREFIXES, default_rate

    def slowest(writes: bool) -> float:
        return max((max(0.0, n - r.burst) / r.per_second for action, n in calls.items()
                    if (r := default_rate("ec2", action)) is not None
                    and action.startswith(EC2_MUTATING_PREFIXES) is writes), default=0.0)
    return slowest(False) + slowest(True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", action="store_true", help="also plan 10,000 images")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    args = ap.parse_args()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # The pure benchmark first: a fresh heap, as in a real `reconcile plan` process.
    rows = [bench_pure(10000, 100, 0), bench_pure(10000, 100, 4), bench_plan(1000, 50)]
    if args.large:
        rows.append(bench_plan(10000, 50))
    rows += bench_latency(1000, args.latency_ms / 1000)
    if args.large:
        rows += bench_latency(10000, 0.0, plan_only=True, formats=("text", "json"))
    print(f"\n{'scenario':<62} {'wall s':>8} {'peak MiB':>9} {'ops':>9}  verdict")
    for r in rows:
        print(f"{r['scenario']:<62} {r['wall_s']:>8.2f} {r['peak_mib']:>9.1f} {r['ops']:>9,}  "
              f"{r['verdict']}")
        if r["calls"]:
            print(f"{'':<4}calls: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["calls"].items())))
        if r.get("detail"):
            print(f"{'':<4}{r['detail']}")
    print(f"\nmax RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
          f"; python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
