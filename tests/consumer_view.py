"""The consumer's view, which moto lacks: what ``reconcile verify`` reads in a consumer account.

moto keeps one store per account and shows no account another's images or keys; it has no
Allowed AMIs, ignores KMS ``DryRun`` and lets anyone assume any role. :class:`ConsumerView`
patches the moto classes (in this process, so the threaded moto server too) to answer as
the AWS documents say, independently of the product's own code:

- ``sts:AssumeRole`` of the verify role in an account that has none is refused with
  ``AccessDenied`` (IAM User Guide, "Troubleshoot IAM roles": "User: … is not authorized to
  perform: sts:AssumeRole on resource: …"); other roles (owners') are assumed as before.
- ``ec2:DescribeImages`` by ID (EC2 API reference, DescribeImages): an account sees its own
  images, public ones and those shared with it — by account ID, or through an organization
  or OU it is in; disabled images are seen by their owner only. "When Allowed AMIs is set to
  enabled, only allowed images are returned in the results, with the imageAllowed field set
  to true for each image. In audit-mode, the imageAllowed field is set to true for images
  that meet the account's Allowed AMIs criteria, and false for images that don't." Its own
  images are always allowed (EC2 User Guide, "Allowed AMIs"). IDs that exist nowhere are
  ``InvalidAMIID.NotFound``.
- ``ec2:GetAllowedImagesSettings`` (EC2 API reference): ``State`` (``disabled``,
  ``audit-mode``, ``enabled``), ``ImageCriteria``, ``ManagedBy``. An image meets a criterion
  when it passes each condition the criterion sets (ImageProviders, ImageNames with ``*`` and
  ``?``), and is allowed when it meets any criterion.
- ``kms:DescribeKey`` and ``kms:GenerateDataKeyWithoutPlaintext`` on another account's key
  (KMS Developer Guide, "Allowing users in other accounts to use a KMS key"; "Testing your
  permissions"): the key policy must allow the calling account; an explicit ``Deny`` wins;
  ``kms:GrantIsForAWSResource`` is never true for a direct call. Refused: an
  ``AccessDeniedException`` saying which policy type refused (IAM User Guide,
  "Troubleshoot access denied error messages"). With ``DryRun`` a call that would succeed
  answers ``DryRunOperationException``; a disabled key answers ``DisabledException``.
  (The caller's own IAM policies are not modelled: the verify role is taken to hold the
  README's policy.)
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

VERIFY_ROLE = "ami-share-verify"
TEMPLATE = f"arn:aws:iam::{{account}}:role/{VERIFY_ROLE}"


@dataclass
class ConsumerView:
    """The emulated consumer accounts: their Allowed AMIs settings, their organizations and
    OUs, and which of them have the verify role."""

    allowed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)  # org/OU ARNs
    roles: set[str] = field(default_factory=set)

    def allowed_amis(self, account: str, state: str, *criteria: dict[str, Any],
                     region: str = "us-east-1", managed_by: str = "account") -> None:
        self.allowed[(account, region)] = {"State": state, "ImageCriteria": list(criteria),
                                           "ManagedBy": managed_by}

    def member_of(self, account: str, *arns: str) -> None:
        self.members[account] = arns

    def settings(self, account: str, region: str) -> dict[str, Any]:
        return self.allowed.get((account, region), {"State": "disabled", "ManagedBy": "account"})


def patch_moto(mp: pytest.MonkeyPatch) -> ConsumerView:
    """The consumer's view patched into moto until ``mp`` undoes it (the ``consumers``
    fixture, one test)."""
    view = ConsumerView()
    _patch_sts(mp, view)
    _patch_ec2(mp, view)
    _patch_kms(mp, view)
    return view


# --------------------------------------------------------------------------- STS


def _patch_sts(mp: pytest.MonkeyPatch, view: ConsumerView) -> None:
    from moto.core.exceptions import AccessDeniedError
    from moto.sts.models import STSBackend

    assume = STSBackend.assume_role

    def assume_role(self: Any, **kwargs: Any) -> Any:
        arn = kwargs["role_arn"]
        account, name = re.fullmatch(r"arn:aws:iam::(\d{12}):role/(.+)", arn).groups()  # type: ignore[union-attr]
        if name == VERIFY_ROLE and account not in view.roles:
            raise AccessDeniedError(f"arn:aws:iam::{self.account_id}:user/ci",
                                    f"sts:AssumeRole on resource: {arn}")
        return assume(self, **kwargs)

    mp.setattr(STSBackend, "assume_role", assume_role)


# --------------------------------------------------------------------------- EC2


def _owner_and_image(image_id: str, region: str) -> tuple[str, Any] | None:
    from moto.ec2.models import ec2_backends

    for account, by_region in list(ec2_backends.items()):
        backend = by_region.get(region) if hasattr(by_region, "get") else None
        if backend is not None and image_id in backend.amis:
            return account, backend.amis[image_id]
    return None


def _shared_with(ami: Any, account: str, view: ConsumerView) -> bool:
    groups = set(view.members.get(account, ()))
    for lp in ami.launch_permissions:
        if lp.get("UserId") == account or lp.get("Group") == "all":
            return True
        if lp.get("OrganizationArn") in groups or lp.get("OrganizationalUnitArn") in groups:
            return True
    return False


def _name_matches(pattern: str, name: str) -> bool:
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                                for c in pattern), name) is not None


def _meets(criterion: dict[str, Any], owner: str, name: str) -> bool:
    providers = criterion.get("ImageProviders")
    names = criterion.get("ImageNames")
    return (not providers or owner in providers) and (
        not names or any(_name_matches(p, name) for p in names))


def _patch_ec2(mp: pytest.MonkeyPatch, view: ConsumerView) -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidAMIIdError
    from moto.ec2.responses import EC2Response

    describe = EC2Response.describe_images

    def describe_images(self: Any) -> Any:
        ids = self._get_param("ImageIds", [])
        if not ids:
            return describe(self)
        account, region = self.current_account, self.region
        settings = view.settings(account, region)
        found, exists = [], False
        for image_id in ids:
            hit = _owner_and_image(image_id, region)
            if hit is None:
                continue
            exists = True
            owner, ami = hit
            if owner != account and (ami.state != "available" or not _shared_with(ami, account, view)):
                continue
            allowed = owner == account or any(_meets(c, owner, ami.name)
                                              for c in settings.get("ImageCriteria", []))
            if settings["State"] == "enabled" and not allowed:
                continue
            found.append(_image(ami, owner, allowed if settings["State"] != "disabled" else None))
        if not exists:
            raise InvalidAMIIdError(ids)
        return ActionResult({"Images": found})

    def get_allowed_images_settings(self: Any) -> Any:
        return ActionResult(view.settings(self.current_account, self.region))

    mp.setattr(EC2Response, "describe_images", describe_images)
    mp.setattr(EC2Response, "get_allowed_images_settings", get_allowed_images_settings,
               raising=False)


def _image(ami: Any, owner: str, allowed: bool | None) -> dict[str, Any]:
    out = {"ImageId": ami.id, "OwnerId": owner, "Name": ami.name, "State": ami.state,
           "CreationDate": ami.creation_date,
           "Public": ami.is_public, "BlockDeviceMappings": ami.block_device_mappings}
    if allowed is not None:
        out["ImageAllowed"] = allowed
    return out


# --------------------------------------------------------------------------- KMS


def _patch_kms(mp: pytest.MonkeyPatch, view: ConsumerView) -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.kms.responses import KmsResponse

    originals = {name: getattr(KmsResponse, name)
                 for name in ("describe_key", "generate_data_key_without_plaintext")}

    def foreign(name: str, action: str) -> Any:
        def handler(self: Any) -> str:
            key = _foreign_key(self._get_param("KeyId"), self.current_account)
            if key is None:
                return str(originals[name](self))
            caller = _caller_arn(self)
            decision = key_policy_decision(json.loads(key.policy), self.current_account, caller, action,
                               view.members.get(self.current_account, ()))
            if decision != "allow":
                why = ("with an explicit deny in a resource-based policy" if decision == "deny"
                       else f"because no resource-based policy allows the {action} action")
                raise JsonRESTError("AccessDeniedException", f"User: {caller} is not authorized "
                                    f"to perform: {action} on resource: {key.arn} {why}")
            if name == "describe_key":
                return json.dumps(key.to_dict(), default=str)
            if key.key_state != "Enabled":
                raise JsonRESTError("DisabledException", f"{key.arn} is disabled.")
            if self._get_param("DryRun"):
                raise JsonRESTError("DryRunOperationException",
                                    "The request would have succeeded, but the DryRun option "
                                    "is set.")
            raise AssertionError("verify only ever sends this call as a dry run")
        return handler

    mp.setattr(KmsResponse, "describe_key", foreign("describe_key", "kms:DescribeKey"))
    mp.setattr(KmsResponse, "generate_data_key_without_plaintext",
               foreign("generate_data_key_without_plaintext",
                       "kms:GenerateDataKeyWithoutPlaintext"))


def _foreign_key(key_id: str, account: str) -> Any:
    """The key another account owns that ``key_id`` (an ARN) names, else None."""
    from moto.kms.models import kms_backends

    m = re.fullmatch(r"arn:aws:kms:([a-z0-9-]+):(\d{12}):key/(.+)", key_id or "")
    if m is None or m.group(2) == account:
        return None
    region, owner, kid = m.groups()
    key = kms_backends[owner][region].keys.get(kid)
    if key is None:
        from moto.kms.exceptions import NotFoundException

        raise NotFoundException(f"Key '{key_id}' does not exist")
    return key


def _caller_arn(response: Any) -> str:
    from moto.sts.models import sts_backends

    role = sts_backends[response.current_account]["aws"].get_assumed_role_from_access_key(
        response.get_access_key())
    return str(role.arn) if role is not None else f"arn:aws:iam::{response.current_account}:root"


def key_policy_decision(policy: dict[str, Any], account: str, caller: str, action: str,
            groups: tuple[str, ...]) -> str:
    """"allow", "implicit" (nothing allows) or "deny" (an explicit Deny matches)."""
    context = _context(account, groups)
    allowed = False
    for st in policy.get("Statement", []):
        if not (_principal(st, account, caller) and _action(st, action)
                and _conditions(st.get("Condition") or {}, context)):
            continue
        if st.get("Effect") == "Deny":
            return "deny"
        allowed = allowed or st.get("Effect") == "Allow"
    return "allow" if allowed else "implicit"


def _context(account: str, groups: tuple[str, ...]) -> dict[str, list[str]]:
    orgs = sorted({g.rsplit("/", 1)[-1] for g in groups if ":organization/" in g}
                  | {g.split("/")[1] for g in groups if ":ou/" in g})
    paths = [f"{g.split('/')[1]}/r-root/{g.split('/')[2]}/" for g in groups if ":ou/" in g]
    context = {"aws:PrincipalAccount": [account], "kms:GrantIsForAWSResource": ["false"],
               "aws:PrincipalOrgPaths": paths or [f"{o}/r-root/" for o in orgs]}
    if orgs:
        context["aws:PrincipalOrgID"] = orgs[:1]
    return context


def _listed(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _principal(st: dict[str, Any], account: str, caller: str) -> bool:
    p = st.get("Principal")
    named = ["*"] if p == "*" else _listed(p.get("AWS", [])) if isinstance(p, dict) else []
    role = re.sub(r"arn:aws:sts::(\d{12}):assumed-role/([^/]+)/.*", r"arn:aws:iam::\1:role/\2",
                  caller)
    return any(n in ("*", account, f"arn:aws:iam::{account}:root", role) for n in named)


def _action(st: dict[str, Any], action: str) -> bool:
    def hit(patterns: Any) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _listed(patterns))
    return not hit(st["NotAction"]) if "NotAction" in st else hit(st.get("Action", []))


def _conditions(block: dict[str, Any], context: dict[str, list[str]]) -> bool:
    for operator, tests in block.items():
        for key, wanted in tests.items():
            if not _condition(operator, context.get(key), [str(w).lower() if isinstance(w, bool)
                                                           else str(w) for w in _listed(wanted)]):
                return False
    return True


def _condition(operator: str, have: list[str] | None, wanted: list[str]) -> bool:
    """IAM condition operators the tests' key policies use; a missing key never matches,
    except under a negated operator (IAM User Guide, "Condition operators")."""
    if operator == "Bool":
        return have is not None and have[0] in wanted
    if operator in ("StringEquals", "StringNotEquals"):
        match = have is not None and any(h in wanted for h in have)
        return match if operator == "StringEquals" else not match
    if operator in ("StringLike", "ForAnyValue:StringLike"):
        return have is not None and any(fnmatch.fnmatchcase(h, w) for h in have for w in wanted)
    raise AssertionError(f"condition operator {operator} is not emulated")
