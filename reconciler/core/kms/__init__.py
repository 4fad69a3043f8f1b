"""KMS key policies: the four statements the tool owns, and nothing else. Pure.

For each customer managed key backing a managed image, the tool owns exactly the statements
whose Sid is one of :data:`OWNED_SIDS`; every other statement is kept byte-for-byte in its
place. Principals are compared as *grantees*: an account ID, an organization ID, or an OU
path pattern (``o-…/*/ou-…/*``), because that is all a key policy can say about them.

Organizations and OUs share the two ``Orgs`` statements. Conditions on different keys in one
statement are ANDed, so the tool never puts ``aws:PrincipalOrgID`` and
``aws:PrincipalOrgPaths`` in the same statement: with organizations only it uses
``aws:PrincipalOrgID``; as soon as an OU is present, every grantee is written as an
``aws:PrincipalOrgPaths`` pattern (an organization as ``o-…/*``), which is their union.
"""

from .access import (
    CONSUMER_ACTIONS,
    Allow,
    KeyAccess,
    KeyPolicyView,
    Refusal,
    access,
    evaluate,
    foreign_allows_grantee,
    inside,
)
from .grantees import (
    GRANT_ACTIONS,
    GRANT_CONDITION,
    MAX_POLICY_BYTES,
    ORG_ID_KEY,
    ORG_ID_PATTERN,
    ORG_PATH_PATTERN,
    ORG_PATHS_KEY,
    OU_PATH_PATTERN,
    OWNED_SIDS,
    ROOT_ARN_PATTERN,
    SID_ACCOUNTS,
    SID_ACCOUNTS_GRANT,
    SID_ORGS,
    SID_ORGS_GRANT,
    USE_ACTIONS,
    Grantee,
    GranteeKind,
    GrantShape,
    PolicyError,
    account_of,
    as_list,
    covers,
    grantee_of,
    parse_policy,
    principal_of,
)
from .keys import (
    KeyInfo,
    KeyManager,
    key_arn,
)
from .statements import (
    grant_shapes,
    owned_grantees,
    policy_bytes,
    serialize,
    statement_grantees,
    with_grantees,
)

__all__ = [
    "key_arn",
    "Allow",
    "CONSUMER_ACTIONS",
    "GRANT_ACTIONS",
    "GRANT_CONDITION",
    "GrantShape",
    "Grantee",
    "GranteeKind",
    "KeyAccess",
    "KeyInfo",
    "KeyManager",
    "KeyPolicyView",
    "MAX_POLICY_BYTES",
    "ORG_ID_KEY",
    "ORG_ID_PATTERN",
    "ORG_PATHS_KEY",
    "ORG_PATH_PATTERN",
    "OU_PATH_PATTERN",
    "OWNED_SIDS",
    "PolicyError",
    "ROOT_ARN_PATTERN",
    "Refusal",
    "SID_ACCOUNTS",
    "SID_ACCOUNTS_GRANT",
    "SID_ORGS",
    "SID_ORGS_GRANT",
    "USE_ACTIONS",
    "access",
    "account_of",
    "as_list",
    "covers",
    "evaluate",
    "foreign_allows_grantee",
    "grant_shapes",
    "grantee_of",
    "inside",
    "owned_grantees",
    "parse_policy",
    "policy_bytes",
    "principal_of",
    "serialize",
    "statement_grantees",
    "with_grantees",
]
