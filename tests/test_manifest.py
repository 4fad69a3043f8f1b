"""Manifest validation (reconciler.core.manifest.parse_manifest): the valid example and a corpus of
bad manifests, each error located (file:line:) and naming the offending value on one line."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import ORG, OU, PROD, STAGING

from reconciler.core.errors import InputError
from reconciler.core.manifest import Manifest, Settings, parse_manifest
from reconciler.core.model import Principal, PrincipalKind

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "manifest.yaml"



def parse(text: str) -> Manifest:
    return parse_manifest(textwrap.dedent(text).encode(), "m.yaml")


def errors_of(text: str | bytes) -> InputError:
    raw = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    with pytest.raises(InputError) as info:
        parse_manifest(raw, "m.yaml")
    err = info.value
    assert err.problems, "InputError without problems"
    for p in err.problems:
        assert p.file == "m.yaml"
        assert "\n" not in p.message, f"multi-line message: {p.message!r}"
    assert str(err) == "\n".join(str(p) for p in err.problems)
    return err


# --------------------------------------------------------------------------- the valid example


def test_example_manifest_loads():
    raw = EXAMPLE.read_bytes()
    m = parse_manifest(raw, "m.yaml")
    assert m.path == "m.yaml"
    assert m.sha256 == hashlib.sha256(raw).hexdigest()
    assert m.settings == Settings(regions=("us-east-1", "eu-west-1"), prune=True,
                                  allow_public=True, kms="key-policy", max_removals=25,
                                  share_quota=1000, role_arn=None, name="golden-amis")
    assert m.owners == ()
    assert dict(m.principals) == {
        "analytics-ou": Principal(PrincipalKind.OU, OU),
        "prod": Principal.account(PROD),
        "staging": Principal.account(STAGING),
        "whole-org": Principal(PrincipalKind.ORGANIZATION, ORG),
    }
    assert [name for name, _ in m.principals] == sorted(dict(m.principals))
    assert m.regions == ("eu-west-1", "us-east-1")

    # Every rule, resolved independently from the raw YAML: names -> canonical principals.
    raw_doc = yaml.safe_load(raw)
    names = dict(m.principals)

    def resolve(ref: str) -> Principal:
        return Principal.public() if ref == "public" else names[ref] if ref in names else \
            Principal.parse_literal(ref)

    text_lines = raw.decode().splitlines()
    assert [r.name for r in m.rules] == [r["name"] for r in raw_doc["images"]]
    for rule, src in zip(m.rules, raw_doc["images"], strict=True):
        assert rule.regions == tuple(src.get("regions") or raw_doc["settings"]["regions"])
        assert rule.launch == tuple(dict.fromkeys(resolve(x) for x in src.get("launch", [])))
        assert rule.copy == tuple(dict.fromkeys(resolve(x) for x in src.get("copy", [])))
        assert rule.manages_copy == ("copy" in src)
        assert rule.select.ids == tuple(src["select"].get("ids", ()))
        assert rule.select.name == src["select"].get("name")
        assert rule.select.tags == tuple(sorted(src["select"].get("tags", {}).items()))
        assert f"- name: {rule.name}" in text_lines[rule.line - 1]
        assert all(isinstance(p, Principal) for p in rule.launch + rule.copy)

    rules = {r.name: r for r in m.rules}
    stable = rules["golden-al2023-stable"]
    assert stable.select.name.startswith("golden-al2023-")
    assert stable.select.tags == (("channel", "stable"),)
    assert stable.select.by_attributes
    assert stable.regions == ("us-east-1", "eu-west-1")  # from settings.regions
    assert stable.launch == (Principal.account(PROD), Principal.account(STAGING),
                             Principal(PrincipalKind.OU, OU))
    assert rules["legacy-ubuntu"].launch == (Principal(PrincipalKind.ORGANIZATION, ORG),)
    public_rule = rules["base-minimal-public"]
    assert public_rule.select.ids == ("ami-0ba5e0000000c0de1",)
    assert not public_rule.select.by_attributes
    assert public_rule.regions == ("us-east-1",)
    assert public_rule.launch == (Principal.public(), Principal(PrincipalKind.ORGANIZATION, ORG))

    assert m.name_of(Principal.account(PROD)) == "prod"
    assert m.name_of(Principal(PrincipalKind.OU, OU)) == "analytics-ou"
    assert m.name_of(Principal.account("999999999999")) is None


def test_defaults_when_settings_omitted():
    m = parse("""\
        version: 1
        settings: {name: m}
        images:
          - name: r
            select: {name: "x-*"}
            launch: ["111122223333"]
            copy: []
    """)
    assert m.settings == Settings(name="m")
    assert m.settings.regions == ("us-east-1",)
    assert m.principals == ()
    (rule,) = m.rules
    assert rule.regions == ("us-east-1",)
    assert rule.launch == (Principal.account(PROD),)
    assert rule.copy == ()
    assert rule.manages_copy  # `copy:` present, even empty: snapshot permissions are managed


def test_owners_parsed():
    m = parse("""\
        version: 1
        settings: {name: m}
        owners:
          - {role_arn: "arn:aws:iam::123456789012:role/ami-share", regions: [eu-west-1]}
          - role_arn: "arn:aws:iam::210987654321:role/factory"
        images: []
    """)
    assert [(o.role_arn, o.regions) for o in m.owners] == [
        ("arn:aws:iam::123456789012:role/ami-share", ("eu-west-1",)),
        ("arn:aws:iam::210987654321:role/factory", ()),
    ]
    assert m.rules == ()


def test_alias_and_literal_for_same_account_are_deduplicated():
    m = parse(f"""\
        version: 1
        settings: {{name: m, share_quota: 3}}
        principals:
          prod: "{PROD}"
          prod-again: "{PROD}"
          org: "{ORG}"
        images:
          - name: r
            select: {{name: "x-*"}}
            launch: [prod, "{PROD}", prod-again, org, "{ORG}", "{STAGING}"]
            copy: [prod, "{PROD}"]
    """)
    (rule,) = m.rules
    # canonical comparison: 3 distinct principals, within share_quota 3
    assert rule.launch == (Principal.account(PROD), Principal(PrincipalKind.ORGANIZATION, ORG),
                           Principal.account(STAGING))
    assert rule.copy == (Principal.account(PROD),)
    # several names for one principal: the alphabetically first one is used for display
    assert m.name_of(Principal.account(PROD)) == "prod"


def test_alias_and_literal_count_once_against_share_quota():
    m = parse(f"""\
        version: 1
        settings: {{name: m, share_quota: 1}}
        principals: {{prod: "{PROD}"}}
        images:
          - name: a
            select: {{ids: [ami-12345678]}}
            launch: [prod]
          - name: b
            select: {{ids: [ami-12345678]}}
            launch: ["{PROD}"]
    """)
    assert [r.launch for r in m.rules] == [(Principal.account(PROD),)] * 2


def test_public_allowed_with_opt_in_and_not_counted_against_quota():
    m = parse(f"""\
        version: 1
        settings: {{name: m, allow_public: true, share_quota: 1}}
        images:
          - name: r
            select: {{name: "x-*"}}
            launch: [public, "{PROD}"]
            copy: [public]
    """)
    (rule,) = m.rules
    assert rule.launch == (Principal.public(), Principal.account(PROD))
    assert rule.copy == (Principal.public(),)


def test_unquoted_non_octal_leading_zero_id_stays_a_string():
    # 0[0-7]+ is octal to YAML 1.1; with an 8 or 9 in it, it is a plain string
    m = parse("""\
        version: 1
        settings: {name: m}
        images:
          - name: r
            select: {name: "x-*"}
            launch: [012345678901]
    """)
    assert m.rules[0].launch == (Principal.account("012345678901"),)


def test_merge_key_template_for_selectors():
    m = parse(f"""\
        version: 1
        settings: {{name: m}}
        images:
          - name: a
            select: &sel {{name: "golden-*"}}
            launch: ["{PROD}"]
          - name: b
            select:
              <<: *sel
              tags: {{channel: stable}}
            launch: ["{STAGING}"]
    """)
    assert m.rules[1].select.name == "golden-*"
    assert m.rules[1].select.tags == (("channel", "stable"),)


def test_merge_key_rule_template_with_override():
    m = parse(f"""\
        version: 1
        settings: {{name: m}}
        images:
          - &base
            name: a
            select: {{name: "golden-*"}}
            launch: ["{PROD}"]
          - <<: *base
            name: b
    """)
    assert [(r.name, r.select.name, r.launch) for r in m.rules] == [
        ("a", "golden-*", (Principal.account(PROD),)),
        ("b", "golden-*", (Principal.account(PROD),)),
    ]


def test_sha256_is_of_raw_bytes():
    a = b"version: 1\nsettings: {name: m}\nimages: []\n"
    b = b"version: 1\nsettings: {name: m}\nimages: []  # comment\n"
    assert parse_manifest(a, "m.yaml").sha256 == hashlib.sha256(a).hexdigest()
    assert parse_manifest(a, "m.yaml").sha256 != parse_manifest(b, "m.yaml").sha256


# --------------------------------------------------------------------------- the bad corpus

H = f"""\
version: 1
principals:
  prod: "{PROD}"
  staging: "{STAGING}"
  org: "{ORG}"
images:
"""  # rules start on line 7
R = H + '  - name: r\n    select: {name: "x-*"}\n'  # the rule's next key is on line 9
V = "version: 1\n"
VR = V + 'images:\n  - name: r\n    select: {name: "x-*"}\n'  # the rule's next key: line 5
EMPTY = "images: []\n"
NAMED = "settings: {name: m}\n"  # put first, the lines of what follows move down by one
ORG_TYPO = "arn:aws:organizations::123456789012:organisation/o-a1b2c3d4e5"
BAD_OU = "arn:aws:organizations::123456789012:ou/o-a1b2c3d4e5/ab12"
SAME_ID_RULES = ('  - name: a\n    select: {ids: [ami-12345678]}\n    launch: ["111122223333"]\n'
                 '  - name: b\n    select: {ids: [ami-12345678]}\n    launch: ["444455556666"]\n')

BAD = [
    # (id, manifest text, expected line, fragments that must appear in that line's message)
    ("duplicate-key",
     V + 'principals:\n  prod: "111122223333"\n  prod: "444455556666"\n' + EMPTY,
     4, ["duplicate key 'prod'"]),
    ("duplicate-top-level-key", V + EMPTY + V, 3, ["duplicate key 'version'"]),
    ("non-string-principal-name", V + 'principals:\n  yes: "111122223333"\n' + EMPTY,
     3, ["mapping key 'yes' was read by YAML as bool", 'quote it: "yes"']),
    ("octal-account-launch", R + "    launch: [012345670123]\n",
     9, ["012345670123 was read by YAML as a number", "(YAML reads it as 1402433619)",
         'quote it: "012345670123"']),
    ("octal-account-principal", V + "principals:\n  prod: 012345670123\n" + EMPTY,
     3, ["principals.prod", 'quote it: "012345670123"']),
    ("unquoted-account", V + "principals:\n  prod: 111122223333\n" + EMPTY,
     3, ["111122223333 was read by YAML as a number", 'quote it: "111122223333"']),
    ("eleven-digit-literal", R + '    launch: ["11112222333"]\n',
     9, ["images[0].launch[0]",
         "account ID '11112222333' must be exactly 12 digits (it has 11)"]),
    ("thirteen-digit-literal", R + '    copy: ["1111222233334"]\n',
     9, ["images[0].copy[0]", "'1111222233334' must be exactly 12 digits (it has 13)"]),
    ("eleven-digit-principal", V + 'principals:\n  prod: "11112222333"\n' + EMPTY,
     3, ['"11112222333" must be a quoted 12-digit account ID, an Organization ARN or an OU ARN']),
    ("unknown-principal-did-you-mean", R + "    launch: [prdo]\n",
     9, ["unknown principal name 'prdo'", "did you mean 'prod'?"]),
    ("unknown-principal-lists-names", R + "    launch: [zzzzzz]\n",
     9, ["unknown principal name 'zzzzzz'", "declared names: org, prod, staging"]),
    ("unknown-principal-no-names", VR + "    launch: [prod]\n",
     5, ["unknown principal name 'prod'", "declare it under `principals:`"]),
    ("public-without-allow-public", R + "    launch: [prod, public]\n",
     9, ["images[0].launch[1]", "'public' shares with every AWS account",
         "set settings.allow_public: true"]),
    ("public-copy-without-allow-public", R + "    copy: [public]\n",
     9, ["images[0].copy[0]", "'public' shares with every AWS account"]),
    ("org-in-copy", R + "    launch: [org]\n    copy: [prod, org]\n",
     10, ["images[0].copy[1]", "'org' is an Organization/OU", "accepts only account IDs"]),
    ("ou-literal-in-copy", R + f'    copy: ["{OU}"]\n', 9, [f"'{OU}' is an Organization/OU"]),
    ("duplicate-rule-name",
     H + '  - name: golden\n    select: {name: "x-*"}\n'
         '  - name: golden\n    select: {name: "y-*"}\n',
     9, ["images[1].name", "duplicate rule name 'golden' (first used on line 7)"]),
    ("share-quota-per-rule",
     V + "settings:\n  share_quota: 2\n" + 'images:\n  - name: r\n    select: {name: "x-*"}\n'
         '    launch: ["111122223333", "444455556666", "777788889999"]\n',
     7, ["images[0].launch", "rule 'r' shares with 3 entities; share_quota is 2"]),
    ("share-quota-across-rules", V + "settings: {share_quota: 1}\nimages:\n" + SAME_ID_RULES,
     3, ["ami-12345678 is shared with 2 entities across its rules; share_quota is 1"]),
    ("unknown-top-level-key", V + "setings: {prune: false}\n" + EMPTY,
     2, ["unknown key 'setings'", "(did you mean 'settings'?)"]),
    ("unknown-key-no-close-match", V + "zzzz: {}\n" + EMPTY,
     2, ["unknown key 'zzzz'", "(allowed: version, settings, owners, principals, images)"]),
    ("unknown-settings-key", V + "settings:\n  prune: true\n  prnue: false\n" + EMPTY,
     4, ["settings: unknown key 'prnue'", "(did you mean 'prune'?)"]),
    ("unknown-rule-key", R + "    lanuch: [prod]\n",
     9, ["images[0]: unknown key 'lanuch'", "(did you mean 'launch'?)"]),
    ("unknown-select-key", V + 'images:\n  - name: r\n    select:\n      nmae: "x-*"\n',
     5, ["images[0].select: unknown key 'nmae'", "(did you mean 'name'?)"]),
    ("malformed-ami-id",
     V + "images:\n  - name: r\n    select:\n      ids: [ami-0abcdef1234567890, ami-xyz]\n",
     5, ["images[0].select.ids[1]", '"ami-xyz" is not an AMI ID']),
    ("uppercase-ami-id", V + "images:\n  - name: r\n    select: {ids: [ami-0ABCDEF1234567890]}\n",
     4, ['"ami-0ABCDEF1234567890" is not an AMI ID']),
    ("malformed-settings-region", V + "settings:\n  regions: [us-east-1, us-east]\n" + EMPTY,
     3, ["settings.regions[1]", '"us-east" is not a valid AWS Region name']),
    ("malformed-rule-region", VR + "    regions:\n      - EU-WEST-1\n",
     6, ["images[0].regions[0]", '"EU-WEST-1" is not a valid AWS Region name']),
    ("malformed-org-arn", V + f'principals:\n  org: "{ORG_TYPO}"\n' + EMPTY,
     3, ["principals.org", f'"{ORG_TYPO}" must be a quoted 12-digit account ID']),
    ("malformed-ou-arn-principal", V + f'principals:\n  ou: "{BAD_OU}"\n' + EMPTY,
     3, ["principals.ou", f'"{BAD_OU}" must be']),
    ("malformed-ou-arn-literal", VR + f'    launch: ["{BAD_OU}"]\n',
     5, [f"'{BAD_OU}' is not a valid Organization or OU ARN"]),
    ("plan-role-without-role", V + 'settings:\n  plan_role_arn: "arn:aws:iam::123456789012:role/p"\n'
     + EMPTY, 3, ["settings.plan_role_arn: a plan role needs role_arn beside it"]),
    ("plan-role-in-another-account",
     V + 'owners:\n  - role_arn: "arn:aws:iam::123456789012:role/w"\n'
         '    plan_role_arn: "arn:aws:iam::210987654321:role/p"\n' + EMPTY,
     4, ["owners[0].plan_role_arn: 'arn:aws:iam::210987654321:role/p' is in account "
         "210987654321, its role_arn in 123456789012"]),
    ("plan-role-in-another-partition",
     V + 'settings:\n  role_arn: "arn:aws:iam::123456789012:role/w"\n'
         '  plan_role_arn: "arn:aws-cn:iam::123456789012:role/p"\n' + EMPTY,
     4, ["is in account 123456789012 (aws-cn), its role_arn in 123456789012"]),
    ("settings-plan-role-with-owners",
     V + 'settings:\n  plan_role_arn: "arn:aws:iam::123456789012:role/p"\n'
         'owners:\n  - role_arn: "arn:aws:iam::123456789012:role/w"\n' + EMPTY,
     3, ["settings.plan_role_arn: with owners:, give each owner its plan_role_arn"]),
    ("malformed-plan-role-arn",
     V + 'settings:\n  role_arn: "arn:aws:iam::123456789012:role/w"\n'
         '  plan_role_arn: "arn:aws:iam::123456789012:user/p"\n' + EMPTY,
     4, ["settings.plan_role_arn", "is not an IAM role ARN"]),
    ("malformed-role-arn", V + 'settings:\n  role_arn: "arn:aws:iam::123:user/bob"\n' + EMPTY,
     3, ["settings.role_arn", '"arn:aws:iam::123:user/bob" is not an IAM role ARN']),
    ("malformed-owner-role-arn",
     V + 'owners:\n  - role_arn: "arn:aws:iam::123456789012:user/x"\n' + EMPTY,
     3, ["owners[0].role_arn", '"arn:aws:iam::123456789012:user/x" is not an IAM role ARN']),
    ("owners-and-role-arn",
     V + 'settings:\n  role_arn: "arn:aws:iam::123456789012:role/x"\n'
         'owners:\n  - role_arn: "arn:aws:iam::123456789012:role/y"\n' + EMPTY,
     4, ["give either settings.role_arn or owners, not both"]),
    ("invalid-principal-name", V + 'principals:\n  1prod: "111122223333"\n' + EMPTY,
     3, ['"1prod" is not a valid principal name']),
    ("invalid-rule-name", V + 'images:\n  - name: "bad name!"\n    select: {name: "x-*"}\n',
     3, ["images[0].name", '"bad name!" is not a valid rule name']),
    ("empty-selector", V + "images:\n  - name: r\n    select: {}\n",
     4, ["images[0].select: needs at least one of ids, name, tags"]),
    ("missing-select", V + "images:\n  - name: r\n    launch: []\n",
     3, ["images[0]: 'select' is a required property"]),
    ("missing-images", V + "settings: {prune: true}\n", 1, ["'images' is a required property"]),
    ("boolean-tag-value", V + "images:\n  - name: r\n    select: {tags: {approved: yes}}\n",
     4, ["images[0].select.tags.approved", 'yes was read by YAML as a boolean; quote it: "yes"']),
    ("numeric-tag-value", V + "images:\n  - name: r\n    select:\n      tags: {build: 42}\n",
     5, ['42 was read by YAML as a number; quote it: "42"']),
    ("date-name-glob", V + "images:\n  - name: r\n    select: {name: 2024-01-01}\n",
     4, ['2024-01-01 was read by YAML as date; quote it: "2024-01-01"']),
    ("kms-enum", V + "settings:\n  kms: maybe\n" + EMPTY,
     3, ['settings.kms: "maybe" is not one of "key-policy", "check", "off"']),
    ("prune-not-boolean", V + 'settings:\n  prune: "no"\n' + EMPTY,
     3, ['settings.prune: expected boolean, got "no"']),
    ("negative-max-removals", V + "settings:\n  max_removals: -1\n" + EMPTY,
     3, ["settings.max_removals: -1 is less than the minimum of 0"]),
    ("zero-share-quota", V + "settings:\n  share_quota: 0\n" + EMPTY,
     3, ["settings.share_quota: 0 is less than the minimum of 1"]),
    ("empty-region-list", V + "settings:\n  regions: []\n" + EMPTY,
     3, ["settings.regions: [] should be non-empty"]),
    ("launch-not-a-list", VR + "    launch: prod\n",
     5, ['images[0].launch: expected array, got "prod"']),
    ("images-not-a-list", V + "images: {}\n", 2, ["images: expected array, got dict"]),
    ("version-2", "version: 2\n" + EMPTY,
     1, ["version: 2 must be 1 (the only manifest format version)"]),
    ("version-string", EMPTY + 'version: "1"\n', 2, ['version: "1" must be 1']),
    ("manifest-is-a-list", "- version: 1\n- images: []\n", 1,
     ["manifest must be a mapping (version, settings, principals, images), got a list"]),
    ("manifest-is-a-scalar", "hello\n", 1, ["manifest must be a mapping", "got the value 'hello'"]),
    ("manifest-is-null", "---\n", 2, ["manifest is empty"]),
    ("manifest-empty", "", 1, ["manifest is empty"]),
    ("manifest-comments-only", "# nothing yet\n", 1, ["manifest is empty"]),
    ("invalid-yaml-tab", V + "images:\n  - name: r\n\tselect: {}\n", 4,
     ["invalid YAML: found character '\\t' that cannot start any token"]),
    ("invalid-yaml-unclosed", V + "images: [\n", 3,
     ["invalid YAML: expected the node content, but found '<stream end>'"]),
    ("two-documents", V + EMPTY + "---\n" + V, 3, ["invalid YAML: but found another document"]),
    ("not-utf8", b"version: 1\n# caf\xe9\nimages: []\n", 2,
     ["manifest is not valid UTF-8 (byte 0xe9)"]),
    ("nul-byte", b"version: 1\nimages: []\x00\n", 2, ["manifest contains a NUL character"]),
]


@pytest.mark.parametrize(("text", "line", "fragments"), [c[1:] for c in BAD],
                         ids=[c[0] for c in BAD])
def test_bad_manifest(text, line, fragments):
    raw = text if isinstance(text, bytes) else text.encode()
    err = errors_of(raw)
    message = str(err)
    assert f"m.yaml:{line}:" in message, message
    located = [p for p in err.problems if p.line == line]
    assert located, message
    for fragment in fragments:
        assert any(fragment in p.message for p in located), (fragment, message)


def test_corpus_is_large_enough():
    assert len(BAD) >= 20
    assert len({c[0] for c in BAD}) == len(BAD)


# --------------------------------------------------------------------------- all errors at once


def test_three_semantic_errors_in_one_rule_are_all_reported():
    err = errors_of(NAMED + R + '    launch: [prdo, public, "1234"]\n')
    assert [str(p) for p in err.problems] == [
        "m.yaml:10:14: images[0].launch[0]: unknown principal name 'prdo'; did you mean 'prod'?",
        "m.yaml:10:20: images[0].launch[1]: 'public' shares with every AWS account; set "
        "settings.allow_public: true to allow it",
        "m.yaml:10:28: images[0].launch[2]: account ID '1234' must be exactly 12 digits (it has 4)",
    ]


def test_three_semantic_errors_across_rules_are_all_reported():
    err = errors_of(NAMED + H + '  - name: a\n    select: {name: "x-*"}\n    copy: [org]\n'
                                '  - name: a\n    select: {name: "y-*"}\n    launch: [nobody]\n')
    assert [(p.line, p.message.split(":")[0]) for p in err.problems] == [
        (10, "images[0].copy[0]"), (11, "images[1].name"), (13, "images[1].launch[0]")]
    assert len(err.problems) == 3


def test_yaml_and_schema_errors_are_reported_together():
    err = errors_of("version: 1\nversion: 1\nsetings: {}\nimages: []\n")
    assert [str(p) for p in err.problems] == [
        "m.yaml:2:1: duplicate key 'version'",
        "m.yaml:3:1: document: unknown key 'setings' (did you mean 'settings'?)",
    ]


def test_several_schema_errors_are_reported_together():
    err = errors_of('version: 2\nsettings:\n  regions: [us-east]\n  kms: maybe\nimages:\n'
                    '  - name: r\n    select: {ids: [ami-xyz]}\n')
    assert [p.line for p in err.problems] == [1, 3, 4, 7]


def test_cross_rule_quota_reported_alongside_other_errors():
    err = errors_of('version: 1\nsettings: {share_quota: 1}\nimages:\n'
                    '  - name: a\n    select: {ids: [ami-12345678]}\n    launch: ["111122223333"]\n'
                    '  - name: b\n    select: {ids: [ami-12345678]}\n    launch: ["444455556666"]\n'
                    '  - name: c\n    select: {name: x}\n    launch: [nobody]\n')
    messages = [p.message for p in err.problems]
    assert any("unknown principal name 'nobody'" in m for m in messages)
    assert any("ami-12345678 is shared with 2 entities" in m for m in messages)


def test_octal_hint_shows_source_text():
    err = errors_of(R + "    launch: [prod, 012345670123]\n")
    (p,) = err.problems
    assert str(p) == ('m.yaml:9:20: images[0].launch[1]: 012345670123 was read by YAML as a number '
                      '(YAML reads it as 1402433619); quote it: "012345670123"')


def test_quoted_octal_looking_id_is_accepted():
    m = parse_manifest((NAMED + R + '    launch: ["012345670123"]\n').encode(), "m.yaml")
    assert m.rules[0].launch == (Principal.account("012345670123"),)


def test_problems_are_sorted_and_deduplicated():
    err = errors_of("b: 1\nversion: 1\nversion: 1\nimages: []\na: 1\n")
    lines = [p.line for p in err.problems]
    assert lines == sorted(lines)
    assert len({str(p) for p in err.problems}) == len(err.problems)


@pytest.mark.parametrize(("text", "line"), [
    ("version: 1\nsettings:\n  prune: 2024-01-01\nimages: []\n", 3),
    ("version: 2024-01-01\nimages: []\n", 1),
], ids=["date-prune", "date-version"])
def test_date_where_non_string_expected_is_an_input_error(text, line):
    err = errors_of(text)
    assert f"m.yaml:{line}:" in str(err)
    assert "2024-01-01" in str(err)


def test_unquoted_kms_off_means_off():
    # YAML 1.1 reads an unquoted `off` as false; the README writes `kms: off`, so accept it.
    m = parse_manifest(b"version: 1\nsettings:\n  name: m\n  kms: off\nimages: []\n", "m.yaml")
    assert m.settings.kms == "off"
    err = errors_of("version: 1\nsettings:\n  kms: on\nimages: []\n")
    (p,) = err.problems
    assert p.line == 3 and "true" in p.message


def test_contract_values_are_enums() -> None:
    from reconciler.core.kms import KeyManager
    from reconciler.core.manifest import KmsMode

    m = parse_manifest(b"version: 1\nsettings: {name: m, kms: off}\nimages: []\n", "m.yaml")
    assert m.settings.kms is KmsMode.OFF  # YAML's `off` (a boolean) is the mode "off"
    m = parse_manifest(b"version: 1\nsettings: {name: m, kms: check}\nimages: []\n", "m.yaml")
    assert m.settings.kms is KmsMode.CHECK and m.settings.kms == "check"
    assert KeyManager("AWS") is KeyManager.AWS and KeyManager.CUSTOMER == "CUSTOMER"


# --------------------------------------------------------------------------- identity (SPEC §7a)


def test_a_manifest_without_a_name_is_refused_at_its_settings_line():
    """Two repositories that both keep amis.yaml used to share the tag value ``amis`` and
    release each other's images: the name is a choice, never a file-name default."""
    err = errors_of("""\
        version: 1
        settings:
          regions: [us-east-1]
        images:
          - name: r
            select: {name: "x-*"}
        """)
    [p] = err.problems
    assert (p.line, p.column) == (2, 1)
    assert "settings.name is required while settings.ownership is tag" in p.message
    assert 'add "name: m" under settings:' in p.message
    # images the manifest already tagged carry the file-stem default: keep it to continue
    assert "reconciler:manifest=m" in p.message and "keep" in p.message


def test_a_manifest_without_settings_is_told_to_add_them():
    err = errors_of("""\
        version: 1
        images:
          - name: r
            select: {name: "x-*"}
        """)
    [p] = err.problems
    assert p.line == 1
    assert "add a settings: mapping with name: m" in p.message


def test_ownership_none_needs_no_name():
    m = parse("""\
        version: 1
        settings: {ownership: none}
        images:
          - name: r
            select: {name: "x-*"}
        """)
    assert m.settings.ownership == "none"


def test_the_name_is_the_one_written_whatever_the_file_is_called():
    raw = b'version: 1\nsettings: {name: team-b}\nimages:\n  - name: r\n    select: {name: "x-*"}\n'
    assert parse_manifest(raw, "amis.yaml").settings.name == "team-b"
    assert parse_manifest(raw, "other/amis.yaml").settings.name == "team-b"


def test_a_public_rule_that_skips_deprecated_builds_is_told_aws_deprecates_them():
    """EC2 User Guide, "Deprecate an AMI": AWS sets every public AMI's deprecation time to
    two years after its creation; `deprecated: false` would then unshare it silently."""
    m = parse("""\
        version: 1
        settings: {name: m, allow_public: true}
        images:
          - name: base
            select: {name: "base-*", deprecated: false}
            launch: [public]
          - name: private
            select: {name: "golden-*", deprecated: false}
            launch: ["111122223333"]
        """)
    [f] = m.hygiene()
    assert (f.code, f.severity.value, f.resource) == ("public-auto-deprecation", "warning", "base")
    assert "two years" in f.message
