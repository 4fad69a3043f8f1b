"""The core's values (reconciler.core.model): ARNs are taken apart in one place."""

from __future__ import annotations

from reconciler.core.model import Arn


def test_one_arn_parser() -> None:
    key = Arn.parse("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab")
    assert (key.partition, key.service, key.region, key.account, key.resource, key.resource_id) \
        == ("aws-us-gov", "kms", "us-gov-west-1", "123456789012", "key/1234abcd-12ab",
            "1234abcd-12ab")
    ou = Arn.parse("arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ou-ab12-cdef3456")
    assert (ou.region, ou.account, ou.resource_id) == ("", "123456789012", "ou-ab12-cdef3456")
    assert Arn.parse("1234abcd-12ab") == Arn.parse("arn:aws:kms") == Arn()
    assert Arn.parse("arn:aws:iam::123456789012:role/path/with:colon").resource == \
        "role/path/with:colon"

