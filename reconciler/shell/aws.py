"""boto3 sessions and clients: created once per (service, Region), shared by threads.

Endpoints come only from boto3's own configuration (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_EC2`` ...), never from this code. Throttling and transient errors are
retried by botocore's ``adaptive`` retry mode, which also slows the client down when AWS
throttles it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from .. import __version__
from ..core.errors import ACCESS_DENIED_CODES, AwsError, ReconcilerError
from ..core.pacing import Pacer, Ticket
from .concurrency import Interrupted, Stop, in_background

MAX_ATTEMPTS = 10
RETRY_MODES = ("standard", "adaptive", "legacy")


def client_config(concurrency: int) -> botocore.config.Config:
    """Client settings. Retries: ``adaptive`` with 10 attempts unless the standard
    ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS`` variables say otherwise."""
    mode = os.environ.get("AWS_RETRY_MODE", "adaptive")
    if mode not in RETRY_MODES:
        raise AwsError(f"AWS_RETRY_MODE={mode!r} is not one of {', '.join(RETRY_MODES)}")
    try:
        attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS))
    except ValueError:
        raise AwsError("AWS_MAX_ATTEMPTS must be a whole number") from None
    return botocore.config.Config(
        retries={"mode": mode, "max_attempts": max(1, attempts)},
        max_pool_connections=max(10, concurrency),
        user_agent_extra=f"reconciler/{__version__}",
    )


class Clients:
    """A thread-safe cache of boto3 clients for one session."""

    def __init__(self, session: boto3.Session, concurrency: int = 16,
                 default_region: str = "us-east-1", pacer: Pacer | None = None,
                 stop: Stop | None = None) -> None:
        self.session = session
        self.concurrency = concurrency
        self.default_region = default_region
        # One account's buckets: every request (retries too) waits for its token.
        self.pacer = pacer if pacer is not None else Pacer(enabled=False)
        # The command's stop: once set, no request is sent (checked before each attempt).
        self.stop = stop if stop is not None else Stop()
        # At most `concurrency` requests of this account in flight, however many pools read
        # at the same time: a slot is held from a request's creation to its response (one
        # per thread at most, so nothing a pool waits on can hold one: no deadlock).
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._holding = threading.local()
        self._config = client_config(concurrency)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.default_region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                try:
                    client = self.session.client(service, region_name=key[1], config=self._config)
                except Exception as exc:  # a bad endpoint URL, profile or Region setting
                    raise AwsError(f"cannot set up the AWS {service} client for {key[1]}: "
                                   f"{describe_error(exc)}") from None
                # request-created.<service>.<Action> is emitted for every attempt of a
                # request (a retry is a new request); first, so that the wait comes before
                # botocore signs it and the signature's time is the time it is sent.
                client.meta.events.register_first(f"request-created.{service}",
                                                  self._pace(key[1], service))
                client.meta.events.register(f"response-received.{service}", self._answered)
                self._clients[key] = client
            return client

    def preload(self, service: str) -> None:
        """Make ``service``'s client for the default Region in the background: parsing its
        model (megabytes of JSON for EC2) then overlaps a request in flight. A failure is
        left for the first real use to report."""
        def make() -> None:
            with contextlib.suppress(Exception):
                self.get(service)

        in_background(make, "reconcile-preload")

    def _pace(self, region: str, service: str) -> Callable[..., None]:
        def wait_for_slot_and_token(event_name: str = "", request: Any = None,
                                    **_: Any) -> None:
            action = event_name.rsplit(".", 1)[-1]
            # A retry follows an attempt AWS did not confirm: it may have been applied.
            retrying = _attempt(request) > 1
            self.stop.check(action, retrying)
            if not getattr(self._holding, "slot", False):
                self._slots.acquire()
                self._holding.slot = True
                _HELD.clients = self
            # an attempt whose answer could not be read leaves its token unsettled
            self._settle(False)
            try:
                self.stop.check(action, retrying)  # stopped while waiting for the slot
                # a stop ends the token's wait
                ticket = self.pacer.acquire(region, service, action)
            except Interrupted as exc:
                self._release()
                raise Interrupted(exc.signum, action, retrying) from None
            # its token is settled with the slot: when the answer comes, or when the call
            # ends without one (see _release)
            self._holding.ticket = ticket
        return wait_for_slot_and_token

    def _answered(self, response_dict: Any = None, **_: Any) -> None:
        # An answer from AWS (a 2xx, or a client error: not a 5xx a proxy or front end may
        # give, nor a throttle) means the request reached the throttler: the pacer may count
        # its bucket's refill from now (see core/pacing.TokenBucket).
        status = int(((response_dict or {}).get("status_code")) or 0)
        self._settle(200 <= status < 500)
        self._release()

    def _settle(self, answered: bool) -> None:
        ticket: Ticket | None = getattr(self._holding, "ticket", None)
        if ticket is not None:
            self._holding.ticket = None
            self.pacer.settled(ticket, answered)

    def _release(self, **_: Any) -> None:
        self._settle(False)  # no answer: the request is no longer on its way
        if getattr(self._holding, "slot", False):
            self._holding.slot = False
            self._slots.release()


def _attempt(request: Any) -> int:
    """Which attempt of its call a botocore request is (1, then 2... for retries)."""
    context = getattr(request, "context", None) or {}
    return int((context.get("retries") or {}).get("attempt", 1))


# The Clients whose request slot this thread holds. botocore emits response-received after
# an answer, but not when reading the answer fails (a body that is not XML or JSON): aws_call
# gives the slot back when the call ends, however it ends.
_HELD = threading.local()


def release_request_slot() -> None:
    clients = getattr(_HELD, "clients", None)
    if clients is not None:
        _HELD.clients = None
        clients._release()


_LOADER: list[Any] = []  # the process's one botocore data loader, once created
_LOADER_LOCK = threading.Lock()


def botocore_session() -> botocore.session.Session:
    """A new botocore session that shares the process's data loader: the EC2, KMS and STS
    service models (megabytes of JSON) are parsed once per process, not once per session
    (the sandbox's, the caller's, each assumed role's)."""
    core = botocore.session.get_session()
    with _LOADER_LOCK:
        if _LOADER:
            core.register_component("data_loader", _LOADER[0])
        else:
            _LOADER.append(core.get_component("data_loader"))
    return core


def make_session(profile: str | None) -> boto3.Session:
    try:
        return boto3.Session(profile_name=profile, botocore_session=botocore_session())
    except botocore.exceptions.ProfileNotFound as exc:
        raise AwsError(describe_error(exc)) from None


_USER_INFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def mask_secrets(text: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***:***@host``, wherever it appears."""
    return _USER_INFO.sub(r"\1***:***@", text)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class CallError(AwsError):
    """One AWS call failed. ``code`` is AWS's error code, or "" when the answer was not an
    AWS error at all (a connection failure, an HTML page, a body that could not be parsed)."""

    def __init__(self, service: str, operation: str, code: str, message: str) -> None:
        self.service, self.operation, self.code = service, operation, code
        super().__init__(message)


@contextlib.contextmanager
def aws_call(service: str, operation: str, where: str = "") -> Iterator[None]:
    """Run one AWS call (and the reading of its answer) so that *any* failure, whatever
    AWS, a proxy or the SDK raised, becomes one :class:`CallError` line naming the call."""
    try:
        yield
    except ReconcilerError:
        raise
    except Exception as exc:
        message = describe_error(exc, service, operation)
        raise CallError(service, operation, error_code(exc),
                        f"{where}: {message}" if where else message) from exc
    finally:
        release_request_slot()


def describe_error(exc: Exception, service: str = "", operation: str = "") -> str:
    """One line explaining an AWS failure and what to do next. Never includes credentials
    (nor the user-info of an endpoint URL)."""
    return mask_secrets(_describe(exc, service, operation))


def _describe(exc: Exception, service: str, operation: str) -> str:
    action = f"{service}:{operation}" if service and operation else (operation or service)
    failed = f"{action} failed: " if action else ""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Unknown")
        msg = " ".join(str(err.get("Message", "")).split())
        op = operation or exc.operation_name
        action = f"{service}:{op}" if service else op
        text = f"{action} failed: {code}: {_one_line(msg)}".rstrip(": ")
        if code in ACCESS_DENIED_CODES:
            text += f" (the caller needs IAM permission {action})"
        return text
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ("no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE or --profile, or use --sandbox STATE.yaml to try without AWS")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return "no AWS Region configured: set settings.regions, --region or AWS_DEFAULT_REGION"
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return (f"AWS profile {exc.kwargs.get('profile')!r} not found in the AWS "
                "config/credentials files (check --profile and AWS_PROFILE)")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError |
                  botocore.exceptions.ConnectionClosedError):
        return f"{failed}cannot reach the AWS endpoint: {_one_line(str(exc))}"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return f"{failed}AWS SDK error: {_one_line(str(exc))}"
    if type(exc).__name__ == "ResponseParserError":  # not a BotoCoreError: botocore.parsers
        return (f"{failed}the answer was not an AWS response (an error page from a proxy or "
                f"load balancer?): {_one_line(str(exc))}")
    if isinstance(exc, KeyError | TypeError | AttributeError | IndexError):
        return f"{failed}unexpected response from AWS ({type(exc).__name__}: {_one_line(str(exc))})"
    if isinstance(exc, ValueError) and not action:
        return f"invalid AWS configuration: {_one_line(str(exc))}"
    return f"{failed}{type(exc).__name__}: {_one_line(str(exc))}"


def error_code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


SESSION_NAME = "ami-share-reconciler"


def assumed_session(base: boto3.Session, role_arn: str, region: str,
                    config: botocore.config.Config | None = None) -> boto3.Session:
    """A session acting as ``role_arn`` (session name ``ami-share-reconciler``), with
    credentials that refresh themselves before they expire."""
    import botocore.credentials
    import botocore.session

    with aws_call("sts", "", f"cannot assume {role_arn}"):
        sts = base.client("sts", region_name=region, config=config)

    def fetch() -> dict[str, str]:
        out: dict[str, str] = {}
        with aws_call("sts", "AssumeRole", f"cannot assume {role_arn}"):
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=SESSION_NAME)["Credentials"]
            out = {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                   "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}
        return out

    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role")
    core = botocore_session()
    core._credentials = credentials  # the documented way to hand botocore ready credentials
    core.set_config_variable("region", region)
    return boto3.Session(botocore_session=core)
