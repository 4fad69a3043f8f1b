"""Hand-built values for the tests of the pure core (imported as ``builders``: tests/ is on
sys.path): the caller, principals, images, snapshots, keys, the gathered state, and a plan
computed from them. One set, so every stage's tests speak of the same estate.

The scenario at the end (``PLAN_RULES``, ``PLAN_IMAGES``, :func:`full_plan`) is the one the
planning, plan-document and render tests share: a plan with every kind of operation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from helpers import (
    ACCOUNT,
    DEV,
    EU,
    HAND,
    ORG,
    OU,
    PROD,
    ROOT_STATEMENT,
    STAGING,
    US,
    manifest_yaml,
)

from reconciler.core import kms
from reconciler.core.desired import Selection, select
from reconciler.core.kms import KeyInfo
from reconciler.core.manifest import Manifest, parse_manifest
from reconciler.core.model import (
    BlockState,
    Finding,
    Identity,
    Image,
    OpKind,
    Principal,
    PrincipalKind,
    Snapshot,
)
from reconciler.core.plan import Plan
from reconciler.core.planning import CurrentState, PlanOptions, compute_plan

# The caller: compute_plan and compute_export read its account and its ARN's partition.
IDENTITY = Identity(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/ci")
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555"

P_PROD, P_STAGING, P_DEV, P_HAND = (Principal.account(a) for a in (PROD, STAGING, DEV, HAND))
P_ORG = Principal(PrincipalKind.ORGANIZATION, ORG)
P_OU = Principal(PrincipalKind.OU, OU)
PUBLIC = Principal.public()


def ami(n: int) -> str:
    return f"ami-{n:017x}"


def image(n: int | str, region: str = US, *, name: str | None = None,
          state: str = "available", public: bool = False,
          tags: Mapping[str, str] | None = None, snapshots: Sequence[str] = (),
          encrypted: bool = False, creation_date: str = "", deprecation_time: str = "",
          last_launched: str = "") -> Image:
    """An image the caller owns: ``n`` is a number (``ami(n)``, named ``golden-N`` unless
    ``name`` says otherwise) or an image ID."""
    image_id = ami(n) if isinstance(n, int) else n
    return Image(image_id, region, ACCOUNT, name or f"golden-{n}", state, public,
                 tuple(sorted((tags or {}).items())), tuple(snapshots), encrypted,
                 creation_date=creation_date, deprecation_time=deprecation_time,
                 last_launched=last_launched)


def listing(*images: Image) -> dict[str, list[Image]]:
    """What the listing found, by Region (us-east-1 and eu-west-1 always listed)."""
    out: dict[str, list[Image]] = {US: [], EU: []}
    for i in images:
        out.setdefault(i.region, []).append(i)
    return out


def snapshot(sid: str, region: str = US, key: str = "", *,
             tags: Mapping[str, str] | None = None) -> Snapshot:
    """A snapshot the caller owns, encrypted with ``key`` when one is given."""
    return Snapshot(sid, region, bool(key), key, ACCOUNT, tuple(sorted((tags or {}).items())))


def key_policy(*grantees: Principal, foreign: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A key policy: the account's root statement, ``foreign`` statements, and the tool's
    statements for ``grantees`` (none: only what is not the tool's)."""
    base = {"Version": "2012-10-17", "Statement": [ROOT_STATEMENT, *foreign]}
    return kms.with_grantees(base, {g for p in grantees if (g := kms.grantee_of(p)) is not None}, "aws")


def key_info(*grantees: Principal, foreign: Sequence[Mapping[str, Any]] = (),
             policy: Mapping[str, Any] | None = None, manager: str = "CUSTOMER",
             account: str = ACCOUNT, state: str = "Enabled") -> KeyInfo:
    """What the reader learns about ``KEY`` (alias/golden): its policy is ``policy``, or
    :func:`key_policy` of ``grantees`` and ``foreign``."""
    doc = key_policy(*grantees, foreign=foreign) if policy is None else policy
    return KeyInfo(KEY, US, KEY, account, manager, state, "alias/golden", json.dumps(doc))


def state(launch: Mapping[tuple[str, str], Iterable[Principal]] | None = None,
          **kw: Any) -> CurrentState:
    """The gathered state; ``launch`` maps (Region, image ID) to its principals."""
    return CurrentState(launch={k: frozenset(v) for k, v in (launch or {}).items()}, **kw)


def manifest(body: str, *, settings: str = "") -> Manifest:
    """A manifest with the standard principals in us-east-1 and eu-west-1; ``body`` is the
    ``images:`` list."""
    return parse_manifest(manifest_yaml(body, regions=(US, EU), settings=settings).encode(),
                          "m.yaml")


def plan_for(m: Manifest, images: Mapping[str, Sequence[Image]], st: CurrentState,
             options: PlanOptions = PlanOptions()) -> Plan:
    """select, then compute_plan, as the caller (``options.now``: the time ages are taken)."""
    selected: Selection = select(m, images, options.regions, options.now)
    return compute_plan(m, IDENTITY, selected, st, options)


def codes(findings: Iterable[Finding]) -> list[tuple[str, str, str]]:
    return [(f.severity.value, f.code, f.resource) for f in findings]


def launch_ops(plan: Plan) -> list[tuple[str, str, str, str]]:
    return [(o.action.value, o.resource, o.principal.label, ",".join(o.rules))
            for o in plan.operations if o.kind is OpKind.LAUNCH]


# --------------------------------------------------------------------------- a full plan

PLAN_RULES = f"""\
  - name: golden
    select: {{name: "golden-*"}}
    regions: [us-east-1]
    launch: [prod, staging]
  - name: pub
    select: {{name: "public-*"}}
    regions: [us-east-1]
    launch: [public]
  - name: pinned
    select: {{ids: [{ami(9)}]}}
    regions: [eu-west-1]
    launch: [org, prod]
    copy: [prod]
"""

PLAN_IMAGES = (
    image(1),
    image(2),
    image(3, name="public-3"),
    image(9, EU, name="pinned-9", snapshots=("snap-0000000000000009a",)),
)

BASE_LAUNCH = {(US, ami(1)): {P_PROD, P_HAND}, (US, ami(2)): {P_PROD, P_STAGING},
               (US, ami(3)): set(), (EU, ami(9)): {P_ORG}}


def base_state(launch: Mapping[tuple[str, str], Iterable[Principal]] | None = None,
               **overrides: Any) -> CurrentState:
    """Current state for PLAN_IMAGES: ami(1) has a hand-added account, ami(2) is converged,
    ami(3) is not yet public, ami(9) lacks prod and its snapshot has a hand-added account."""
    launch = BASE_LAUNCH if launch is None else launch
    kw: dict[str, Any] = dict(
        snapshots={(EU, "snap-0000000000000009a"): snapshot("snap-0000000000000009a", EU)},
        copy={(EU, "snap-0000000000000009a"): frozenset({P_HAND})},
        public_access={(ACCOUNT, US): BlockState("unblocked")})
    kw.update(overrides)
    return state(launch, **kw)


def full_plan() -> tuple[Manifest, Plan]:
    """A plan with every operation kind and every finding severity."""
    m = manifest(PLAN_RULES + """\
  - name: enc
    select: {name: "enc-*"}
    regions: [us-east-1]
    launch: [prod, ou]
  - name: ghost
    select: {name: "ghost-*"}
    regions: [us-east-1]
""", settings="allow_public: true")
    snap = snapshot("snap-0000000000000000e", key=KEY)
    images = listing(*PLAN_IMAGES, image(0xE, name="enc-1", snapshots=(snap.snapshot_id,)))
    plain = snapshot("snap-0000000000000009a", EU)
    st = base_state(snapshots={(EU, plain.snapshot_id): plain, (US, snap.snapshot_id): snap},
                    keys={(US, KEY): key_info()},
                    public_access={(ACCOUNT, US): BlockState("block-new-sharing")},
                    launch={**BASE_LAUNCH, (US, ami(0xE)): set()})
    return m, plan_for(m, images, st)
