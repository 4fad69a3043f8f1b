"""``reconcile verify`` (SPEC §7e, README "Check from the consumer's side"): every declared
consumer that cannot launch a declared image, and why, as that account itself sees it.

End to end against the moto server with the consumer's view emulated (``consumer_view``): a
share removed by hand, an Allowed AMIs setting that excludes the owner, a key that does not
let the consumer in, a role that cannot be assumed, an OU member named with ``--account``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from builders import key_policy
from consumer_view import TEMPLATE, ConsumerView
from helpers import (
    ACCOUNT,
    DEV,
    HAND,
    OU,
    PROD,
    STAGING,
    Images,
    MotoServer,
    Runner,
    manifest_yaml,
)

from reconciler.core.model import Principal
from reconciler.core.pacing import Rate
from reconciler.core.verify import (
    Seen,
    autoscaling_role,
    role_for,
)
from reconciler.shell.consumer import ConsumerReader, consumer_clients
from reconciler.shell.sandbox import encrypt_image
from reconciler.shell.session import RunOptions

OUTSIDER = "999900001111"  # an account the OU share does not reach
ORG_ID = "o-a1b2c3d4e5"


def make_key(srv: MotoServer, *grantees: str, foreign: tuple[dict[str, Any], ...] = ()) -> str:
    policy = key_policy(*(Principal.account(g) for g in grantees), foreign=foreign)
    return str(srv.client("kms").create_key(Policy=json.dumps(policy))["KeyMetadata"]["Arn"])


def write(tmp_path: Path, rules: str, **principals: str) -> str:
    m = tmp_path / "amis.yaml"
    m.write_text(manifest_yaml(rules, principals=principals))
    return str(m)


def by_pair(out: str) -> dict[tuple[str, str], str]:
    """Each verdict line by (account, image)."""
    return {(line.split()[0], next(w for w in line.split() if w.startswith("ami-"))): line
            for line in out.splitlines()}


@pytest.fixture
def estate(server: tuple[MotoServer, Images], consumers: ConsumerView,
           tmp_path: Path) -> dict[str, str]:
    """Images shared as declared, then broken where only the consumers can see it."""
    srv, images = server
    consumers.roles |= {PROD, STAGING, DEV}  # HAND has no verify role
    plain = images.create("golden-plain", launch=[{"UserId": PROD}, {"UserId": STAGING},
                                                  {"UserId": HAND}])
    removed = images.create("golden-removed", launch=[{"UserId": STAGING}])  # PROD's removed
    enc = images.create("golden-enc", launch=[{"UserId": PROD}, {"UserId": DEV}])
    encrypt_image(ACCOUNT, "us-east-1", enc, make_key(srv, PROD))  # it lets only PROD in
    consumers.allowed_amis(STAGING, "enabled", {"ImageProviders": ["amazon"]})
    m = write(tmp_path, f"""\
- name: plain
  select: {{ids: [{plain}, {removed}]}}
  launch: [prod, staging, hand]
- name: enc
  select: {{ids: [{enc}]}}
  launch: [prod, dev]
""", prod=PROD, staging=STAGING, dev=DEV, hand=HAND)
    return {"manifest": m, "plain": plain, "removed": removed, "enc": enc}


def test_every_declared_consumer_that_cannot_launch_and_why(
        estate: dict[str, str], consumers: ConsumerView, run_cli: Runner) -> None:
    m, plain, removed, enc = estate["manifest"], estate["plain"], estate["removed"], estate["enc"]
    r = run_cli("verify", m, "--consumer-role", TEMPLATE)
    assert r.code == 1, r.out + r.err  # HAND's role cannot be assumed: an error
    got = by_pair(r.out)
    assert sorted(got) == sorted([(PROD, plain), (PROD, removed), (PROD, enc),
                                  (STAGING, plain), (STAGING, removed), (DEV, enc)])
    assert got[(PROD, plain)].startswith(f"{PROD} (prod) can launch {plain} (golden-plain) in "
                                         "us-east-1: it sees the image by ID")
    assert "can launch" in got[(PROD, enc)] and "lets it in (dry run)" in got[(PROD, enc)]
    # the share removed by hand
    assert "cannot launch" in got[(PROD, removed)]
    assert (f"the image is not shared with it (the owner shares it with {STAGING}): a share "
            "removed by hand?") in got[(PROD, removed)]
    # the Allowed AMIs setting that excludes the owner: what to add
    assert (f"its Allowed AMIs setting (enabled) does not allow it: criterion 1: its "
            f"ImageProviders (amazon) do not include the image's owner {ACCOUNT}; add {ACCOUNT} "
            "to ImageProviders") in got[(STAGING, plain)]
    # the key that does not let the consumer in
    assert (f"does not let account {DEV} in: kms:DescribeKey was refused (AccessDeniedException: "
            "because no resource-based policy allows the kms:DescribeKey action)") in got[(DEV, enc)]
    # the role that cannot be assumed: one line, and the others are still checked
    [error] = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: account {HAND}: cannot assume "
                            f"arn:aws:iam::{HAND}:role/ami-share-verify: ")
    assert "AccessDenied" in error

    r = run_cli("verify", m, "--consumer-role", TEMPLATE, "--account", PROD, "--account", STAGING,
                "--account", DEV, "--format", "json")
    assert r.code == 3, r.err  # no error left: 3, some cannot launch
    doc = json.loads(r.out)
    assert doc["format_version"] == 1 and doc["can_launch"] is False and doc["errors"] == []
    results = {(x["account"], x["image"]): x for x in doc["results"]}
    assert results[(DEV, enc)]["checks"]["keys"][0]["describe_key"] == "AccessDeniedException"
    assert results[(STAGING, plain)]["checks"]["allowed_amis"]["criteria"] == [
        {"providers": ["amazon"]}]
    assert results[(PROD, enc)]["checks"]["keys"][0]["dry_run"] == "DryRunOperationException"
    assert results[(PROD, removed)]["can_launch"] is False
    assert results[(PROD, removed)]["declared"] == {"principals": [{"UserId": PROD}],
                                                    "rules": ["plain"]}

    # apply restores what the owner can fix (the share, the key access); the consumer adds
    # the owner to its Allowed AMIs criteria
    assert run_cli("apply", m, "--auto-approve").code == 0
    consumers.allowed_amis(STAGING, "enabled", {"ImageProviders": ["amazon", ACCOUNT]})
    r = run_cli("verify", m, "--consumer-role", TEMPLATE, "--account", PROD, "--account", STAGING,
                "--account", DEV)
    assert r.code == 0, r.out + r.err
    assert len(r.out.splitlines()) == 6 and "cannot" not in r.out
    assert "(Allowed AMIs enabled)" in by_pair(r.out)[(STAGING, plain)]


def test_members_of_an_ou_are_checked_when_named(
        server: tuple[MotoServer, Images], consumers: ConsumerView, run_cli: Runner,
        tmp_path: Path) -> None:
    srv, images = server
    consumers.roles |= {PROD, DEV, OUTSIDER}
    consumers.member_of(DEV, OU)
    # a name anyone with ec2:RegisterImage chose: printed inert (SPEC §7d)
    team = images.create("golden-team\n::error::forged", launch=[{"OrganizationalUnitArn": OU}])
    other = images.create("golden-other", launch=[{"UserId": PROD}])
    m = write(tmp_path, f"""\
- name: team
  select: {{ids: [{team}]}}
  launch: [team]
- name: other
  select: {{ids: [{other}]}}
  launch: [prod]
""", team=OU, prod=PROD)
    # without --account an OU's members are unknown: only PROD is checked
    r = run_cli("verify", m, "--consumer-role", TEMPLATE)
    assert r.code == 0 and list(by_pair(r.out)) == [(PROD, other)], r.out + r.err
    r = run_cli("verify", m, "--consumer-role", TEMPLATE, "--account", DEV, "--account", OUTSIDER,
                "--image", team)
    assert r.code == 3, r.out + r.err
    got = by_pair(r.out)
    assert got[(DEV, team)].startswith(f"{DEV} (through team) can launch {team}")
    assert len(r.out.splitlines()) == 2 and "\n::" not in r.out
    assert (f"{OUTSIDER} (through team) cannot launch {team} (golden-team\\n::error::forged) "
            "in us-east-1: account "
            f"{OUTSIDER} does not see it (DescribeImages by ID): it is shared with {OU}, and the "
            "account is not in it") in got[(OUTSIDER, team)]


def test_audit_mode_an_explicit_deny_and_a_disabled_key(
        server: tuple[MotoServer, Images], consumers: ConsumerView, run_cli: Runner,
        tmp_path: Path) -> None:
    srv, images = server
    consumers.roles |= {PROD, DEV}
    consumers.member_of(DEV, f"arn:aws:organizations::{ACCOUNT}:organization/{ORG_ID}")
    consumers.allowed_amis(PROD, "audit-mode", {"ImageNames": ["base-*"]})
    outside_org = {"Sid": "DenyOutsideOrg", "Effect": "Deny", "Principal": "*",
                   "Action": "kms:*", "Resource": "*",
                   "Condition": {"StringNotEquals": {"aws:PrincipalOrgID": ORG_ID}}}
    guarded = images.create("golden-guarded", launch=[{"UserId": PROD}, {"UserId": DEV}])
    encrypt_image(ACCOUNT, "us-east-1", guarded, make_key(srv, PROD, DEV, foreign=(outside_org,)))
    off = images.create("golden-off", launch=[{"UserId": DEV}])
    key = make_key(srv, DEV)
    srv.client("kms").disable_key(KeyId=key.rsplit("/", 1)[1])
    encrypt_image(ACCOUNT, "us-east-1", off, key)
    m = write(tmp_path, f"""\
- name: guarded
  select: {{ids: [{guarded}]}}
  launch: [prod, dev]
- name: disabled-key
  select: {{ids: [{off}]}}
  launch: [dev]
""", prod=PROD, dev=DEV)
    r = run_cli("verify", m, "--consumer-role", TEMPLATE)
    assert r.code == 3, r.out + r.err
    got = by_pair(r.out)
    # PROD is outside the organization: the explicit Deny wins over the tool's Allow
    assert ("was refused (AccessDeniedException: with an explicit deny in a resource-based "
            "policy)") in got[(PROD, guarded)]
    assert "would hide it once enabled" in got[(PROD, guarded)]  # audit mode: a note only
    assert "can launch" in got[(DEV, guarded)]
    assert f"cannot launch {off}" in got[(DEV, off)] and "is Disabled" in got[(DEV, off)]


@pytest.mark.parametrize(("args", "said"), [
    (["--consumer-role", "arn:aws:iam::111122223333:role/verify"],
     ["--consumer-role 'arn:aws:iam::111122223333:role/verify' must contain {account} exactly "
      "once"]),
    (["--consumer-role", "arn:aws:iam::{account}:user/verify", "--account", "1234",
      "--account", DEV, "--image", "ami-12"],
     ["is not an IAM role ARN with {account} as its account",
      "--account '1234': account ID '1234' must be exactly 12 digits (it has 4)",
      f"--account {DEV}: amis.yaml declares no launch for it",
      "--image 'ami-12' is not an AMI ID"]),
    (["--consumer-role", TEMPLATE, "--sandbox", "state.yaml"],
     ["--sandbox: verify asks AWS from each consumer account"]),
    (["--consumer-role", TEMPLATE, "--strict"], ["--strict would be ignored"]),
    (["--consumer-role", "x", "--strict", "--sandbox", "s.yaml", "--account", "12"],
     ["--strict would be ignored", "--sandbox: verify asks AWS", "--consumer-role 'x' must",
      "--account '12': account ID '12' must be exactly 12 digits"]),
], ids=["no-placeholder", "one-line-each", "sandbox", "strict", "all-at-once"])
def test_bad_arguments_are_one_line_each_before_any_aws_call(
        run_cli: Runner, tmp_path: Path, no_aws: Any, args: list[str], said: list[str]) -> None:
    (tmp_path / "amis.yaml").write_text(manifest_yaml(
        "- name: r\n  select: {name: golden-*}\n  launch: [prod]", principals={"prod": PROD}))
    r = run_cli("verify", "amis.yaml", *args, endpoint=no_aws.url, cwd=tmp_path)
    assert r.code == 1 and r.out == "", r.err
    errors = r.err.splitlines()
    assert len(errors) == len(said), r.err
    for line, text in zip(errors, said, strict=True):
        assert text in line
    assert no_aws.count == 0


def test_the_help_offers_no_option_verify_refuses(run_cli: Runner) -> None:
    r = run_cli("verify", "--help")
    assert r.code == 0 and "--consumer-role" in r.out
    assert "--sandbox" not in r.out and "--strict" not in r.out, r.out


def test_an_image_or_account_that_names_nothing_to_check(
        server: tuple[MotoServer, Images], consumers: ConsumerView, run_cli: Runner,
        tmp_path: Path) -> None:
    _, images = server
    golden = images.create("golden-1", launch=[{"UserId": PROD}])
    m = write(tmp_path, "- name: r\n  select: {name: golden-*}\n  launch: [prod, ou]",
              prod=PROD, ou=OU)
    r = run_cli("verify", m, "--consumer-role", TEMPLATE, "--image", "ami-0123456789abcdef0",
                "--account", DEV)
    assert r.code == 1 and r.out == ""
    assert r.err.splitlines() == [  # DEV (an OU member) has no image once --image is applied
        f"error: --image ami-0123456789abcdef0: not a managed image of {m} in the Regions read",
        f"error: --account {DEV}: no managed image of {m} in the Regions read is declared for "
        "it"]
    r = run_cli("verify", m, "--consumer-role", TEMPLATE, "--image", golden)
    assert r.code == 1 and "AccessDenied" in r.err  # PROD has no verify role here


def test_each_consumer_account_is_paced_by_its_own_buckets(aws: Images,
                                                           consumers: ConsumerView) -> None:
    consumers.roles.add(PROD)
    golden = aws.create("golden-1", launch=[{"UserId": PROD}])
    options = RunOptions(api_rate_share=0.5)
    base = options.clients(boto3.Session(), "us-east-1")
    clients = consumer_clients(options, base, role_for(TEMPLATE, PROD),
                               {"GetAllowedImagesSettings": Rate(7, 7)})
    reader = ConsumerReader(clients)
    view = reader.view("us-east-1", [golden], [])
    assert view.images == {golden: Seen("available")} and view.allowed is not None
    assert clients.session.client("sts", region_name="us-east-1").get_caller_identity()[
        "Account"] == PROD
    assert clients.pacer is not base.pacer
    assert (clients.pacer.requests, base.pacer.requests) == (2, 0)
    assert clients.pacer.rate("ec2", "GetAllowedImagesSettings") == Rate(7, 7)  # api_rates
    assert clients.pacer.rate("ec2", "DescribeImages") == Rate(50, 10)  # the share of 100 / 20


def test_with_kms_grants_any_a_missing_auto_scaling_grant_is_noted(
        server: tuple[MotoServer, Images], consumers: ConsumerView, run_cli: Runner,
        tmp_path: Path) -> None:
    """EC2 Auto Scaling User Guide, "Required AWS KMS key policy for use with encrypted
    volumes": the consumer creates the grant for its Auto Scaling service-linked role; plain
    launches do not need it, so its absence is a note, not a refusal."""
    srv, images = server
    consumers.roles |= {PROD, DEV}
    enc = images.create("golden-enc", launch=[{"UserId": PROD}, {"UserId": DEV}])
    key = make_key(srv, PROD, DEV)
    encrypt_image(ACCOUNT, "us-east-1", enc, key)
    srv.client("kms").create_grant(KeyId=key, GranteePrincipal=autoscaling_role(PROD),
                                   Operations=["Decrypt", "CreateGrant"])
    m = tmp_path / "amis.yaml"
    m.write_text(manifest_yaml(f"- name: enc\n  select: {{ids: [{enc}]}}\n  launch: [prod, dev]",
                               principals={"prod": PROD, "dev": DEV}, settings="kms_grants: any"))
    r = run_cli("verify", str(m), "--consumer-role", TEMPLATE)
    assert r.code == 0, r.out + r.err
    got = by_pair(r.out)
    assert "Auto Scaling" not in got[(PROD, enc)]
    assert got[(DEV, enc)].endswith(f"; Auto Scaling launches fail: no grant on key {key} for "
                                    f"{autoscaling_role(DEV)} (the account creates it: aws kms "
                                    "create-grant, see README, \"settings.kms_grants\")")
