"""``reconcile export``: the pure manifest writer, the names file, and round trips through
the installed CLI (moto server and ``--sandbox``) where ``plan`` must report no changes."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from builders import (
    IDENTITY,
    KEY,
    P_DEV,
    P_HAND,
    P_ORG,
    P_OU,
    P_PROD,
    P_STAGING,
    PUBLIC,
    image,
    key_info,
    plan_for,
    snapshot,
)
from helpers import (
    ACCOUNT,
    DEV,
    EU,
    EXAMPLES,
    HAND,
    ORG,
    OU,
    PROD,
    STAGING,
    US,
    Images,
    MotoServer,
    Runner,
)

from reconciler.core import kms
from reconciler.core.errors import InputError, UsageError
from reconciler.core.export_rules import SharedImage
from reconciler.core.exporter import (
    ExportResult,
    ImageFilter,
    compute_export,
    parse_tag_filters,
)
from reconciler.core.kms import KeyInfo
from reconciler.core.manifest import Manifest, parse_manifest
from reconciler.core.model import Image, Principal, PrincipalKind, Snapshot
from reconciler.core.names import generated_name, parse_names
from reconciler.core.planning import CurrentState
from reconciler.shell.reads import read_export

SCHEMA_LINE = "# yaml-language-server: $schema=./schemas/manifest.schema.json"


# --------------------------------------------------------------------------- helpers


def shared(img: Image, *launch: Principal, copy: Mapping[str, frozenset[Principal]] | None = None,
           ) -> SharedImage:
    return SharedImage(img, frozenset(launch), dict(copy or {}))


def gathered(images: Sequence[SharedImage],
             snapshots: Mapping[tuple[str, str], Snapshot] | None = None,
             keys: Mapping[tuple[str, str], KeyInfo] | None = None,
             regions: Sequence[str] = ()) -> CurrentState:
    """The state ``read_export`` would gather for these images."""
    by_region: dict[str, list[Image]] = {}
    for s in images:
        by_region.setdefault(s.image.region, []).append(s.image)
    return CurrentState(
        launch={s.image.key: s.launch for s in images},
        snapshots=dict(snapshots or {}),
        copy={(s.image.region, sid): p for s in images for sid, p in s.copy.items()},
        keys=dict(keys or {}),
        regions=tuple(regions),
        images={r: tuple(found) for r, found in by_region.items()})


def parse(text: str) -> Manifest:
    return parse_manifest(text.encode(), "export.yaml")


def replan(text: str, images: Sequence[SharedImage],
           snapshots: Mapping[tuple[str, str], Snapshot] | None = None,
           keys: Mapping[tuple[str, str], KeyInfo] | None = None):
    """Independently of the exporter's own check: the plan of ``text`` on the same state."""
    st = gathered(images, snapshots, keys)
    return plan_for(parse(text), st.images, st)


RuleShares = tuple[frozenset[Principal], frozenset[Principal] | None]


def rules_by_ids(m: Manifest) -> dict[frozenset[str], RuleShares]:
    """Each rule as {its ids: (launch, copy or None when it has no `copy:` key)}."""
    return {frozenset(r.select.ids): (frozenset(r.launch),
                                      frozenset(r.copy) if r.manages_copy else None)
            for r in m.rules}


def export(images: Sequence[SharedImage], names: Mapping[str, str] | None = None, *,
           snapshots: Mapping[tuple[str, str], Snapshot] | None = None,
           keys: Mapping[tuple[str, str], KeyInfo] | None = None,
           regions: Sequence[str] = (), **kw) -> ExportResult:
    result = compute_export(IDENTITY, gathered(images, snapshots, keys, regions), names, **kw)
    plan = replan(result.text, images, snapshots, keys)
    assert plan.operations == () and plan.errors == (), (plan.operations, plan.findings)
    return result


def flat(text: str) -> str:
    """The comment text of a manifest as one line (comments are wrapped)."""
    return " ".join(line.strip().lstrip("#").strip() for line in text.splitlines()
                    if line.strip().startswith("#"))


# --------------------------------------------------------------------------- pure: shape


def test_header_schema_line_and_settings() -> None:
    text = export([shared(image(1), P_PROD)]).text
    lines = text.splitlines()
    assert lines[0] == SCHEMA_LINE
    header = "\n".join(line for line in lines if line.startswith("#"))
    assert "reconcile export" in header and "REVIEW IT BEFORE USE" in header
    assert f"account {ACCOUNT}" in header
    doc = yaml.safe_load(text)
    assert doc["version"] == 1
    assert doc["settings"] == {"name": "exported", "regions": [US], "prune": True, "allow_public": False,
                               "kms": "key-policy", "max_removals": 25, "share_quota": 1000}


def test_images_with_the_same_shares_form_one_rule_across_regions() -> None:
    a, b, c = image(1), image(2), image(3, EU)
    d, e = image(4), image(5, EU)
    images = [shared(a, P_PROD, P_STAGING), shared(b, P_STAGING, P_PROD),
              shared(c, P_PROD, P_STAGING), shared(d, P_PROD), shared(e, P_ORG, P_OU, P_PROD)]
    result = export(images, regions=[US, EU])
    m = parse(result.text)
    assert result.rules == 3 and len(result.exported) == 5
    assert rules_by_ids(m) == {
        frozenset({a.image_id, b.image_id, c.image_id}): (frozenset({P_PROD, P_STAGING}), None),
        frozenset({d.image_id}): (frozenset({P_PROD}), None),
        frozenset({e.image_id}): (frozenset({P_PROD, P_ORG, P_OU}), None),
    }
    rule = next(r for r in m.rules if len(r.select.ids) == 3)
    assert rule.regions == (EU, US)  # the rule names its Regions
    assert all(r.select.name is None and not r.select.tags for r in m.rules)
    assert m.settings.regions == (EU, US)
    # each ID is annotated with its Region and Name for the reviewer
    assert f"- {c.image_id}  # {EU} golden-3" in result.text


def test_generated_principal_names_and_quoting() -> None:
    text = export([shared(image(1), P_PROD, P_ORG, P_OU)]).text
    assert f'  account-{PROD}: "{PROD}"' in text.splitlines()
    assert f'  org-o-a1b2c3d4e5: "{ORG}"' in text.splitlines()
    assert f'  ou-ou-ab12-cdef3456: "{OU}"' in text.splitlines()
    assert f"launch: [account-{PROD}, org-o-a1b2c3d4e5, ou-ou-ab12-cdef3456]" in text
    # every account ID in the document is a quoted string
    assert re.findall(r"(?<![\"\w:-])\d{12}(?![\"\w:])", text.split("version: 1", 1)[1]) == []
    doc = yaml.safe_load(text)
    assert all(isinstance(v, str) for v in doc["principals"].values())


def test_account_id_with_leading_zero_stays_a_string() -> None:
    p = Principal.account("012345670123")
    text = export([shared(image(1), p)]).text
    assert '"012345670123"' in text
    assert yaml.safe_load(text)["principals"]["account-012345670123"] == "012345670123"
    assert parse(text).rules[0].launch == (p,)


def test_generated_name_is_bounded() -> None:
    long_ou = Principal(PrincipalKind.OU, "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/"
                                          f"ou-{'a' * 32}-{'b' * 32}")
    name = generated_name(long_ou)
    assert len(name) <= 64 and name.startswith("ou-ou-aaaa")
    assert parse(export([shared(image(1), long_ou)]).text).rules[0].launch == (long_ou,)


def test_names_mapping_is_used_and_clashes_are_resolved() -> None:
    # the caller calls STAGING "account-111122223333": PROD's generated name must not collide
    names = {PROD: "prod", ORG: "whole-org", STAGING: f"account-{PROD}"}
    text = export([shared(image(1), P_PROD, P_ORG), shared(image(2), P_STAGING, P_DEV)],
                  names).text
    doc = yaml.safe_load(text)
    assert doc["principals"] == {"prod": PROD, "whole-org": ORG, f"account-{PROD}": STAGING,
                                 f"account-{DEV}": DEV}
    m = parse(text)
    assert rules_by_ids(m)[frozenset({image(2).image_id})][0] == frozenset({P_STAGING, P_DEV})
    assert "launch: [prod, whole-org]" in text
    assert "- name: shared-with-prod-whole-org" in text


def test_names_mapping_lists_only_principals_in_use() -> None:
    text = export([shared(image(1), P_PROD)], {PROD: "prod", STAGING: "staging"}).text
    assert yaml.safe_load(text)["principals"] == {"prod": PROD}


def test_names_yaml_would_misread_are_quoted() -> None:
    text = export([shared(image(1), P_PROD, P_STAGING)], {PROD: "on", STAGING: "null"}).text
    assert f'  "on": "{PROD}"' in text and f'  "null": "{STAGING}"' in text
    assert parse(text).rules[0].launch == (P_PROD, P_STAGING)


def test_invalid_names_mapping_is_refused() -> None:
    with pytest.raises(ValueError):
        compute_export(IDENTITY, gathered([shared(image(1), P_PROD)]), {PROD: "public"})
    with pytest.raises(ValueError):
        compute_export(IDENTITY, gathered([shared(image(1), P_PROD)]), {PROD: "a", STAGING: "a"})
    with pytest.raises(ValueError):
        compute_export(IDENTITY, gathered([shared(image(1), P_PROD)]), {"12345": "short"})


def test_public_sets_allow_public_with_a_warning() -> None:
    text = export([shared(image(1), PUBLIC, P_PROD), shared(image(2), P_PROD)]).text
    m = parse(text)
    assert m.settings.allow_public is True
    assert "WARNING: some images below are PUBLIC" in text
    assert "# WARNING: public: every AWS account may launch these images" in text
    assert f"launch: [account-{PROD}, public]" in text
    assert "public" not in yaml.safe_load(text)["principals"]

    plain = export([shared(image(2), P_PROD)]).text
    assert parse(plain).settings.allow_public is False and "WARNING" not in plain


def test_copy_key_only_for_images_whose_snapshots_are_shared() -> None:
    a = image(1, snapshots=["snap-a"])
    b = image(2, snapshots=["snap-b"])
    c = image(3, snapshots=["snap-c"])
    snaps = {(US, s): snapshot(s) for s in ("snap-a", "snap-b", "snap-c")}
    images = [shared(a, P_PROD, copy={"snap-a": frozenset({P_PROD})}),
              shared(b, P_PROD, copy={"snap-b": frozenset()}),
              shared(c, P_PROD)]
    result = export(images, snapshots=snaps)
    m = parse(result.text)
    assert rules_by_ids(m) == {
        frozenset({a.image_id}): (frozenset({P_PROD}), frozenset({P_PROD})),
        frozenset({b.image_id, c.image_id}): (frozenset({P_PROD}), None),
    }
    assert result.text.count("copy:") == 1
    assert f"copy: [account-{PROD}]" in result.text
    assert f"- name: shared-with-account-{PROD}-copy-account-{PROD}" in result.text


def test_snapshots_shared_differently_are_left_out() -> None:
    a = image(1, snapshots=["snap-1", "snap-2"])
    snaps = {(US, s): snapshot(s) for s in ("snap-1", "snap-2")}
    images = [shared(a, P_PROD, copy={"snap-1": frozenset({P_PROD}), "snap-2": frozenset()}),
              shared(image(2), P_PROD)]
    result = export(images, snapshots=snaps)
    assert [lo.image.image_id for lo in result.left_out] == [a.image_id]
    (reason,) = result.left_out[0].reasons
    assert "snapshot snap-2 would gain copy permission for 111122223333" in reason
    assert a.image_id not in {i for r in parse(result.text).rules for i in r.select.ids}
    assert f"# - {a.image_id} in {US} (golden-1), shared with {PROD}:" in result.text


def test_unshared_and_disabled_images_are_not_exported() -> None:
    images = [shared(image(1), P_PROD), shared(image(2)), shared(image(3), P_PROD, P_STAGING),
              shared(image(4, state="disabled")), shared(image(5, state="disabled"), P_PROD)]
    result = export(images)
    ids = {i for r in parse(result.text).rules for i in r.select.ids}
    assert ids == {image(1).image_id, image(3).image_id}
    assert ("Not listed: 1 image shared with nobody and 2 disabled or otherwise unavailable "
            "images.") in flat(result.text)


def test_nothing_shared_gives_an_empty_valid_manifest() -> None:
    result = export([shared(image(1))], regions=[EU])
    m = parse(result.text)
    assert m.rules == () and result.rules == 0 and m.settings.regions == (EU,)
    assert "images: []" in result.text and "principals: {}" in result.text


def test_share_quota_is_raised_when_an_image_has_more_entities() -> None:
    many = [Principal.account(f"{700000000000 + i}") for i in range(1200)]
    text = export([shared(image(1), *many, PUBLIC), shared(image(2), P_PROD)]).text
    m = parse(text)
    assert m.settings.share_quota == 1200
    assert "raised from the default 1000" in text
    assert len(next(r for r in m.rules if image(1).image_id in r.select.ids).launch) == 1201
    assert max(len(line) for line in text.splitlines()) < 120  # long lists are block lists
    assert "- name: shared-with-account-700000000000-account-700000000001-and-1199-more" in text


def test_rule_names_are_unique_and_valid() -> None:
    # same launch set, different copy sets: two rules, two names
    a, b = image(1, snapshots=["s-a"]), image(2, snapshots=["s-b"])
    snaps = {(US, "s-a"): snapshot("s-a"), (US, "s-b"): snapshot("s-b")}
    text = export([shared(a, P_PROD, copy={"s-a": frozenset({P_PROD})}),
                   shared(b, P_PROD, copy={"s-b": frozenset({P_STAGING})})],
                  snapshots=snaps).text
    names = [r.name for r in parse(text).rules]
    assert len(names) == len(set(names)) == 2


def test_output_is_deterministic() -> None:
    images = [shared(image(i, US if i % 2 else EU), *(Principal.account(f"70000000000{i % 3}"),
                                                      P_PROD)[: 1 + i % 2])
              for i in range(12)]
    images.append(shared(image(99), P_ORG, PUBLIC))
    names = {PROD: "prod", ORG: "org", "700000000001": "one"}
    first = compute_export(IDENTITY, gathered(images, regions=[US, EU]), names).text
    for seed in range(5):
        shuffled = images[:]
        random.Random(seed).shuffle(shuffled)
        reordered = dict(sorted(names.items(), reverse=bool(seed % 2)))
        assert compute_export(IDENTITY, gathered(shuffled, regions=[EU, US]),
                              reordered).text == first


def test_image_filter() -> None:
    f = ImageFilter("golden-*", (("channel", "stable"),))
    assert f.matches(image(1, name="golden-a", tags={"channel": "stable", "os": "al2023"}))
    assert not f.matches(image(1, name="golden-a", tags={"channel": "candidate"}))
    assert not f.matches(image(1, name="scratch", tags={"channel": "stable"}))
    assert not f.matches(image(1, name="golden-a"))
    result = export([shared(image(1, name="golden-a", tags={"channel": "stable"}), P_PROD),
                     shared(image(2, name="scratch", tags={"channel": "stable"}), P_PROD)],
                    image_filter=f)
    assert [i.image_id for i in result.exported] == [image(1).image_id]
    assert "--name-glob 'golden-*' --tag channel=stable" in flat(result.text)


def test_parse_tag_filters() -> None:
    assert parse_tag_filters(["os=al2023", "channel=stable", "empty="]) == (
        ("channel", "stable"), ("empty", ""), ("os", "al2023"))
    assert parse_tag_filters(["k=a=b"]) == (("k", "a=b"),)
    for bad in (["channel"], ["=stable"]):
        with pytest.raises(UsageError, match="KEY=VALUE"):
            parse_tag_filters(bad)
    with pytest.raises(UsageError, match="twice"):
        parse_tag_filters(["a=1", "a=2"])


# --------------------------------------------------------------------------- pure: KMS


def test_encrypted_image_whose_consumers_have_key_access_is_exported() -> None:
    a = image(1, snapshots=["snap-e"])
    snaps = {(US, "snap-e"): snapshot("snap-e", key=KEY)}
    keys = {(US, KEY): key_info(P_PROD, P_OU)}
    result = export([shared(a, P_PROD, P_OU)], snapshots=snaps, keys=keys)
    assert result.left_out == () and [i.image_id for i in result.exported] == [a.image_id]


def test_grant_statements_for_auto_scaling_are_kept_as_they_are() -> None:
    """Keys whose grant statements have no kms:GrantIsForAWSResource condition: the export
    says kms_grants: any, so its plan rewrites nothing (``export`` re-plans to no changes)."""
    a = image(1, snapshots=["snap-e"])
    snaps = {(US, "snap-e"): snapshot("snap-e", key=KEY)}
    info = key_info(P_PROD, P_OU)
    policy = kms.with_grantees(json.loads(info.policy or "{}"), {kms.grantee_of(P_PROD),
                               kms.grantee_of(P_OU)}, "aws", kms.GrantShape.ANY)
    keys = {(US, KEY): replace(info, policy=json.dumps(policy))}
    result = export([shared(a, P_PROD, P_OU)], snapshots=snaps, keys=keys)
    assert yaml.safe_load(result.text)["settings"]["kms_grants"] == "any"
    assert "kms_grants" not in export([shared(a, P_PROD, P_OU)], snapshots=snaps,
                                      keys={(US, KEY): info}).text


def test_the_grant_shape_follows_the_shared_images_keys_only() -> None:
    """An unshared image's key (read for a family's older builds) with grant statements of
    the other shape does not decide the shape: the shared images' keys do."""
    other_key = KEY.replace("1111", "9999")
    a = image(1, snapshots=["snap-e"])
    unshared = image(2, snapshots=["snap-u"])
    snaps = {(US, "snap-e"): snapshot("snap-e", key=KEY),
             (US, "snap-u"): snapshot("snap-u", key=other_key)}
    info = key_info(P_PROD)
    grants_any = kms.with_grantees(json.loads(info.policy or "{}"), {kms.grantee_of(P_PROD)},
                                   "aws", kms.GrantShape.ANY)
    keys = {(US, KEY): replace(info, policy=json.dumps(grants_any)),
            (US, other_key): replace(info, key_id=other_key, arn=other_key)}
    result = export([shared(a, P_PROD), shared(unshared)], snapshots=snaps, keys=keys)
    assert yaml.safe_load(result.text)["settings"]["kms_grants"] == "any"


def test_access_through_a_foreign_statement_counts() -> None:
    a = image(1, snapshots=["snap-e"])
    foreign = {"Sid": "Consumers", "Effect": "Allow",
               "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*",
               "Resource": "*"}
    result = export([shared(a, P_PROD)], snapshots={(US, "snap-e"): snapshot("snap-e", key=KEY)},
                    keys={(US, KEY): key_info(foreign=[foreign])})
    assert result.left_out == ()


def test_consumers_without_key_access_are_left_out_with_the_reason() -> None:
    a, b = image(1, snapshots=["snap-e"]), image(2)
    result = export([shared(a, P_PROD, P_STAGING), shared(b, P_PROD)],
                    snapshots={(US, "snap-e"): snapshot("snap-e", key=KEY)},
                    keys={(US, KEY): key_info(P_PROD)})
    assert [lo.image.image_id for lo in result.left_out] == [a.image_id]
    (reason,) = result.left_out[0].reasons
    assert f"KMS key {KEY} (alias/golden) does not let {STAGING} use it" in reason
    assert reason in flat(result.text)
    assert [i.image_id for i in result.exported] == [b.image_id]


def test_a_reason_is_given_once_when_two_snapshots_share_the_key() -> None:
    a = image(1, snapshots=["snap-e", "snap-f"])
    result = export([shared(a, P_PROD, P_STAGING)],
                    snapshots={(US, sid): snapshot(sid, key=KEY) for sid in ("snap-e", "snap-f")},
                    keys={(US, KEY): key_info(P_PROD)})
    (left_out,) = result.left_out
    (reason,) = left_out.reasons
    assert f"does not let {STAGING} use it" in reason
    assert flat(result.text).count(reason) == 1


def test_key_statements_granting_more_than_the_shares_are_left_out() -> None:
    a = image(1, snapshots=["snap-e"])
    result = export([shared(a, P_PROD)], snapshots={(US, "snap-e"): snapshot("snap-e", key=KEY)},
                    keys={(US, KEY): key_info(P_PROD, P_HAND)})
    assert result.exported == ()
    assert f"also allow {HAND}" in result.left_out[0].reasons[0]


@pytest.mark.parametrize(("info", "expected"), [
    (key_info(P_PROD, manager="AWS"), "AWS managed key (aws/ebs)"),
    (key_info(P_PROD, account="210987654321"), "belongs to account 210987654321"),
    (key_info(P_PROD, state="Disabled"), "the key is Disabled"),
    (KeyInfo(KEY, US, error="kms:DescribeKey failed: AccessDeniedException: no"),
     "kms:DescribeKey failed"),
], ids=["aws-managed", "foreign-key", "disabled-key", "unreadable"])
def test_images_plan_would_block_are_left_out(info: KeyInfo, expected: str) -> None:
    a, b = image(1, snapshots=["snap-e"]), image(2, snapshots=["snap-p"])
    snaps = {(US, "snap-e"): snapshot("snap-e", key=KEY), (US, "snap-p"): snapshot("snap-p")}
    result = export([shared(a, P_PROD), shared(b, P_PROD)], snapshots=snaps,
                    keys={(US, KEY): info})
    assert [lo.image.image_id for lo in result.left_out] == [a.image_id]
    assert expected in result.left_out[0].reasons[0]
    assert not result.left_out[0].reasons[0].startswith(a.image_id)  # no repeated label
    assert [i.image_id for i in result.exported] == [b.image_id]


def test_missing_snapshot_or_key_is_left_out() -> None:
    a, b = image(1, snapshots=["snap-gone"]), image(2, snapshots=["snap-e"])
    result = export([shared(a, P_PROD), shared(b, P_PROD)],
                    snapshots={(US, "snap-e"): snapshot("snap-e", key=KEY)}, keys={})
    reasons = {lo.image.image_id: lo.reasons[0] for lo in result.left_out}
    assert "snap-gone was not found" in reasons[a.image_id]
    assert "KMS key is not reported" in reasons[b.image_id]


def test_leaving_one_image_out_re_checks_the_others_on_its_key() -> None:
    # Both images use KEY, whose statements grant PROD and STAGING. `b` has snapshots shared
    # differently, so it is left out; then nothing exported is shared with STAGING any more
    # and keeping `a` would remove STAGING from the key: `a` must be left out too.
    a = image(1, snapshots=["s-a"])
    b = image(2, snapshots=["s-b1", "s-b2"])
    snaps = {(US, s): snapshot(s, key=KEY) for s in ("s-a", "s-b1", "s-b2")}
    images = [shared(a, P_PROD), shared(b, P_STAGING, copy={"s-b1": frozenset({P_STAGING}),
                                                            "s-b2": frozenset()})]
    result = export(images, snapshots=snaps, keys={(US, KEY): key_info(P_PROD, P_STAGING)})
    assert {lo.image.image_id for lo in result.left_out} == {a.image_id, b.image_id}
    assert result.exported == () and parse(result.text).rules == ()


# --------------------------------------------------------------------------- names file


def test_parse_names() -> None:
    raw = f'prod: "{PROD}"\nwhole-org: "{ORG}"\nanalytics: "{OU}"\n'.encode()
    assert parse_names(raw, "names.yaml") == {PROD: "prod", ORG: "whole-org", OU: "analytics"}


@pytest.mark.parametrize(("text", "expected"), [
    ("prod: 012345670123\n", "names.yaml:1:7: prod: 012345670123 was read by YAML as a number "
                             '(YAML reads it as 1402433619); quote it: "012345670123"'),
    ("prod: 111122223333\n", 'names.yaml:1:7: prod: 111122223333 was read by YAML as a number; '
                             'quote it: "111122223333"'),
    ('prod: "1234"\n', "names.yaml:1:7: prod: account ID '1234' must be exactly 12 digits"),
    ('prod: "arn:aws:iam::111122223333:root"\n', "is not a 12-digit account ID, Organization ARN"),
    ('public: "111122223333"\n', "names.yaml:1:1: 'public' is reserved"),
    ('9lives: "111122223333"\n', "'9lives' is not a valid principal name"),
    ('a: "111122223333"\nb: "111122223333"\n',
     "names.yaml:2:4: b: 111122223333 is already named 'a'"),
    ('a: "111122223333"\na: "444455556666"\n', "names.yaml:2:1: duplicate key 'a'"),
    ("- prod\n", "names file must be a mapping"),
    ("", "names file is empty"),
    ("# only a comment\n", "names file is empty"),
    ("prod: [\n", "invalid YAML"),
    ("prod: [a]\n", "prod: expected a quoted account ID"),
], ids=["octal", "unquoted", "short", "role-arn", "public", "bad-name", "same-value",
        "duplicate-key", "list", "empty", "comment-only", "invalid", "list-value"])
def test_parse_names_errors(text: str, expected: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_names(text.encode(), "names.yaml")
    assert expected in str(exc.value)


# --------------------------------------------------------------------------- reading


def test_read_export_makes_only_the_read_calls_it_needs(aws: Images) -> None:
    import boto3
    from helpers import counted_clients, readme_policies

    from reconciler.shell.reader import Reader
    from reconciler.shell.sandbox import encrypt_image, set_image_state

    shared_ids = [(aws.create(f"golden-{i}", region=r, launch=[{"UserId": PROD}]), r)
                  for i in range(2) for r in (US, EU)]
    unshared = [aws.create(f"golden-unshared-{i}") for i in range(3)]
    aws.create("scratch", launch=[{"UserId": HAND}])  # filtered out: not even read
    disabled = aws.create("golden-old", launch=[{"UserId": PROD}])
    set_image_state(ACCOUNT, US, disabled, "disabled")
    key = boto3.client("kms", region_name=US).create_key()["KeyMetadata"]["Arn"]
    enc = aws.create("golden-enc", launch=[{"UserId": PROD}])
    encrypt_image(ACCOUNT, US, enc, key)

    clients, calls = counted_clients()
    identity, state = read_export(Reader(clients, 4), [EU, US, US], ImageFilter("golden-*"))
    assert dict(calls.by_op) == {
        "GetCallerIdentity": 1,
        "DescribeImages": 2,  # one per Region
        "DescribeImageAttribute": 4 + 3 + 1,  # available images passing the filter
        "DescribeSnapshots": 2,  # shared images' snapshots, batched per Region
        "DescribeSnapshotAttribute": 5,  # one per snapshot of a shared image
        "DescribeKey": 1, "GetKeyPolicy": 1, "ListAliases": 1,  # the one key in use
    }
    read, _ = readme_policies()
    service = {"GetCallerIdentity": "sts", "DescribeKey": "kms", "GetKeyPolicy": "kms",
               "ListAliases": "kms"}
    used = {f"{service.get(op, 'ec2')}:{op}" for op in calls.by_op}
    assert used <= read
    assert identity.account == ACCOUNT and state.regions == (EU, US)
    launch = {image_id: perms for (_, image_id), perms in state.launch.items()}
    # neither the disabled image nor the one outside the filter had its permissions read
    assert set(launch) == {i for i, _ in shared_ids} | set(unshared) | {enc}
    assert all(launch[i] == frozenset({P_PROD}) for i, _ in shared_ids)
    assert not any(launch[i] for i in unshared)
    listed = {img.image_id: img for found in state.images.values() for img in found}
    assert listed[disabled].state == "disabled" and "scratch" not in {
        img.name for img in listed.values()}, "the state holds only the images the filter keeps"
    with_copy = {i for i, img in listed.items()
                 if any((img.region, sid) in state.copy for sid in img.snapshot_ids)}
    assert with_copy == {i for i, _ in shared_ids} | {enc}
    result = compute_export(identity, state, image_filter=ImageFilter("golden-*"))
    not_listed = ("Not listed: 3 images shared with nobody and 1 disabled or otherwise "
                  "unavailable image.")
    assert not_listed in flat(result.text)
    assert not_listed in flat(compute_export(identity, state).text), \
        "the state alone holds what the filter kept: no unread image counts as unshared"
    # moto's default key policy does not let PROD use the key: the encrypted image is left out
    assert [lo.image.image_id for lo in result.left_out] == [enc]
    assert {i.image_id for i in result.exported} == {i for i, _ in shared_ids}


def test_read_export_reads_the_copy_permissions_of_older_builds_only(aws: Images) -> None:
    """A family shared for copy too may become a `latest` rule with `copy:`, which manages
    its older builds' snapshots: those are read, and no other unshared image's."""
    from helpers import counted_clients

    from reconciler.shell.reader import Reader

    ec2 = aws.client(US)

    def snapshot_of(image_id: str) -> str:
        (bdm,) = ec2.describe_images(ImageIds=[image_id])["Images"][0]["BlockDeviceMappings"]
        return str(bdm["Ebs"]["SnapshotId"])

    older = aws.create("golden-eks-2026.11.03")
    for name in ("golden-eks-2026.11.10", "golden-eks-2026.11.17"):
        ec2.modify_snapshot_attribute(SnapshotId=snapshot_of(aws.create(
            name, launch=[{"UserId": PROD}])), Attribute="createVolumePermission",
            OperationType="add", UserIds=[PROD])
    aws.create("scratch-2026.11.17")  # unshared, of no family shared for copy
    clients, calls = counted_clients()
    _, state = read_export(Reader(clients, 4), [US])
    assert calls.by_op["DescribeSnapshotAttribute"] == 2 + 1
    assert state.copy[(US, snapshot_of(older))] == frozenset()


# --------------------------------------------------------------------------- end to end

def launch_of(images: Images, image_id: str, region: str = US) -> list[dict[str, str]]:
    return images.launch(image_id, region)


@pytest.mark.e2e
def test_export_then_plan_reports_no_changes(server: tuple[MotoServer, Images], run_cli: Runner,
                                             tmp_path: Path) -> None:
    from reconciler.shell.sandbox import encrypt_image, make_aws_managed, set_image_state

    srv, images = server
    ec2 = srv.client("ec2")
    a = images.create("golden-1", launch=[{"UserId": PROD}, {"UserId": STAGING}])
    b = images.create("golden-2", launch=[{"UserId": STAGING}, {"UserId": PROD}])
    c = images.create("golden-1", region=EU, launch=[{"UserId": PROD}, {"UserId": STAGING}])
    d = images.create("org-wide", launch=[{"OrganizationArn": ORG}, {"OrganizationalUnitArn": OU}])
    e = images.create("base-public", launch=[{"Group": "all"}, {"UserId": PROD}])
    f = images.create("copyable", launch=[{"UserId": PROD}])
    f_snap = ec2.describe_images(ImageIds=[f])["Images"][0]["BlockDeviceMappings"][0]["Ebs"][
        "SnapshotId"]
    ec2.modify_snapshot_attribute(SnapshotId=f_snap, Attribute="createVolumePermission",
                                  OperationType="add", UserIds=[PROD])
    g = images.create("unshared")
    h = images.create("disabled", launch=[{"UserId": PROD}])
    set_image_state(ACCOUNT, US, h, "disabled")
    kms_client = srv.client("kms")
    root = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    ok_key = kms_client.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        root, {"Sid": "Prod", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"},
               "Action": "kms:*", "Resource": "*"}]}))["KeyMetadata"]["Arn"]
    i = images.create("encrypted-ok", launch=[{"UserId": PROD}])
    encrypt_image(ACCOUNT, US, i, ok_key)
    bad_key = kms_client.create_key(Policy=json.dumps({"Version": "2012-10-17",
                                                       "Statement": [root]}))["KeyMetadata"]
    kms_client.create_alias(AliasName="alias/golden-ebs", TargetKeyId=bad_key["KeyId"])
    j = images.create("encrypted-no-access", launch=[{"UserId": PROD}])
    encrypt_image(ACCOUNT, US, j, bad_key["Arn"])
    aws_key = kms_client.create_key()["KeyMetadata"]
    make_aws_managed(ACCOUNT, US, aws_key["KeyId"])
    k = images.create("legacy-aws-ebs", launch=[{"UserId": DEV}])
    encrypt_image(ACCOUNT, US, k, aws_key["Arn"])
    everything = [(x, US) for x in (a, b, d, e, f, g, h, i, j, k)] + [(c, EU)]
    before = {x: launch_of(images, x, r) for x, r in everything if x != h}

    out = tmp_path / "amis.yaml"
    r = run_cli("export", "--region", US, "--region", EU, "--out", str(out))
    assert r.code == 0, r.err
    assert r.out == ""
    assert "Exported 7 shared images in 5 rules" in r.err
    assert "Left out 2 shared images" in r.err and j in r.err and k in r.err
    text = out.read_text()
    # no schemas/ folder beside the output: no $schema line pointing at nothing
    assert text.splitlines()[0].startswith("# Editor help: the manifest's JSON Schema")
    m = parse(text)
    # golden-1 and golden-2 are one family by name: selected by it, not by their IDs
    family = next(r for r in m.rules if r.select.name is not None)
    assert (family.select.name, family.regions) == ("golden-*", (EU, US))
    assert rules_by_ids(m) == {
        frozenset(): (frozenset({P_PROD, P_STAGING}), None),
        frozenset({d}): (frozenset({P_ORG, P_OU}), None),
        frozenset({e}): (frozenset({P_PROD, PUBLIC}), None),
        frozenset({f}): (frozenset({P_PROD}), frozenset({P_PROD})),
        frozenset({i}): (frozenset({P_PROD}), None),
    }
    assert m.settings.allow_public and m.settings.prune and m.settings.regions == (EU, US)
    for unlisted in (g, h):
        assert unlisted not in text
    comments = flat(text)
    assert f"{j} in {US} (encrypted-no-access), shared with {PROD}:" in comments
    assert "(alias/golden-ebs) does not let 111122223333 use it" in comments
    assert f"{k} in {US} (legacy-aws-ebs), shared with {DEV}:" in comments
    assert "AWS managed key (aws/ebs)" in comments

    r = run_cli("validate", str(out))
    assert r.code == 0, r.err
    r = run_cli("plan", str(out), "--detailed-exitcode")
    assert r.code == 0, r.out + r.err
    assert "as declared on 7 managed images" in r.out
    assert "error[" not in r.out and "warning[" not in r.out
    # export and plan wrote nothing
    assert {x: launch_of(images, x, r_) for x, r_ in everything if x != h} == before

    # the exported manifest really manages the images: drift on one is caught
    ec2.modify_image_attribute(ImageId=b, Attribute="launchPermission",
                               LaunchPermission={"Add": [{"UserId": HAND}]})
    r = run_cli("plan", str(out), "--detailed-exitcode", "--format", "json")
    assert r.code == 2
    ops = json.loads(r.out)["operations"]
    assert [(o["action"], o["resource"], o["principal"]) for o in ops] == [
        ("remove", b, {"UserId": HAND})]


@pytest.mark.e2e
def test_export_to_stdout_is_deterministic_with_names_and_filters(
        server: tuple[MotoServer, Images], run_cli: Runner, tmp_path: Path) -> None:
    _, images = server
    a = images.create("golden-1", tags={"channel": "stable"}, launch=[{"UserId": PROD}])
    b = images.create("golden-2", tags={"channel": "candidate"}, launch=[{"UserId": STAGING}])
    c = images.create("scratch-1", tags={"channel": "stable"}, launch=[{"UserId": HAND}])
    names = tmp_path / "names.yaml"
    names.write_text(f'prod: "{PROD}"\nstaging: "{STAGING}"\n')

    first = run_cli("export", "--names", str(names))
    second = run_cli("export", "--names", str(names), "--concurrency", "1")
    assert first.code == second.code == 0, first.err
    assert first.out == second.out
    m = parse(first.out)
    assert rules_by_ids(m) == {frozenset({a}): (frozenset({P_PROD}), None),
                               frozenset({b}): (frozenset({P_STAGING}), None),
                               frozenset({c}): (frozenset({P_HAND}), None)}
    assert "launch: [prod]" in first.out and f"account-{HAND}" in first.out

    r = run_cli("export", "--name-glob", "golden-*", "--tag", "channel=stable", "--quiet")
    assert r.code == 0 and r.err == ""
    assert rules_by_ids(parse(r.out)) == {frozenset({a}): (frozenset({P_PROD}), None)}
    out = tmp_path / "stable.yaml"
    out.write_text(r.out)
    r = run_cli("plan", str(out), "--detailed-exitcode")
    assert r.code == 0 and "as declared on 1 managed image" in r.out


@pytest.mark.e2e
def test_export_region_defaults_to_the_session_region(server: tuple[MotoServer, Images],
                                                      run_cli: Runner) -> None:
    _, images = server
    images.create("east", launch=[{"UserId": PROD}])
    west = images.create("west", region=EU, launch=[{"UserId": PROD}])
    r = run_cli("export", env={"AWS_DEFAULT_REGION": EU})
    assert r.code == 0, r.err
    m = parse(r.out)
    assert m.settings.regions == (EU,) and rules_by_ids(m) == {
        frozenset({west}): (frozenset({P_PROD}), None)}


@pytest.mark.e2e
@pytest.mark.parametrize(("args", "names", "expected"), [
    (["--names", "names.yaml"], "prod: 111122223333\n", "names.yaml:1:7: prod: 111122223333 "
                                                        "was read by YAML as a number"),
    (["--names", "missing.yaml"], None, "missing.yaml:1:1: names file not found"),
    (["--tag", "channel"], None, "--tag 'channel' must be KEY=VALUE"),
    (["--region", "mars"], None, "not a valid AWS Region"),
    (["--bogus"], None, "No such option"),
], ids=["unquoted-name", "missing-names", "bad-tag", "bad-region", "unknown-option"])
def test_export_input_errors_make_no_aws_call(run_cli: Runner, tmp_path: Path, no_aws,
                                              args: list[str], names: str | None,
                                              expected: str) -> None:
    if names is not None:
        (tmp_path / "names.yaml").write_text(names)
    r = run_cli("export", *args, "--out", "out.yaml", endpoint=no_aws.url, cwd=tmp_path)
    assert r.code == 1, (r.out, r.err)
    assert expected in r.err and "Traceback" not in r.err
    assert not (tmp_path / "out.yaml").exists()
    assert no_aws.count == 0


@pytest.mark.e2e
def test_export_help_has_an_example(run_cli: Runner) -> None:
    r = run_cli("export", "--help")
    assert r.code == 0 and "Example" in r.out and "reconcile export" in r.out
    for flag in ("--out", "--names", "--name-glob", "--tag", "--region", "--sandbox"):
        assert flag in r.out


@pytest.mark.e2e
def test_sandbox_export_round_trip(run_cli: Runner, tmp_path: Path, no_aws) -> None:
    state = str(EXAMPLES / "sandbox.yaml")
    out = tmp_path / "amis.yaml"
    r = run_cli("export", "--sandbox", state, "--region", US, "--region", EU, "--out", str(out),
                endpoint=no_aws.url)
    assert r.code == 0, r.err
    text = out.read_text()
    m = parse(text)
    assert rules_by_ids(m) == {
        frozenset({"ami-0a11c0de000000001"}): (frozenset({P_PROD, P_HAND}), None),
        frozenset({"ami-0b0bde0000000c0de"}): (frozenset({Principal.account("5" * 12)}), None),
        # the same principal set (public), so one rule for both
        frozenset({"ami-0a11c0de000000002", "ami-0ba5e0000000c0de1"}): (frozenset({PUBLIC}), None),
    }
    assert m.settings.allow_public
    # encrypted with golden-ebs, whose policy does not let 111122223333 use it: left out
    comments = flat(text)
    assert "ami-0e1c0de0000000001 in us-east-1 (golden-al2023-encrypted-2026.11.1)" in comments
    assert "(alias/golden-ebs) does not let 111122223333 use it" in comments
    # disabled, and unshared (the aws/ebs one among them): not listed at all
    for absent in ("ami-0d15ab1ed00000001", "ami-0a3eb5000000c0de1"):
        assert absent not in text

    r = run_cli("plan", str(out), "--sandbox", state, "--detailed-exitcode", endpoint=no_aws.url)
    assert r.code == 0, r.out + r.err
    assert "No changes: 5 permissions as declared on 4 managed images." in r.out
    assert no_aws.count == 0


def test_export_of_a_managed_estate_releases_nothing(tmp_path: Path) -> None:
    """Images a manifest manages carry its tag, and images the export did not read (other
    Regions) may carry it too: the exported manifest gets a name none of them carries, so
    its plan changes nothing and releases nothing, even in a file of the old name."""
    from helpers import run_main

    applied = str(tmp_path / "applied.yaml")
    manifest = tmp_path / "amis.yaml"
    manifest.write_text((EXAMPLES / "manifest.yaml").read_text().replace(
        "name: golden-amis ", "name: amis "))
    r = run_main("apply", str(manifest), "--sandbox", str(EXAMPLES / "sandbox.yaml"),
                 "--auto-approve", "--sandbox-save", applied)
    assert r.code == 0, r.out + r.err
    for out, name in ((manifest, "amis-export"), (tmp_path / "exported.yaml", "exported")):
        r = run_main("export", "--sandbox", applied, "--region", US, "--out", str(out))
        assert r.code == 0 and "Exported 5 shared images" in r.err, r.err
        assert parse_manifest(out.read_bytes(), str(out)).settings.name == name
        r = run_main("plan", str(out), "--sandbox", applied, "--detailed-exitcode")
        assert r.code == 0, r.out + r.err
        assert "no longer matched" not in r.out, "the eu-west-1 image (not read) is not released"
        assert "warning[other-manifest]" in r.out + r.err


def test_export_never_takes_a_name_that_would_release_a_left_out_image(tmp_path: Path) -> None:
    """A shared image the export leaves out carries the tag too: a manifest of that name
    would release it and revoke its shares, so the export names the manifest otherwise."""
    from helpers import run_main

    closed = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*", "Resource": "*"}]}
    tag = {"reconciler:manifest": "amis"}
    state = tmp_path / "state.yaml"
    state.write_text(yaml.safe_dump({"version": 1, "account": ACCOUNT,
                                     "keys": [{"name": "closed", "region": US, "policy": closed}],
                                     "images": [
        {"region": US, "name": "golden-1", "tags": tag, "launch": [PROD]},
        {"region": US, "name": "golden-2", "tags": tag, "launch": [PROD],
         "encrypted_with": "closed"}]}))
    out = tmp_path / "amis.yaml"
    r = run_main("export", "--sandbox", str(state), "--region", US, "--out", str(out))
    assert r.code == 0 and "Left out 1 shared image" in r.err, r.err
    assert parse(out.read_text()).settings.name == "amis-export"
    r = run_main("plan", str(out), "--sandbox", str(state), "--detailed-exitcode")
    assert r.code == 0, r.out + r.err
    assert "no longer matched" not in r.out, "golden-2 keeps its share"
    assert "warning[other-manifest]" in r.err + r.out, "golden-1 changes hands: said so"


@pytest.mark.e2e
def test_sandbox_export_leaves_out_an_image_on_the_aws_managed_key(
        run_cli: Runner, tmp_path: Path, no_aws) -> None:
    # The example's aws/ebs image is not shared; here someone shared it anyway (AWS refuses
    # that today, but older shares and emulators exist): exporting a rule for it would make
    # plan fail with the blocking aws-managed-key error, so it is left out with the reason.
    state = tmp_path / "state.yaml"
    original = (EXAMPLES / "sandbox.yaml").read_text()
    marker = "    encrypted_with: aws/ebs"
    assert marker in original
    state.write_text(original.replace(marker, marker + '\n    launch: ["444455556666"]', 1))
    out = tmp_path / "amis.yaml"
    r = run_cli("export", "--sandbox", str(state), "--region", US, "--region", EU,
                "--out", str(out), endpoint=no_aws.url)
    assert r.code == 0, r.err
    assert "Left out 2 shared images" in r.err and "ami-0a3eb5000000c0de1" in r.err
    text = out.read_text()
    assert "ami-0a3eb5000000c0de1" not in {i for rule in parse(text).rules for i in rule.select.ids}
    comments = flat(text)
    assert ("ami-0a3eb5000000c0de1 in us-east-1 (legacy-windows-2022-2026.02), shared with "
            "444455556666:") in comments
    assert "it is the AWS managed key (aws/ebs)" in comments and "copy-image" in comments
    r = run_cli("plan", str(out), "--sandbox", str(state), "--detailed-exitcode",
                endpoint=no_aws.url)
    assert r.code == 0, r.out + r.err
    assert "No changes:" in r.out
    # a rule for it would be the blocking error the export avoided
    bad = tmp_path / "with-rule.yaml"
    bad.write_text(text.replace("images:\n", "images:\n  - name: legacy\n    select: {ids: "
                                             "[ami-0a3eb5000000c0de1]}\n    regions: [us-east-1]\n"
                                             '    launch: ["444455556666"]\n', 1))
    r = run_cli("plan", str(bad), "--sandbox", str(state), "--format", "json", endpoint=no_aws.url)
    assert r.code == 1
    assert [f["code"] for f in json.loads(r.out)["findings"]] == ["aws-managed-key"]
    assert no_aws.count == 0


def test_names_can_come_from_a_manifest() -> None:
    """`export --names amis.yaml` with the team's manifest: its `principals:` name things."""
    text = (EXAMPLES / "manifest.yaml").read_bytes()
    names = parse_names(text, "manifest.yaml")
    assert names["111122223333"] == "prod"
    assert names[OU] == "analytics-ou"
    bad = b'version: 1\nprincipals:\n  prod: 111122223333\nimages: []\n'
    with pytest.raises(InputError) as exc:
        parse_names(bad, "m.yaml")
    assert "m.yaml:3:9: prod: 111122223333 was read by YAML as a number" in str(exc.value)


def test_a_family_of_images_is_exported_as_a_name_glob() -> None:
    """Images of one set of shares named as one family become one readable rule selecting
    by name; the round trip still plans no change (``export`` re-plans it)."""
    a = image(1, name="golden-al2023-2026.11.1")
    b = image(2, name="golden-al2023-2026.12.1")
    c = image(3, EU, name="golden-al2023-2026.12.1")
    other = image(4, name="base-minimal-2026.10")
    result = export([shared(a, P_PROD), shared(b, P_PROD), shared(c, P_PROD),
                     shared(other, P_STAGING)], regions=[US, EU])
    m = parse(result.text)
    family = next(r for r in m.rules if r.select.name is not None)
    assert family.name == "golden-al2023-2026" and family.select.name == "golden-al2023-2026.*"
    assert family.select.ids == () and family.regions == (EU, US)
    assert "# today: " in result.text and a.image_id in result.text
    assert "A rule with a name glob shares each new build that matches it" in flat(result.text)


def test_no_name_glob_when_it_would_match_another_image() -> None:
    a = image(1, name="golden-al2023-2026.11.1")
    b = image(2, name="golden-al2023-2026.12.1")
    unshared = image(3, name="golden-al2023-2026.10.1")  # read, not shared: must stay unmanaged
    result = export([shared(a, P_PROD), shared(b, P_PROD), shared(unshared)])
    assert all(r.select.name is None for r in parse(result.text).rules)
    assert "Rules select images by ID, so a new image is not shared" in flat(result.text)
    filtered = export([shared(a, P_PROD), shared(b, P_PROD)],
                      image_filter=ImageFilter("golden-*", ()))
    assert all(r.select.name is None for r in parse(filtered.text).rules), \
        "with a filter, images outside it were not read: a glob could reach them"


def test_schema_line_points_at_a_file_that_exists(tmp_path: Path) -> None:
    from reconciler.shell.inputs import schema_ref_for

    assert schema_ref_for(str(tmp_path / "amis.yaml")) is None
    no_line = compute_export(IDENTITY, gathered([shared(image(1), P_PROD)]), schema_ref=None).text
    assert "$schema" not in no_line.splitlines()[0]
    assert "reconciler/schemas/manifest.schema.json" in no_line
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "manifest.schema.json").write_text("{}")
    assert schema_ref_for(str(tmp_path / "amis.yaml")) == "./schemas/manifest.schema.json"
    (tmp_path / "infra").mkdir()
    assert schema_ref_for(str(tmp_path / "infra" / "amis.yaml")) == \
        "../schemas/manifest.schema.json"


def build(n: int, day: str, region: str = US, name: str | None = None,
          state: str = "available") -> Image:
    return replace(image(n, region, name=name or f"golden-eks-node-2026.{day}", state=state),
                   creation_date=f"2026-{day.replace('.', '-')}T06:00:00.000Z")


def test_the_newest_builds_of_a_family_are_exported_with_latest() -> None:
    """The two newest builds are shared, the older ones with nobody: ``latest: 2`` over the
    family's name reproduces that exactly, and next week's build is shared without an edit."""
    old, older = build(1, "11.03"), build(2, "10.27")
    new, newer = build(3, "11.10"), build(4, "11.17")
    eu_old, eu_new, eu_newer = build(5, "11.03", EU), build(6, "11.10", EU), build(7, "11.17", EU)
    images = [shared(old), shared(older), shared(new, P_PROD), shared(newer, P_PROD),
              shared(eu_old), shared(eu_new, P_PROD), shared(eu_newer, P_PROD)]
    result = export(images, regions=[US, EU])
    (rule,) = parse(result.text).rules
    assert (rule.name, rule.select.name, rule.select.latest) == \
        ("golden-eks-node", "golden-eks-node-20*", 2)
    assert "latest: 2  # the newest by CreationDate, per Region; today: " in result.text
    # the rule manages the older builds and shares nothing with them, as today
    plan = replan(result.text, images)
    assert plan.summary.images == 7 and plan.operations == ()
    # next week's build arrives: it is shared, and the build that fell out is unshared
    arrived = build(8, "11.24")
    plan = replan(result.text, [*images, shared(arrived)])
    assert {(o.action.value, o.resource) for o in plan.operations} == {
        ("add", arrived.image_id), ("remove", new.image_id)}
    # a build of another family (or another version of this one) never matches the glob
    for other in ("golden-eks-node-gpu-2026.11.30", "golden-eks-node-1.31-2026.11.30"):
        plan = replan(result.text, [*images, shared(build(9, "11.30", name=other))])
        assert plan.operations == (), other


def test_a_version_in_the_family_name_stays_in_the_glob() -> None:
    """golden-eks-1.29-… builds are exported as golden-eks-1.29-20*: the 1.30 builds that
    arrive later are another family, never shared by this rule."""
    old = build(1, "09.01", name="golden-eks-1.29-2026.09.01")
    a = build(2, "10.27", name="golden-eks-1.29-2026.10.27")
    b = build(3, "11.03", name="golden-eks-1.29-2026.11.03")
    images = [shared(old), shared(a, P_PROD), shared(b, P_PROD)]
    (rule,) = parse(export(images).text).rules
    assert (rule.name, rule.select.name, rule.select.latest) == \
        ("golden-eks-1.29", "golden-eks-1.29-20*", 2)
    newer = build(4, "12.01", name="golden-eks-1.30-2026.12.01")
    assert replan(export(images).text, [*images, shared(newer)]).operations == ()


def with_snapshot(img: Image, *launch: Principal, copy: frozenset[Principal] | None = None,
                  ) -> SharedImage:
    """``img`` backed by one snapshot, ``snap-<image number>``; ``copy``: its copy
    permissions as read (None: not read)."""
    sid = f"snap-{int(img.image_id[4:], 16)}"
    return shared(replace(img, snapshot_ids=(sid,)), *launch,
                  copy=None if copy is None else {sid: copy})


SNAPSHOTS = {(r, f"snap-{n}"): snapshot(f"snap-{n}", r) for n in range(1, 10) for r in (US, EU)}


def test_a_family_shared_for_copy_too_is_exported_with_latest() -> None:
    """The newest builds are shared for launch and copy, the older ones (their snapshots
    read) with nobody: ``latest: 2`` with ``copy:`` reproduces that, and next week's build
    gets both without an edit (issue 24: it used to be an ids rule)."""
    old = with_snapshot(build(1, "11.03"), copy=frozenset())
    new = with_snapshot(build(2, "11.10"), P_PROD, copy=frozenset({P_PROD}))
    newer = with_snapshot(build(3, "11.17"), P_PROD, copy=frozenset({P_PROD}))
    images = [old, new, newer]
    result = export(images, snapshots=SNAPSHOTS)
    (rule,) = parse(result.text).rules
    assert (rule.name, rule.select.name, rule.select.latest, rule.select.ids) == \
        ("golden-eks-node", "golden-eks-node-20*", 2, ())
    assert rule.copy == (P_PROD,) and rule.launch == (P_PROD,)
    plan = replan(result.text, images, SNAPSHOTS)
    assert plan.summary.images == 3 and plan.operations == () and plan.errors == ()
    arrived = with_snapshot(build(4, "11.24"), copy=frozenset())
    plan = replan(result.text, [*images, arrived], SNAPSHOTS)
    assert {(o.action.value, o.kind.value, o.resource) for o in plan.operations} == {
        ("add", "launch_permission", arrived.image.image_id),
        ("add", "create_volume_permission", "snap-4"),
        ("remove", "launch_permission", new.image.image_id),
        ("remove", "create_volume_permission", "snap-2")}


@pytest.mark.parametrize("why", ["older build shared", "newer build unshared", "older disabled",
                                 "undated", "older build shared for copy",
                                 "older build's copy not read", "other counts per region"])
def test_latest_is_written_only_when_it_reproduces_today(why: str) -> None:
    old, new, newer = build(1, "11.03"), build(2, "11.10"), build(3, "11.17")
    images = [shared(old), shared(new, P_PROD), shared(newer, P_PROD)]
    if why == "older build shared":
        images[0] = shared(old, P_STAGING)
    elif why == "newer build unshared":
        images.append(shared(build(4, "11.24")))
    elif why == "older disabled":
        images[0] = shared(replace(old, state="disabled"))
    elif why == "undated":
        images[0] = shared(replace(old, creation_date=""))
    elif why.startswith("older build"):  # the newest are shared for copy too
        images = [with_snapshot(old, copy=frozenset({P_STAGING}) if "for copy" in why else None),
                  *(with_snapshot(i, P_PROD, copy=frozenset({P_PROD})) for i in (new, newer))]
    else:
        images += [shared(build(5, "11.03", EU)), shared(build(6, "11.17", EU), P_PROD)]
    result = export(images, regions=[US, EU], snapshots=SNAPSHOTS)
    assert all(r.select.latest is None for r in parse(result.text).rules), result.text
    assert {new.key, newer.key} <= {i.key for i in result.exported}
