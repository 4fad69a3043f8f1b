"""Findings: the plan's diagnostics (reported, never executed), and every code one can
carry, with its severity (before ``--strict`` makes warnings errors) and what it means in
one line. The codes are a public contract of the JSON plan; the README's table and
``schemas/plan.schema.json`` are tested against :class:`Code`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

class Code(enum.StrEnum):
    """A finding code: its value is the code the JSON plan carries (``"share-quota"``)."""

    severity: Severity
    meaning: str

    def __new__(cls, value: str, severity: Severity, meaning: str) -> Code:
        member = str.__new__(cls, value)
        member._value_ = value
        member.severity = severity
        member.meaning = meaning
        return member

    @classmethod
    def parse(cls, text: str) -> Code:
        """The code whose value is ``text`` (ValueError for any other text)."""
        for code in cls:
            if code.value == text:
                return code
        raise ValueError(f"unknown finding code {text!r}")

    # manifest and selection
    IMAGE_NOT_FOUND = ("image-not-found", E,
        "an `ids` entry is not an image the owner has in the rule's Regions")
    NO_MATCH = ("no-match", W, "a name/tag selector matches no image (the Regions are listed)")
    IMAGE_DISABLED = ("image-disabled", W,
        "a matched image is disabled: it cannot be shared, it is skipped")
    IMAGE_NOT_AVAILABLE = ("image-not-available", W,
        "a matched image is not available (pending, failed): skipped")
    UNUSED_PRINCIPAL = ("unused-principal", W, "a name under `principals:` that no rule uses")
    PUBLIC_AUTO_DEPRECATION = ("public-auto-deprecation", W,
        "a public rule skips deprecated builds, and AWS deprecates public AMIs after two years")
    SHARE_QUOTA = ("share-quota", E,
        "the image would be shared with more entities than share_quota")
    MAX_REMOVALS = ("max-removals", E,
        "the plan removes more than max_removals (acknowledge with --allow-mass-removal)")

    # snapshots and KMS keys
    SNAPSHOT_NOT_FOUND = ("snapshot-not-found", E, "a backing snapshot cannot be read")
    KEY_UNKNOWN = ("key-unknown", E, "an encrypted snapshot reports no KMS key")
    KMS_ACCESS_DENIED = ("kms-access-denied", E, "the caller may not read the key or its policy")
    KEY_UNREADABLE = ("key-unreadable", E, "the key or its policy could not be read")
    AWS_MANAGED_KEY = ("aws-managed-key", E,
        "the snapshot uses aws/ebs: the image cannot be shared (copy it)")
    FOREIGN_KEY = ("foreign-key", E,
        "the key belongs to another account: its policy is managed there")
    KEY_UNUSABLE = ("key-unusable", E, "the key is disabled or pending deletion")
    KEY_POLICY_UNPARSEABLE = ("key-policy-unparseable", E,
        "the key policy (or the tool's statements in it) cannot be edited safely")
    KEY_POLICY_TOO_LARGE = ("key-policy-too-large", E, "the key policy would exceed 32,768 bytes")
    KMS_ACCESS_MISSING = ("kms-access-missing", E,
        "kms: check: a declared consumer cannot use the key")
    KMS_FOREIGN_STATEMENT = ("kms-foreign-statement", INFO,
        "an account, organization or OU already has key access through someone else's statement")
    KMS_PRINCIPAL_STILL_USED = ("kms-principal-still-used", INFO,
        "key access kept: an image or snapshot the plan leaves alone still grants the principal")
    KMS_DENY_STATEMENT = ("kms-deny-statement", W,
        "a Deny statement in the key policy may refuse consumers")
    KMS_GRANT_SHAPE = ("kms-grant-shape", INFO,
        "the grant statements are rewritten for settings.kms_grants")

    # public sharing and copying
    ENCRYPTED_PUBLIC = ("encrypted-public", E, "encrypted images and snapshots can never be public")
    PUBLIC_PRODUCT_CODE = ("public-product-code", E,
        "images or snapshots with AWS Marketplace product codes cannot be public")
    PUBLIC_ACCESS_BLOCKED = ("public-access-blocked", E,
        "Image Block Public Access forbids making the image public")
    PUBLIC_ACCESS_UNKNOWN = ("public-access-unknown", W,
        "Image Block Public Access could not be read")
    PUBLIC_QUOTA = ("public-quota", E, "more public AMIs in the Region than public_quota")
    PUBLIC_QUOTA_RECYCLE_BIN = ("public-quota-recycle-bin", W,
        "AMIs in the Recycle Bin may hold the public AMIs quota a new public share needs")
    SNAPSHOT_PUBLIC_ACCESS_BLOCKED = ("snapshot-public-access-blocked", E,
        "Snapshot Block Public Access forbids a public copy permission")
    SNAPSHOT_PUBLIC_ACCESS_UNKNOWN = ("snapshot-public-access-unknown", W,
        "Snapshot Block Public Access could not be read")
    SNAPSHOT_PUBLIC_NOT_IN_EFFECT = ("snapshot-public-not-in-effect", W,
        "snapshots show a public copy permission that block-all-sharing makes private")
    UNDECLARED_PUBLIC = ("undeclared-public", W,
        "an image is public, no rule says so, and prune is false")
    COPY_MARKETPLACE = ("copy-marketplace", W,
        "consumers cannot copy an AWS Marketplace image to their account")
    COPY_BILLING_PRODUCT = ("copy-billing-product", E,
        "`copy:` on an image with a billing product (Windows, RHEL, SQL Server...): another "
        "account cannot copy it")
    COPY_INSTANCE_STORE = ("copy-instance-store", E,
        "`copy:` on an instance-store-backed image: it has no snapshot to share")
    REMOVAL_KEPT_THROUGH_ORG = ("removal-kept-through-org", INFO,
        "a removed account may keep access through an organization or OU share")
    IN_USE = ("in-use", W,
        "a lifecycle or release removal waits: the image was launched within "
        "keep_launched_within_days")
    IN_USE_BY_ACCOUNT = ("in-use-by-account", W,
        "usage_reports: an account's removal waits: the image's newest AMI usage report lists "
        "its instances or launch templates")
    USAGE_REPORT_MISSING = ("usage-report-missing", INFO,
        "usage_reports: no usable AMI usage report for an image an account is removed from: "
        "the removal goes ahead unchecked (reconcile usage-reports requests them)")
    USAGE_REPORT_UNREADABLE = ("usage-report-unreadable", W,
        "usage_reports: the AMI usage reports could not be read: account removals wait")
    LIFECYCLE_UNSHARED = ("lifecycle-unshared", INFO,
        "a rule manages the image but its lifecycle conditions (latest, exclude, dates, "
        "deprecated) share nothing with it")

    # ownership
    OTHER_MANIFEST = ("other-manifest", W,
        "the image carries another manifest's ownership tag: two manifests manage it, or this "
        "one was renamed")
    RELEASED_KEPT = ("released-kept", INFO,
        "no rule matches the image any more; on_release: keep leaves its shares")


@dataclass(frozen=True)
class Finding:
    """A diagnostic about the desired or current state: reported, never executed."""

    severity: Severity
    code: Code
    region: str
    resource: str
    message: str
    # the message without the subject it begins with (``ami-… (name): ``), for a reader
    # that names the subject already (export's left-out list); not part of the plan
    detail: str = field(default="", compare=False, repr=False)
    # the manifest rule the finding is about, when it is about one (what a SARIF result
    # points at); not part of the plan
    rule: str = field(default="", compare=False, repr=False)

    @classmethod
    def of(cls, code: Code, region: str, resource: str, message: str, *,
           rule: str = "") -> Finding:
        """A finding with its code's own severity."""
        return cls(code.severity, code, region, resource, message, message, rule)

    @classmethod
    def about(cls, code: Code, subject: str, region: str, resource: str,
              message: str) -> Finding:
        """:meth:`of` for a message that may begin with ``subject`` (an image's label)."""
        detail = (message[len(subject):].removeprefix(":").lstrip()
                  if message.startswith(subject) else message)
        return cls(code.severity, code, region, resource, message, detail)

    @property
    def where(self) -> str:
        """``us-east-1 ami-…``: the Region and the resource, those it has (a finding about the
        whole plan, such as ``max-removals``, has neither)."""
        return " ".join(x for x in (self.region, self.resource) if x)

    def headline(self) -> str:
        """``error[share-quota] us-east-1 ami-…: message``, as the plans list findings (the
        values exact: the renderer makes them inert)."""
        where = f" {self.where}" if self.where else ""
        return f"{self.severity.value}[{self.code}]{where}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity.value,
            "code": str(self.code),
            "region": self.region,
            "resource": self.resource,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Finding:
        return cls(Severity(d["severity"]), Code.parse(d["code"]), d["region"], d["resource"],
                   d["message"])

    @property
    def sort_key(self) -> tuple[int, str, str, str, str]:
        order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}[self.severity]
        return (order, self.region, self.resource, self.code, self.message)


def sorted_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(set(findings), key=lambda f: f.sort_key))
