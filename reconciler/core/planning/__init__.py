"""Planning, pure: desired state against current state -> a plan.

One module per seam of the pipeline (:mod:`.pipeline` runs them in order):

- :mod:`.state`: the gather -> planning contract (:class:`CurrentState`, :class:`KeyUse`,
  :class:`PlanOptions`, named keys) and what gathering asks before it reads;
- :mod:`.checks`: the checks every managed image goes through (quotas, snapshots, keys,
  public sharing, ownership tags);
- :mod:`.keys`: the tool's statements in each key policy (views, operations, Deny
  statements, policy size);
- :mod:`.diffs`: launch and copy permission operations;
- :mod:`.ownership`: ownership tags and released images;
- :mod:`.consulted`: the state digest and what a plan is shown with.

Nothing here talks to AWS: :mod:`reconciler.shell.gather` reads the current state; a test
checks that importing this package loads neither boto3, botocore nor click.
"""

from ..model import OwnerRegion, RegionKey
from .pipeline import Settled, compute_plan, keys_losing_grantees, settle
from .state import (
    CurrentState,
    KeyUse,
    PlanOptions,
    key_places,
    regions_needing_public_check,
    regions_needing_snapshot_public_check,
    run_regions,
)

__all__ = [
    "CurrentState",
    "KeyUse",
    "OwnerRegion",
    "PlanOptions",
    "RegionKey",
    "Settled",
    "compute_plan",
    "key_places",
    "keys_losing_grantees",
    "regions_needing_public_check",
    "regions_needing_snapshot_public_check",
    "run_regions",
    "settle",
]
