"""Interrupts and closed output: Ctrl-C / SIGTERM in every phase, and a stdout that is
closed, full or a broken pipe.

Signals and pipes need a real process: these run the installed ``reconcile`` in a
subprocess against the moto server (each ~1 s). The pool and the stop flag they rely on are
tested in this process.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pytest
from faultproxy import FaultProxy
from helpers import (
    HAND,
    PROD,
    STAGING,
    Images,
    MotoServer,
    cli_env,
    interrupted_after,
    manifest_yaml,
    reconcile_executable,
)


def _manifest(tmp_path: Path, launch: Sequence[str] = ("prod",)) -> str:
    path = tmp_path / "amis.yaml"
    path.write_text(manifest_yaml(f'- name: golden\n  select: {{name: "golden-*"}}\n'
                                  f'  launch: [{", ".join(launch)}]', settings="name: m"))
    return str(path)


def _start(args: Sequence[str], endpoint: str, **kw: object) -> subprocess.Popen[bytes]:
    options: dict[str, object] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                                  "stderr": subprocess.PIPE, **kw}
    return subprocess.Popen([*reconcile_executable(), *args], env=cli_env(endpoint),
                            **options)  # type: ignore[call-overload]


def _wait_for(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _signalled(proc: subprocess.Popen[bytes], sig: signal.Signals, times: int = 1
               ) -> tuple[float, str]:
    """Send ``sig`` (``times`` in quick succession); seconds from the first to the exit, and
    stderr."""
    started = time.monotonic()
    for _ in range(times):
        proc.send_signal(sig)
        time.sleep(0.03)
    _, err = proc.communicate(timeout=60)
    return time.monotonic() - started, err.decode()


def _clean(err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "internal error" not in err, err


# --------------------------------------------------------------------------- signals


@pytest.mark.e2e
def test_repeated_sigint_while_reading_exits_at_once(server: tuple[MotoServer, Images],
                                                     tmp_path: Path) -> None:
    """At 5 % of AWS's rates the 12 launch-permission reads take ~8 s: three quick Ctrl-Cs
    after the first read end the run within 2 s, with one line and exit 130."""
    srv, images = server
    for i in range(12):
        images.create(f"golden-{i}", launch=[{"UserId": HAND}])
    with FaultProxy(srv.url) as proxy:
        proc = _start(["plan", _manifest(tmp_path), "--api-rate-share", "0.05", "--quiet"],
                      proxy.url)
        _wait_for(lambda: proxy.forwarded["DescribeImageAttribute"] >= 1, "the first read")
        seconds, err = _signalled(proc, signal.SIGINT, times=3)
        reads = proxy.forwarded["DescribeImageAttribute"]
    assert proc.returncode == 130, err
    assert seconds < 2, f"exited {seconds:.1f} s after the signal"
    _clean(err)
    assert err.splitlines() == ["Interrupted by SIGINT; nothing was written to AWS."], err
    assert reads <= 5, "the queued reads were not cancelled"  # the bucket's burst, and one


@pytest.mark.e2e
def test_ctrl_c_at_the_confirmation_prompt_writes_nothing(server: tuple[MotoServer, Images],
                                                          tmp_path: Path) -> None:
    """On a terminal apply asks first; Ctrl-C there is exit 130, one line, nothing written."""
    srv, images = server
    image = images.create("golden-1", launch=[{"UserId": HAND}])
    leader, follower = pty.openpty()
    try:
        proc = _start(["apply", _manifest(tmp_path)], srv.url, stdin=follower)
        err = b""
        deadline = time.monotonic() + 30
        while b"Apply these changes?" not in err:
            assert time.monotonic() < deadline and proc.poll() is None, err
            if select.select([proc.stderr], [], [], 0.1)[0]:
                err += os.read(proc.stderr.fileno(), 4096)  # type: ignore[union-attr]
        time.sleep(0.2)  # as a person answers: the prompt is waiting for a line by then
        seconds, rest = _signalled(proc, signal.SIGINT)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 130, rest
    assert seconds < 2
    _clean(rest)
    assert rest.strip().splitlines() == ["Interrupted by SIGINT; nothing was written to AWS."]
    assert images.launch(image) == [{"UserId": HAND}]


# --------------------------------------------------------------------------- closed output


@pytest.mark.e2e
def test_plan_with_stdout_closed_is_one_line_not_an_internal_error(
        server: tuple[MotoServer, Images], tmp_path: Path) -> None:
    srv, images = server
    images.create("golden-1", launch=[{"UserId": HAND}])
    proc = subprocess.run(["sh", "-c", '"$@" >&-', "sh", *reconcile_executable(), "plan",
                           _manifest(tmp_path), "--quiet"],
                          env=cli_env(srv.url), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    _clean(proc.stderr)
    assert proc.stderr.splitlines() == [
        "error: cannot write the plan to standard output (it is closed); nothing was written "
        "to AWS"]


def _big_estate(images: Images, tmp_path: Path) -> tuple[list[str], str]:
    """Two images, each to be shared with 900 accounts: a text plan of ~100 KB, more than a
    pipe holds, so a reader that goes away is seen before the plan has been written."""
    accounts = ["first", *(f'"{100000000001 + i}"' for i in range(899))]
    found = [images.create(f"golden-{i}", launch=[{"UserId": HAND}]) for i in range(2)]
    path = tmp_path / "big.yaml"
    path.write_text(manifest_yaml(
        f'- name: golden\n  select: {{name: "golden-*"}}\n  launch: [{", ".join(accounts)}]',
        settings="name: m", principals={"first": "100000000000"}))
    return found, str(path)


def _stderr_file() -> IO[bytes]:
    return tempfile.TemporaryFile()  # noqa: SIM115 - closed by the caller


@pytest.mark.e2e
def test_apply_piped_into_head_writes_nothing(server: tuple[MotoServer, Images],
                                              tmp_path: Path) -> None:
    """``reconcile apply ... | head -1``: the plan cannot be shown in full, so apply writes
    nothing, says so in one line and exits 1 (no Python noise about the broken pipe)."""
    srv, images = server
    found, m = _big_estate(images, tmp_path)
    with _stderr_file() as err_file:
        proc = _start(["apply", m, "--auto-approve", "--quiet"], srv.url, stderr=err_file)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"us-east-1"  # what `head -1` shows
        proc.stdout.close()
        proc.wait(timeout=60)
        err_file.seek(0)
        err = err_file.read().decode()
    assert proc.returncode == 1, err
    _clean(err)
    assert err.splitlines() == [
        "error: cannot write the plan to standard output (Broken pipe); apply stopped before "
        "changing anything: nothing was written to AWS"]
    assert all(images.launch(i) == [{"UserId": HAND}] for i in found)


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a full disk)")
def test_apply_to_a_full_stdout_writes_nothing(server: tuple[MotoServer, Images],
                                               tmp_path: Path) -> None:
    srv, images = server
    image = images.create("golden-1", launch=[{"UserId": HAND}])
    with open("/dev/full", "wb") as full:
        proc = _start(["apply", _manifest(tmp_path, ["prod", "staging"]), "--auto-approve",
                       "--quiet"], srv.url, stdout=full)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    _clean(err.decode())
    assert err.decode().splitlines() == [
        "error: cannot write the plan to standard output (No space left on device); apply "
        "stopped before changing anything: nothing was written to AWS"]
    assert images.launch(image) == [{"UserId": HAND}]


class _BreaksLater(io.StringIO):
    """A stdout whose reader goes away when told to (write and flush then fail as a
    broken pipe does)."""

    broken = False

    def write(self, text: str) -> int:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)

    def flush(self) -> None:
        if self.broken:
            raise BrokenPipeError(32, "Broken pipe")


@pytest.fixture
def own_signal_handlers() -> Iterator[None]:
    """``main`` installs its SIGINT/SIGTERM handlers for the rest of the process (it is the
    console script's entry point): put the test process's back."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_stdout_broken_after_the_writes_started_still_applies_and_counts(
        server: tuple[MotoServer, Images], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], own_signal_handlers: None) -> None:
    """The plan was shown; the reader goes away during the writes: they all go on, the log
    records each, and the one error line says what was applied."""
    from reconciler.cli import main

    srv, images = server
    image = images.create("golden-1", launch=[{"UserId": HAND}])
    m, log = _manifest(tmp_path, ["prod", "staging"]), tmp_path / "apply.jsonl"
    stream = _BreaksLater()
    with FaultProxy(srv.url, after_write=lambda n, op: setattr(stream, "broken", True)) as proxy:
        for name, value in cli_env(proxy.url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdout", stream)
        with pytest.raises(SystemExit) as exited:
            main(["apply", m, "--auto-approve", "--quiet", "--log-file", str(log)])
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    assert "us-east-1" in stream.getvalue(), "the plan was shown"
    _clean(err)
    assert err.splitlines() == [
        "error: cannot write the summary to standard output (Broken pipe); the apply went "
        "ahead: 3 operations applied, 0 failed (2 added, 1 removed)"]
    assert {d["UserId"] for d in images.launch(image)} == {PROD, STAGING}
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(r["result"] == "applied" and r["kind"] != "ownership_tag" for r in records) == 3


# --------------------------------------------------------------------------- in this process


def test_a_pipe_whose_reader_left_is_seen_before_apply_writes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A small plan fits in the pipe and is written whole even when the reader (``head -1``)
    leaves right after; apply looks again just before its first write."""
    from reconciler.cli import _stdout_reader_gone

    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as pipe:
        monkeypatch.setattr(sys, "stdout", pipe)
        assert not _stdout_reader_gone()
        os.close(read_end)
        assert _stdout_reader_gone()
    monkeypatch.setattr(sys, "stdout", None)
    assert _stdout_reader_gone()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert not _stdout_reader_gone()



def test_the_pool_starts_no_queued_item_once_the_waiting_thread_is_interrupted() -> None:
    """A signal handler raising in the waiting thread ends the wait at once: the items not
    started yet never start, and the ones running are not waited for."""
    from reconciler.shell.concurrency import Interrupted, parallel_map

    started: list[int] = []
    release = threading.Event()

    def slow(i: int) -> int:
        started.append(i)
        release.wait(5)
        return i

    try:
        with interrupted_after(0.2):
            t0 = time.monotonic()
            with pytest.raises(Interrupted):
                parallel_map(slow, list(range(20)), 2)
            assert time.monotonic() - t0 < 1
    finally:
        release.set()
    time.sleep(0.1)
    assert len(started) == 2, f"queued items started after the interruption: {started}"


def test_an_item_that_fails_cancels_the_queued_ones() -> None:
    from reconciler.shell.concurrency import parallel_map

    started: list[int] = []

    def fn(i: int) -> int:
        started.append(i)
        if i == 0:
            raise ValueError("boom")
        time.sleep(0.02)
        return i

    with pytest.raises(ValueError, match="boom"):
        parallel_map(fn, list(range(50)), 2)
    time.sleep(0.1)
    assert len(started) <= 3, f"queued items started after the failure: {started}"
    assert parallel_map(lambda i: i * 2, list(range(5)), 3) == [0, 2, 4, 6, 8]


def test_a_stop_ends_a_wait_for_a_request_token_at_once() -> None:
    """The pacer's wait for a token (seconds at a low rate share) ends when the run stops."""
    from reconciler.core.pacing import Pacer
    from reconciler.shell.concurrency import Interrupted, Stop

    stop = Stop()
    pacer = Pacer(0.05, sleep=stop.sleep)
    for _ in range(5):  # the bucket's burst...
        pacer.acquire("us-east-1", "ec2", "ModifyImageAttribute")
    threading.Timer(0.1, stop.interrupt, [signal.SIGTERM]).start()
    t0 = time.monotonic()
    with pytest.raises(Interrupted) as caught:
        pacer.acquire("us-east-1", "ec2", "ModifyImageAttribute")  # ...then 4 s per token
    assert time.monotonic() - t0 < 1
    assert caught.value.exit_code == 143


def test_a_write_still_in_flight_after_the_grace_is_reported_unknown(
        server: tuple[MotoServer, Images], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a signal apply waits a moment for the writes in flight: one still out then is
    reported (and logged) as unknown, the others as not applied, each once; its answer
    arriving later is not logged any more."""
    import boto3

    from reconciler.core.manifest import parse_manifest
    from reconciler.shell.applier import Applier, Result
    from reconciler.shell.aws import Clients
    from reconciler.shell.concurrency import Stop
    from reconciler.shell.gather import build_plan
    from reconciler.shell.reader import Reader

    srv, images = server
    for i in range(3):
        images.create(f"golden-{i}", launch=[{"UserId": HAND}])
    stop, log = Stop(), []
    with FaultProxy(srv.url, write_delay=0.3) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        clients = Clients(boto3.Session(), 1, stop=stop)
        reader = Reader(clients, 1)
        plan = build_plan(parse_manifest(Path(_manifest(tmp_path)).read_bytes(), "m.yaml"),
                          reader)
        applier = Applier.for_plan(clients, reader.identity(), plan, concurrency=1,
                                   log=log.append, stop=stop)
        reads = proxy.counts["requests"]
        threading.Thread(target=applier.apply, args=(plan.operations,), daemon=True).start()
        _wait_for(lambda: proxy.counts["requests"] > reads, "the first write")
        stop.interrupt(signal.SIGINT)
        t0 = time.monotonic()
        report = applier.settle(plan.operations, t0 + 0.05)
        assert time.monotonic() - t0 < 0.25
        time.sleep(0.35)  # the write's answer arrives
    results = [o.result for o in report.outcomes]
    assert len(results) == len(plan.operations) == 6
    assert results.count(Result.UNKNOWN) == 2 and results.count(Result.NOT_APPLIED) == 4
    assert sorted(r["result"] for r in log) == ["not-applied"] * 4 + ["unknown"] * 2
    assert proxy.writes == 1
