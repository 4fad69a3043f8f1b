"""Faults, interruptions: apply through a fault-injecting proxy in front of the moto server.

The soak variant (more images, more seeds) runs with ``-m soak``; see README.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from helpers import (
    ACCOUNT,
    HAND,
    PROD,
    ROOT_STATEMENT,
    STAGING,
    Images,
    MotoServer,
    Runner,
    cli_env,
    reconcile_executable,
)

from reconciler.core import kms
from reconciler.shell.applier import write_calls
from reconciler.shell.inputs import load_plan_file
from reconciler.shell.sandbox import encrypt_image

pytestmark = pytest.mark.e2e

OLD = "555544443333"


class Estate:
    """Two encrypted images on one key and some plain ones, all drifted from the manifest."""

    def __init__(self, srv: MotoServer, images: Images, tmp_path: Path, plain: int = 4) -> None:
        self.srv, self.images = srv, images
        self.kms = srv.client("kms")
        # The key already grants HAND (through the tool's own statement): HAND holds a share.
        policy = kms.with_grantees({"Version": "2012-10-17", "Statement": [ROOT_STATEMENT]},
                                   {kms.Grantee(kms.GranteeKind.ACCOUNT, HAND)}, "aws")
        self.key = self.kms.create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"]
        self.encrypted = []
        for i in range(2):
            iid = images.create(f"golden-enc-{i}", launch=[{"UserId": HAND}] if i == 0 else None)
            encrypt_image(ACCOUNT, "us-east-1", iid, self.key)
            self.encrypted.append(iid)
        self.plain = [images.create(f"golden-{i}", launch=[{"UserId": OLD}, {"UserId": PROD}])
                      for i in range(plain)]
        self.untouched = images.create("scratch", launch=[{"UserId": OLD}])
        self.manifest = tmp_path / "amis.yaml"
        self.manifest.write_text(f"""\
version: 1
settings: {{name: amis, regions: [us-east-1]}}
principals: {{prod: "{PROD}", staging: "{STAGING}"}}
images:
  - name: golden
    select: {{name: "golden-*"}}
    launch: [prod, staging]
""")

    def key_grantees(self) -> set[str]:
        policy = json.loads(self.kms.get_key_policy(KeyId=self.key, PolicyName="default")["Policy"])
        assert policy["Statement"][0] == ROOT_STATEMENT, "foreign statement changed"
        return {g.value for g in kms.owned_grantees(policy)}

    def launch(self, image: str) -> set[str]:
        return {d.get("UserId", "?") for d in self.images.launch(image)}

    def check_invariants(self) -> None:
        """What must hold at every moment of an apply, even one killed half-way."""
        keyed = self.key_grantees()
        for image in self.encrypted:
            stranded = self.launch(image) - keyed
            assert not stranded, f"{image}: launch permission without key access: {stranded}"
        for image in self.plain:
            assert PROD in self.launch(image), "a declared permission that existed was lost"
        assert self.launch(self.untouched) == {OLD}, "an unmanaged image was touched"

    def check_converged(self) -> None:
        for image in self.encrypted + self.plain:
            assert self.launch(image) == {PROD, STAGING}
        assert self.key_grantees() == {PROD, STAGING}
        self.check_invariants()


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore still decides what to retry and how often; it just does not sleep between
    attempts (the runs are in this process; the soak tests keep the real delays)."""
    from botocore.retries.bucket import TokenBucket
    from botocore.retries.standard import ExponentialBackoff

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)
    # adaptive mode's client-side rate limiter: it still tracks the rate, without waiting
    monkeypatch.setattr(TokenBucket, "_sleep_amount", lambda self, amount: 0)


def test_apply_converges_through_throttling_errors_and_drops(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path,
        no_backoff: None) -> None:
    srv, images = server
    estate = Estate(srv, images, tmp_path, plain=2)
    with FaultProxy(srv.url, seed=7, throttle=0.30, server_error=0.05, drop=0.02,
                    drop_first=2) as proxy:
        r = run_cli("apply", str(estate.manifest), "--auto-approve", endpoint=proxy.url,
                    env={"AWS_RETRY_MODE": "standard"})
        assert r.code == 0, r.out + r.err
    estate.check_converged()
    assert proxy.counts["throttled"] > 0 and proxy.counts["dropped"] >= 2
    assert proxy.counts["requests"] > sum(proxy.forwarded.values())
    print(f"\nfaults: {dict(proxy.counts)}; forwarded: {dict(proxy.forwarded)}")
    r = run_cli("plan", str(estate.manifest), "--detailed-exitcode")
    assert r.code == 0, r.out


def test_adaptive_retry_mode_also_converges(server: tuple[MotoServer, Images], run_cli: Runner,
                                           tmp_path: Path, no_backoff: None) -> None:
    srv, images = server
    estate = Estate(srv, images, tmp_path, plain=1)
    with FaultProxy(srv.url, seed=3, throttle=0.20, server_error=0.05) as proxy:
        r = run_cli("apply", str(estate.manifest), "--auto-approve", endpoint=proxy.url)
        assert r.code == 0, r.out + r.err
    assert proxy.counts["throttled"] > 0
    estate.check_converged()


def test_permanent_failure_on_one_image_spares_the_others(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    srv, images = server
    estate = Estate(srv, images, tmp_path)
    broken = estate.plain[1]
    log = tmp_path / "apply.jsonl"
    with FaultProxy(srv.url, fail_resource=broken) as proxy:
        r = run_cli("apply", str(estate.manifest), "--auto-approve", "--log-file", str(log),
                    endpoint=proxy.url)
    assert r.code == 1
    assert broken in r.err and "UnauthorizedOperation" in r.err
    assert proxy.counts["denied"] == 1, "a permanent error is not retried"
    assert estate.launch(broken) == {OLD, PROD}
    for image in estate.encrypted + [i for i in estate.plain if i != broken]:
        assert estate.launch(image) == {PROD, STAGING}
    results = {(x["resource"], x["result"]) for x in map(json.loads, log.read_text().splitlines())}
    assert (broken, "failed") in results
    estate.check_invariants()


def _apply_killed_after(estate: Estate, srv: MotoServer, k: int) -> int:
    """Run apply through a proxy that SIGKILLs it right after its k-th write reached AWS."""
    holder: dict[str, Any] = {}

    def after_write(n: int, op: str) -> None:
        if n == k:
            holder["proc"].kill()

    with FaultProxy(srv.url, after_write=after_write) as proxy:
        proc = subprocess.Popen([*reconcile_executable(), "apply", str(estate.manifest),
                                 "--auto-approve", "--concurrency", "1"],
                                env=cli_env(proxy.url), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        holder["proc"] = proc
        proc.communicate(timeout=120)
    return proxy.writes


@pytest.mark.parametrize("k", [3, *(pytest.param(k, marks=pytest.mark.soak) for k in (1, 2, 5, 7))])
def test_killed_apply_leaves_a_safe_state_and_rerun_converges(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path, k: int) -> None:
    srv, images = server
    estate = Estate(srv, images, tmp_path)
    writes = _apply_killed_after(estate, srv, k)
    assert writes == k, "the apply must have been killed right after write k"
    estate.check_invariants()
    r = run_cli("apply", str(estate.manifest), "--auto-approve")
    assert r.code == 0, r.out + r.err
    estate.check_converged()
    assert run_cli("plan", str(estate.manifest), "--detailed-exitcode").code == 0


def test_sigint_and_sigterm_stop_apply_at_once_with_one_line(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    """A signal after the second write (the key's grants, then one image): nothing more is
    written, the process ends within 2 s with exit 128 + signal and one line counting what
    was and was not applied, and the log has every operation once."""
    srv, images = server
    for sig in (signal.SIGINT, signal.SIGTERM):
        estate = Estate(srv, images, tmp_path, plain=6)
        log = tmp_path / f"apply-{sig.name}.jsonl"
        holder: dict[str, Any] = {}

        def after_write(n: int, op: str, holder: dict[str, Any] = holder,
                        sig: signal.Signals = sig) -> None:
            if n == 2:
                holder["at"] = time.monotonic()
                os.kill(holder["proc"].pid, sig)

        with FaultProxy(srv.url, after_write=after_write) as proxy:
            proc = subprocess.Popen([*reconcile_executable(), "apply", str(estate.manifest),
                                     "--auto-approve", "--concurrency", "1", "--quiet",
                                     "--log-file", str(log)],
                                    env=cli_env(proxy.url), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            holder["proc"] = proc
            out, err = proc.communicate(timeout=120)
            seconds = time.monotonic() - holder["at"]
        assert proc.returncode == 128 + sig, (out, err)
        assert seconds < 2, f"exited {seconds:.1f} s after the signal"
        assert "Traceback" not in err and "Exception ignored" not in err
        (line,) = err.splitlines()
        found = re.fullmatch(rf"Interrupted by {sig.name}: (\d+) operations? applied, (\d+) not "
                             r"applied; run plan to see what is left\.", line)
        assert found, line
        applied, left = map(int, found.groups())
        assert proxy.writes == 2, "no new write may start after the signal"
        records = [r for r in map(json.loads, log.read_text().splitlines())
                   if r["kind"] != "ownership_tag"]
        results = collections.Counter(r["result"] for r in records)
        assert results == {"applied": applied, "not-applied": left}
        assert applied + left == 20 and applied >= 3
        assert len({(r["resource"], json.dumps(r["principal"])) for r in records}) == 20
        estate.check_invariants()
        assert run_cli("apply", str(estate.manifest), "--auto-approve").code == 0
        estate.check_converged()
        srv.reset()


@pytest.mark.soak
@pytest.mark.parametrize("seed", range(5))
def test_soak_many_images_under_faults(server: tuple[MotoServer, Images], run_cli: Runner,
                                       tmp_path: Path, seed: int) -> None:
    srv, images = server
    estate = Estate(srv, images, tmp_path, plain=40)
    with FaultProxy(srv.url, seed=seed, throttle=0.30, server_error=0.05, drop=0.03) as proxy:
        # 40 images each lose one undeclared account: over the default max_removals guard.
        # Default (adaptive) retries: at 30 % throttling the client-side rate limiter slows
        # the run down a lot, which is the point, so allow it time.
        t0 = time.monotonic()
        r = run_cli("apply", str(estate.manifest), "--auto-approve", "--allow-mass-removal",
                    endpoint=proxy.url, timeout=900)
        assert r.code == 0, r.out + r.err
    print(f"\nseed {seed}: faults {dict(proxy.counts)}; writes {proxy.writes}; "
          f"apply took {time.monotonic() - t0:.0f} s")
    estate.check_converged()
    assert run_cli("plan", str(estate.manifest), "--detailed-exitcode").code == 0


@pytest.mark.parametrize("saved", [False, True], ids=["apply", "apply-saved-plan"])
def test_apply_makes_the_plans_reads_and_one_write_per_changed_resource(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path, saved: bool) -> None:
    """No re-read before a write (Add/Remove entries are idempotent; a permission changed by
    hand meanwhile is the next run's drift). A saved plan's one read is the fresh plan its
    check needs. Key policies keep their read before write: a policy is replaced whole."""
    srv, images = server
    estate = Estate(srv, images, tmp_path, plain=3)
    managed = len(estate.encrypted) + len(estate.plain)
    args = ["apply", str(estate.manifest), "--auto-approve"]
    plan_file = tmp_path / "plan.json"
    assert run_cli("plan", str(estate.manifest), "--out", str(plan_file)).code == 0
    if saved:
        args = ["apply", str(estate.manifest), "--plan", str(plan_file)]
    with FaultProxy(srv.url) as proxy:
        r = run_cli(*args, endpoint=proxy.url)
    assert r.code == 0, r.out + r.err
    calls = dict(proxy.forwarded)
    assert calls["DescribeImageAttribute"] == managed, "one read per managed image, not two"
    assert calls["ModifyImageAttribute"] == managed  # every image changes
    # the key gains prod and staging and loses HAND: written before the launch permissions
    # and after their removal, each time from a fresh read (plus the plan's own read)
    assert calls["PutKeyPolicy"] == 2 and calls["GetKeyPolicy"] == 1 + 2
    assert calls["CreateTags"] == 1
    # the pacing model's count of an apply's writes (for the plan's apply time) is exact
    (expected,) = write_calls(load_plan_file(str(plan_file)).operations, {}).values()
    assert {action: n for (_, _, action), n in expected.items()} == {
        "ModifyImageAttribute": calls["ModifyImageAttribute"],
        "PutKeyPolicy": calls["PutKeyPolicy"], "GetKeyPolicy": calls["GetKeyPolicy"] - 1}
    assert "ModifySnapshotAttribute" not in calls  # this estate declares no copy
    estate.check_converged()
