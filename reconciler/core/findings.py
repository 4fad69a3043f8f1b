"""Every finding code a plan can carry: its severity (before ``--strict`` makes warnings
errors) and what it means in one line. The codes are a public contract of the JSON plan;
the README's table and ``schemas/plan.schema.json`` are tested against this registry.
"""

from __future__ import annotations

from .model import Severity

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

FINDINGS: dict[str, tuple[Severity, str]] = {
    # manifest and selection
    "image-not-found": (E, "an `ids` entry is not an image the owner has in the rule's Regions"),
    "no-match": (W, "a name/tag selector matches no image (the Regions are listed)"),
    "image-disabled": (W, "a matched image is disabled: it cannot be shared, it is skipped"),
    "image-not-available": (W, "a matched image is not available (pending, failed): skipped"),
    "unused-principal": (W, "a name under `principals:` that no rule uses"),
    "share-quota": (E, "the image would be shared with more entities than share_quota"),
    "max-removals": (E, "the plan removes more than max_removals (acknowledge with "
                        "--allow-mass-removal)"),
    # snapshots and KMS keys
    "snapshot-not-found": (E, "a backing snapshot cannot be read"),
    "key-unknown": (E, "an encrypted snapshot reports no KMS key"),
    "kms-access-denied": (E, "the caller may not read the key or its policy"),
    "key-unreadable": (E, "the key or its policy could not be read"),
    "aws-managed-key": (E, "the snapshot uses aws/ebs: the image cannot be shared (copy it)"),
    "foreign-key": (E, "the key belongs to another account: its policy is managed there"),
    "key-unusable": (E, "the key is disabled or pending deletion"),
    "key-policy-unparseable": (E, "the key policy (or the tool's statements in it) cannot be "
                                  "edited safely"),
    "key-policy-too-large": (E, "the key policy would exceed 32,768 bytes"),
    "kms-access-missing": (E, "kms: check: a declared consumer cannot use the key"),
    "kms-foreign-statement": (INFO, "an account, organization or OU already has key access "
                                 "through someone else's statement"),
    "kms-principal-still-used": (INFO, "key access kept: an image or snapshot the plan leaves "
                                    "alone still grants the principal"),
    "kms-deny-statement": (W, "a Deny statement in the key policy may refuse consumers"),
    "kms-grant-shape": (INFO, "the grant statements are rewritten for settings.kms_grants"),
    # public sharing and copying
    "encrypted-public": (E, "encrypted images and snapshots can never be public"),
    "public-product-code": (E, "images or snapshots with AWS Marketplace product codes "
                               "cannot be public"),
    "public-access-blocked": (E, "Image Block Public Access forbids making the image public"),
    "public-access-unknown": (W, "Image Block Public Access could not be read"),
    "public-quota": (E, "more public AMIs in the Region than public_quota"),
    "snapshot-public-access-blocked": (E, "Snapshot Block Public Access forbids a public copy "
                                          "permission"),
    "snapshot-public-access-unknown": (W, "Snapshot Block Public Access could not be read"),
    "undeclared-public": (W, "an image is public, no rule says so, and prune is false"),
    "copy-marketplace": (W, "consumers cannot copy an AWS Marketplace image to their account"),
    "removal-kept-through-org": (INFO, "a removed account may keep access through an "
                                    "organization or OU share"),
    "lifecycle-unshared": (INFO, "a rule manages the image but its lifecycle conditions "
                                 "(latest, exclude, dates, deprecated) share nothing with it"),
    # ownership
    "other-manifest": (W, "the image carries another manifest's ownership tag: two manifests "
                          "manage it, or this one was renamed"),
    "released-kept": (INFO, "no rule matches the image any more; on_release: keep leaves its "
                         "shares"),
}
