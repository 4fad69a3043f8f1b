"""Sessions for a run: the caller's (or the sandbox's), and one per owner account.

The command line builds a :class:`RunOptions` from its options; everything that turns those
into boto3 sessions, paced clients and readers lives here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import boto3

from ..core.errors import UsageError
from ..core.manifest import Manifest, Owner
from ..core.model import Identity
from ..core.pacing import Pacer, Rate
from .aws import Clients, assumed_session, client_config, make_session
from .concurrency import Stop
from .gather import Scope
from .progress import TerminalProgress
from .reader import Reader

DEFAULT_CONCURRENCY = 16  # requests in flight per owner account


@dataclass(frozen=True)
class RunOptions:
    """What the command line says about reaching AWS."""

    regions: tuple[str, ...] | None = None  # --region (None: the manifest's / the session's)
    profile: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    api_rate_share: float = 1.0  # share of AWS's default request rates
    sandbox: str | None = None  # the sandbox state file (None: real AWS)
    sandbox_save: str | None = None  # where the sandbox's state is written afterwards
    progress: bool = False  # a progress bar on the terminal
    # The command's stop (SIGINT/SIGTERM): every request and every wait for a token checks it.
    stop: Stop = field(default_factory=Stop, compare=False)

    def pacer(self, overrides: Mapping[str, Rate] | None = None) -> Pacer:
        """One account's request buckets (none in the sandbox: it has no AWS limits)."""
        return Pacer(self.api_rate_share, overrides, enabled=not self.sandbox,
                     sleep=self.stop.sleep)

    def clients(self, session: boto3.Session, default_region: str,
                overrides: Mapping[str, Rate] | None = None) -> Clients:
        return Clients(session, self.concurrency, default_region, self.pacer(overrides),
                       self.stop)

    def reader(self, clients: Clients) -> Reader:
        reader = Reader(clients, self.concurrency)
        if self.progress:
            reader.progress = TerminalProgress()
        return reader


@dataclass(frozen=True)
class Connection:
    """Readers and clients per owner account, and who runs the tool (multi-owner only)."""

    scopes: list[Scope]
    caller: Identity | None
    default_region: str = "us-east-1"  # the session's Region (or --region's first)
    # the caller's own clients, whose credentials assume roles (owners', consumers')
    base: Clients | None = None

    def identity(self) -> Identity:
        return self.caller or self.scopes[0].reader.identity()

    @property
    def clients(self) -> dict[str, Clients]:
        """Each owner account's clients. Asked when needed, not when connecting: a plan's
        listing goes out while ``GetCallerIdentity`` is on its way."""
        return {scope.reader.identity().account: scope.reader.clients for scope in self.scopes}


@contextlib.contextmanager
def open_aws(options: RunOptions) -> Iterator[tuple[Clients, Reader]]:
    """Clients and a reader for the caller, inside the sandbox when one is given."""
    client_config(options.concurrency)  # a bad AWS_MAX_ATTEMPTS is refused, sandbox or not
    with contextlib.ExitStack() as stack:
        if options.sandbox:
            from .sandbox import running_sandbox

            stack.enter_context(running_sandbox(options.sandbox, options.sandbox_save))
        session = make_session(None if options.sandbox else options.profile)
        default_region = (options.regions or (None,))[0] or session.region_name or "us-east-1"
        clients = options.clients(session, default_region)
        yield clients, options.reader(clients)


@contextlib.contextmanager
def single(options: RunOptions) -> Iterator[Connection]:
    """The caller's own account, for commands that need no manifest."""
    with open_aws(options) as (clients, reader):
        yield Connection([Scope(reader)], None, clients.default_region, clients)


@contextlib.contextmanager
def connect(options: RunOptions, manifest: Manifest, owner: str | None,
            write: bool = False) -> Iterator[Connection]:
    """Sessions for the manifest's owner accounts (``owners:``, ``settings.role_arn`` or
    the caller itself), restricted to ``--owner`` when given. A command that only reads
    (``write`` false) assumes each owner's plan role where the manifest names one."""
    with open_aws(options) as (base_clients, base_reader):
        rates = dict(manifest.settings.api_rates)
        base_clients.pacer.overrides.update(rates)
        owners = manifest.owners or (Owner(manifest.settings.role_arn, (),
                                           manifest.settings.plan_role_arn),)
        if owner:
            owners = tuple(o for o in owners if o.matches(owner))
            if not owners:
                raise UsageError(f"--owner {owner}: no owner in {manifest.path} has that "
                                 "account ID or role ARN")
        scopes: list[Scope] = []
        for role_arn, regions in ((o.role(write), o.regions or None) for o in owners):
            if role_arn is None:
                c, r = base_clients, base_reader
            else:
                session = assumed_session(base_clients.session, role_arn,
                                          base_clients.default_region,
                                          client_config(options.concurrency))
                c = options.clients(session, base_clients.default_region, rates)
                r = options.reader(c)
            scopes.append(Scope(r, regions))
        caller = base_reader.identity() if len(scopes) > 1 else None
        yield Connection(scopes, caller, base_clients.default_region, base_clients)
