"""The embedded emulator for one command: the state file validated, moto started in this
process and seeded, the caller's AWS settings out of its way, all restored at the end.
moto is an optional extra: ``pip install 'ami-share-reconciler[sandbox]'``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path as FsPath

from ...core.errors import ReconcilerError
from .moto_extensions import (
    ENABLED_REGIONS,
    IMAGE_BLOCK_PUBLIC_ACCESS,
    IMAGE_USAGE_REPORTS,
    NOW,
    RECYCLE_BIN,
    install_moto_extensions,
)
from .seed import dump, seed
from .state import SandboxState, load_sandbox

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

    from ..aws import botocore_session

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
        NOW[:] = [state.now] if state.now else []
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
        RECYCLE_BIN.clear()
        NOW.clear()
        IMAGE_USAGE_REPORTS.clear()
        ENABLED_REGIONS.clear()
        ENABLED_REGIONS.update(enabled)
