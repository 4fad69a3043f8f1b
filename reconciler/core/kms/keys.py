"""What the reader learned about one KMS key, with its policy parsed once."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Any

from .access import KeyPolicyView, evaluate
from .grantees import PolicyError, parse_policy


class KeyManager(enum.StrEnum):
    """``KeyMetadata.KeyManager`` of DescribeKey: who manages a key (and so its policy)."""

    AWS = "AWS"  # aws/ebs and other AWS managed keys: the policy cannot be changed
    CUSTOMER = "CUSTOMER"

    @classmethod
    def parse(cls, value: object) -> KeyManager | None:
        """The manager DescribeKey reported (None when absent or unknown)."""
        return next((m for m in cls if m.value == value), None)


@dataclass(frozen=True)
class KeyInfo:
    """What the reader learned about one KMS key."""

    key_id: str  # as the snapshot names it (usually the key ARN)
    region: str
    arn: str = ""
    account: str = ""
    manager: KeyManager | None = None  # None: unread, or a kind DescribeKey added since
    state: str = ""
    alias: str = ""
    policy: str | None = None
    error: str = ""  # why the key (or its policy) could not be read
    error_code: str = ""  # AWS's error code for that failure ("" if not AWS-shaped)

    @property
    def label(self) -> str:
        return f"{self.arn or self.key_id} ({self.alias})" if self.alias else (self.arn or self.key_id)

    # The policy is parsed once per key and run (plan, explain and export all ask): a
    # KeyInfo is frozen, so the parsed form, kept beside it, never goes stale.
    @functools.cached_property
    def _parsed(self) -> dict[str, Any] | PolicyError:
        try:
            return parse_policy(self.policy or "{}")
        except PolicyError as exc:
            return exc

    def document(self) -> dict[str, Any]:
        """The key policy as :func:`parse_policy` reads it ({} when it was not read); raises
        :class:`PolicyError` when it cannot be read. Callers never change it."""
        parsed = self._parsed
        if isinstance(parsed, PolicyError):
            raise parsed
        return parsed

    @functools.cached_property
    def evaluation(self) -> KeyPolicyView:
        """:func:`evaluate` of :meth:`document` (raises :class:`PolicyError` likewise)."""
        return evaluate(self.document())


def key_arn(key_id: str, account: str, region: str) -> str:
    """A key as another account (or a record that names it by ID) must name it: its ARN. A
    bare key ID would be looked up in the asking account."""
    if key_id.startswith("arn:"):
        return key_id
    from ..regions import partition_of  # botocore's partition data, read on first use

    return f"arn:{partition_of(region) or 'aws'}:kms:{region}:{account}:key/{key_id}"
