"""What a consumer account itself sees, for ``verify`` (SPEC §7e): read with a read-only
role assumed in that account, on clients paced by that account's own request buckets.

Calls per consumer account: one ``sts:AssumeRole`` (session name as for owners); per Region
of its images one ``ec2:DescribeImages`` by ID (up to :data:`IMAGE_BATCH` IDs a call) and one
``ec2:GetAllowedImagesSettings``; per KMS key of its encrypted images one ``kms:DescribeKey``
and one ``kms:GenerateDataKeyWithoutPlaintext`` with ``DryRun`` (it needs no ciphertext, and a
dry run creates nothing). With ``settings.kms_grants: any``, each key's owner lists its grants
(``kms:ListGrants``) for the consumers' Auto Scaling roles. Nothing is written. Every call's failure is an :class:`Answer`
that :mod:`reconciler.core.verify` judges; none is trusted to mean "can launch".
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import botocore.exceptions

from ..core.allowed_amis import AllowedSettings
from ..core.errors import ReconcilerError
from ..core.model import Arn, Principal, RegionKey
from ..core.pacing import Rate
from ..core.verify import (
    Answer,
    KeyGrants,
    KeySeen,
    RegionView,
    Seen,
    Target,
    Verdict,
    judge,
    role_for,
)
from .aws import CallError, Clients, assumed_session, aws_call, client_config
from .concurrency import parallel_map
from .reader import Reader
from .session import RunOptions

IMAGE_BATCH = 100
T = TypeVar("T")


def consumer_clients(options: RunOptions, base: Clients, role_arn: str,
                     rates: dict[str, Rate] | None = None) -> Clients:
    """Clients acting as ``role_arn`` in a consumer account, with that account's buckets.
    A role that cannot be assumed raises :class:`CallError` naming it."""
    session = assumed_session(base.session, role_arn, base.default_region,
                              client_config(options.concurrency))
    return options.clients(session, base.default_region, rates)


def _ask(service: str, operation: str, call: Callable[[], T]) -> tuple[Answer, T | None]:
    """Run one call; its answer, and its result when it succeeded."""
    try:
        with aws_call(service, operation):
            return Answer(), call()
    except CallError as exc:
        return Answer(exc.code, _message(exc), failed=True), None


def _message(exc: CallError) -> str:
    """AWS's own code and message (whole: an access-denied message ends with the policy type
    that refused), or the one-line description of a failure that was not AWS-shaped."""
    cause = exc.__cause__
    if isinstance(cause, botocore.exceptions.ClientError):
        err = cause.response.get("Error", {})
        return " ".join(f"{err.get('Code', '')}: {err.get('Message', '')}".split())
    return str(exc)


class ConsumerReader:
    """The reads of one consumer account."""

    def __init__(self, clients: Clients, concurrency: int = 16) -> None:
        self.clients = clients
        self.concurrency = max(1, concurrency)

    def views(self, wanted: Sequence[tuple[str, Sequence[str], Sequence[str]]],
              ) -> list[RegionView]:
        """One view per (Region, image IDs, key ARNs), the Regions read at the same time
        (each has its own request buckets)."""
        return parallel_map(lambda w: self.view(*w), list(wanted), self.concurrency,
                            lambda w: w[0])

    def view(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> RegionView:
        listing, seen = self.images(region, image_ids)
        answer, settings = self.allowed(region)
        return RegionView(listing, seen, settings, answer,
                          {k: self.key(Arn.parse(k).region or region, k) for k in keys})

    def images(self, region: str, image_ids: Sequence[str]) -> tuple[Answer, dict[str, Seen]]:
        """``DescribeImages`` by ID: the images of ``image_ids`` the account sees."""
        ids = sorted(set(image_ids))
        seen: dict[str, Seen] = {}
        for start in range(0, len(ids), IMAGE_BATCH):
            answer = self._batch(region, ids[start:start + IMAGE_BATCH], seen)
            if answer.failed:
                return answer, {}
        return Answer(), seen

    def _batch(self, region: str, ids: list[str], into: dict[str, Seen]) -> Answer:
        answer, resp = _ask("ec2", "DescribeImages", lambda: self.clients.get(
            "ec2", region).describe_images(ImageIds=ids))
        if answer.code == "InvalidAMIID.NotFound":
            # One ID the account cannot see may fail the whole call: split to find the others.
            if len(ids) == 1:
                return Answer()
            mid = len(ids) // 2
            first = self._batch(region, ids[:mid], into)
            return first if first.failed else self._batch(region, ids[mid:], into)
        if answer.failed or resp is None:
            return answer
        for raw in resp.get("Images") or ():
            if raw.get("ImageId") in ids:
                allowed = raw.get("ImageAllowed")
                into[str(raw["ImageId"])] = Seen(str(raw.get("State") or ""),
                                                 allowed if isinstance(allowed, bool) else None)
        return Answer()

    def allowed(self, region: str) -> tuple[Answer, AllowedSettings | None]:
        """``GetAllowedImagesSettings`` of the account in ``region``."""
        answer, resp = _ask("ec2", "GetAllowedImagesSettings", lambda: self.clients.get(
            "ec2", region).get_allowed_images_settings())
        return answer, AllowedSettings.parse(resp) if resp is not None else None

    def key(self, region: str, key: str) -> KeySeen:
        """``DescribeKey``, then a ``GenerateDataKeyWithoutPlaintext`` dry run (KMS
        Developer Guide, "Testing your permissions"): ``DryRunOperationException`` means
        the call would succeed."""
        kms = self.clients.get("kms", region)
        answer, meta = _ask("kms", "DescribeKey", lambda: kms.describe_key(KeyId=key))
        if answer.failed or meta is None:
            return KeySeen(answer)
        state = str(_key_state(meta))
        dry, _ = _ask("kms", "GenerateDataKeyWithoutPlaintext",
                      lambda: kms.generate_data_key_without_plaintext(
                          KeyId=key, KeySpec="AES_256", DryRun=True))
        return KeySeen(answer, state, dry)


def _key_state(meta: dict[str, Any]) -> str:
    return str((meta.get("KeyMetadata") or {}).get("KeyState") or "")


def key_grants(owners: Mapping[str, Reader], keys: Sequence[str]) -> dict[str, KeyGrants]:
    """Each key's grantee principals, listed by its owner (``ListGrants``, paginated; the
    ``GranteePrincipal`` filter is applied here too)."""
    def grants(key: str) -> KeyGrants:
        reader = owners.get(Arn.parse(key).account)
        if reader is None:
            return KeyGrants(failure="its owner is not an owner account of the manifest")
        kms = reader.clients.get("kms", Arn.parse(key).region or None)

        def listing() -> frozenset[str]:
            pages = kms.get_paginator("list_grants").paginate(KeyId=key)
            return frozenset(str(g["GranteePrincipal"]) for page in pages
                             for g in page.get("Grants") or () if g.get("GranteePrincipal"))

        answer, found = _ask("kms", "ListGrants", listing)
        return KeyGrants(found or frozenset(), answer.message if answer.failed else "")

    wanted = sorted(set(keys))
    return dict(zip(wanted, parallel_map(grants, wanted, 4), strict=True))


def check_consumers(options: RunOptions, base: Clients, template: str,
                    targets: Sequence[Target], owners: Mapping[str, Reader],
                    now: dt.datetime, rates: dict[str, Rate] | None = None,
                    grants: Mapping[str, KeyGrants] | None = None,
                    ) -> tuple[list[Verdict], list[str]]:
    """Every target judged from its account's side, and one error line per account that
    could not be checked at all (its role cannot be assumed). The accounts are read at the
    same time: each has its own request buckets."""
    by_account: dict[str, list[Target]] = defaultdict(list)
    for t in targets:
        by_account[t.account].append(t)
    accounts = sorted(by_account)

    def read(account: str) -> dict[str, RegionView] | str:
        try:
            clients = consumer_clients(options, base, role_for(template, account), rates)
        except ReconcilerError as exc:
            return f"account {account}: {exc}"
        return _views(ConsumerReader(clients, options.concurrency), by_account[account])

    seen = dict(zip(accounts, parallel_map(read, accounts, options.concurrency), strict=True))
    errors = [v for v in seen.values() if isinstance(v, str)]
    views = {a: v for a, v in seen.items() if not isinstance(v, str)}
    launch = _owner_launch(owners, [t for t in targets if t.account in views
                                    and _unseen(t, views[t.account])])
    verdicts = [judge(t, views[t.account][t.image.region], now, launch.get(t.image.key), grants)
                for t in targets if t.account in views]
    return verdicts, errors


def _views(reader: ConsumerReader, targets: Sequence[Target]) -> dict[str, RegionView]:
    """What the account sees in each Region of its targets."""
    regions: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for t in targets:
        regions[t.image.region][0].add(t.image.image_id)
        regions[t.image.region][1].update(t.keys)
    wanted = [(r, sorted(ids), sorted(keys)) for r, (ids, keys) in sorted(regions.items())]
    return dict(zip([w[0] for w in wanted], reader.views(wanted), strict=True))


def _unseen(t: Target, views: Mapping[str, RegionView]) -> bool:
    view = views[t.image.region]
    return not view.listing.failed and t.image.image_id not in view.images


def _owner_launch(owners: Mapping[str, Reader], targets: Sequence[Target],
                  ) -> dict[RegionKey, frozenset[Principal]]:
    """The owner's launch permissions of the images some account does not see (they tell
    a share removed by hand from Allowed AMIs or an organization the account is not in)."""
    images = sorted({t.image for t in targets}, key=lambda i: i.key)
    out: dict[RegionKey, frozenset[Principal]] = {}
    for account, reader in owners.items():
        mine = [img for img in images if img.owner_id == account]
        out.update(reader.all_launch_permissions(mine))
    return out
