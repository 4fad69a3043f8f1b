"""Shared fixtures: fake credentials, in-process moto, a moto server, and CLI runners."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from consumer_view import ConsumerView, patch_moto
from helpers import (
    CLEARED_ENV_PREFIXES,
    TEST_ENV,
    ConnectionCounter,
    Images,
    MotoServer,
    Result,
    Runner,
    cli_env,
    reconcile_executable,
    run_main,
)

from reconciler.shell.sandbox import (
    IMAGE_BLOCK_PUBLIC_ACCESS,
    IMAGE_USAGE_REPORTS,
    RECYCLE_BIN,
    install_moto_extensions,
)

# The files whose tests take longest (`pytest --durations=0`, summed per file), run first
# (pyproject: --no-loadscope-reorder, or xdist orders files by their number of tests): a
# worker runs one file at a time (--dist loadfile), and a long file left for the end kept
# one worker busy 10 s after the other had finished (test_smoke.py).
LONGEST_FIRST = ("test_trust.py", "test_smoke.py", "test_ownership.py", "test_action.py",
                 "test_e2e.py", "test_hostile_input.py", "test_fidelity.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: else as found


@pytest.fixture(scope="session", autouse=True)
def test_environment() -> Iterator[None]:
    """Fake credentials and no endpoint, profile or token from the developer's shell, for
    the whole session (restored afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in TEST_ENV.items():
            mp.setenv(name, value)
        for name in [k for k in os.environ if k.startswith(CLEARED_ENV_PREFIXES)]:
            mp.delenv(name)
        yield


@pytest.fixture(scope="session", autouse=True)
def shared_service_models() -> Iterator[None]:
    """One botocore data loader for the whole test process.

    Every ``reconcile`` run creates its own boto3 session, and a new session parses the EC2,
    KMS and STS service models again (~0.2 s of JSON per run). The models are static data,
    so in-process CLI tests share one loader; what the product does is unchanged.
    """
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()

    def register(self: botocore.session.Session) -> None:
        self._components.lazy_register_component("data_loader", lambda: loader)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore.session.Session, "_register_data_loader", register)
        yield


@pytest.fixture
def aws() -> Iterator[Images]:
    """In-process moto (``mock_aws``) with the EC2 calls moto lacks added."""
    from moto import mock_aws

    install_moto_extensions()
    with mock_aws():
        yield Images(functools.cache(lambda region: boto3.client("ec2", region_name=region)))
    IMAGE_BLOCK_PUBLIC_ACCESS.clear()
    RECYCLE_BIN.clear()
    IMAGE_USAGE_REPORTS.clear()


@pytest.fixture(scope="session")
def moto_server_session() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    install_moto_extensions()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoServer(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def server(moto_server_session: MotoServer) -> Iterator[tuple[MotoServer, Images]]:
    moto_server_session.reset()
    yield moto_server_session, Images(lambda region: moto_server_session.client("ec2", region))
    moto_server_session.reset()


@pytest.fixture
def run_cli(moto_server_session: MotoServer) -> Runner:
    """Run ``reconcile`` in this process (``reconciler.cli.main(argv)``, the console
    script's entry point) against the moto server, with the environment a CI job has."""

    def run(*args: str, endpoint: str | None = None, input: str | None = None,
            env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> Result:
        full: dict[str, str | None] = dict(cli_env(endpoint or moto_server_session.url, env))
        with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
            return run_main(*args, env=full, input=input or "")

    return run


@pytest.fixture
def run_script(moto_server_session: MotoServer) -> Runner:
    """Run the installed ``reconcile`` console script in a subprocess against the moto
    server, exactly as a CI job runs it (kept for a few smoke tests: it costs ~1 s a run)."""

    def run(*args: str, endpoint: str | None = None, input: str | None = None,
            env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> Result:
        proc = subprocess.run(
            [*reconcile_executable(), *args],
            env=cli_env(endpoint or moto_server_session.url, env),
            input=input if input is not None else "",
            capture_output=True, text=True, timeout=timeout, cwd=cwd)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def consumers(monkeypatch: pytest.MonkeyPatch) -> ConsumerView:
    """What consumer accounts see (for ``verify``), which moto lacks, patched in for one
    test; see ``consumer_view``."""
    return patch_moto(monkeypatch)


@pytest.fixture
def no_aws() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()
