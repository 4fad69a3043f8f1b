"""AWS Region names, checked offline against the partition data of the installed botocore.

A misspelt Region (``ap-sotheast-2``) has the shape of a Region, so no pattern catches it,
and a plan then fails deep inside with nothing located. botocore ships the Regions it knows,
by partition (aws, aws-cn, aws-us-gov, the ISO partitions, aws-eusc, ...): ``partitions.json``
for its endpoint rules and ``endpoints.json`` for the older resolver. They are read on first
use, never at import, so that importing the core does not load the AWS SDK.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any


@functools.cache
def known_regions() -> Mapping[str, str]:
    """Every Region the installed botocore knows -> its partition (``aws``, ``aws-cn``, ...)."""
    import botocore.loaders  # here, not at import: the core stays free of the SDK

    loader = botocore.loaders.create_loader()
    known: dict[str, str] = {}
    # endpoints.json names a partition "partition", partitions.json "id"
    for data_name, id_key in (("partitions", "id"), ("endpoints", "partition")):
        try:
            data: Any = loader.load_data(data_name)
        except Exception:  # an older botocore without that file: the other one will do
            continue
        for partition in data.get("partitions", ()):
            # "aws-global" and the like are endpoint names, not Regions: the partition's
            # own pattern tells them apart
            pattern = re.compile(partition.get("regionRegex") or r"\A\Z")
            for name in partition.get("regions", {}):
                if pattern.match(name):
                    known.setdefault(name, str(partition[id_key]))
    return known


def partition_of(region: str) -> str | None:
    """The partition of a Region botocore knows (None for any other name)."""
    return known_regions().get(region)


def region_problem(name: str) -> str | None:
    """Why ``name`` is not an AWS Region, as ``'x' is not an AWS Region (did you mean 'y'?)``
    (None when it is one, or when no partition data could be read at all)."""
    known = known_regions()
    if not known or name in known:
        return None
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return f"{name!r} is not an AWS Region (did you mean {close[0]!r}?)"
    import botocore

    return (f"{name!r} is not an AWS Region botocore {botocore.__version__} knows (a Region "
            "newer than it needs a newer botocore)")
