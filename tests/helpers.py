"""Test helpers shared by the suite (imported as ``helpers``: tests/ is on sys.path)."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from reconciler.shell.sandbox import IMAGE_BLOCK_PUBLIC_ACCESS, set_image_id

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ACCOUNT = "123456789012"

os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    # Never let botocore look for credentials on the instance metadata address.
    "AWS_EC2_METADATA_DISABLED": "true",
})
for _k in [k for k in os.environ if k.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"))]:
    del os.environ[_k]


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

    def client(self, service: str, region: str = "us-east-1") -> Any:
        return boto3.client(service, region_name=region, endpoint_url=self.url)

    def reset(self) -> None:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))
        IMAGE_BLOCK_PUBLIC_ACCESS.clear()


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
    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
    return Result(code if isinstance(code, int) else 1, out.getvalue().decode(),
                  err.getvalue().decode())
