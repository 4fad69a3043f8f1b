#!/bin/sh
# Build the function's package (reconciler, its dependencies and the manifest as amis.yaml)
# and deploy template.yaml in every Region the manifest names, in the account the AWS
# credentials are for (run it once per owner account).
#
#   MANIFEST=amis.yaml BUCKET_PREFIX=my-artifacts sh examples/event-driven/deploy.sh
#
# BUCKET_PREFIX: an S3 bucket per Region, named PREFIX-REGION (Lambda reads its code from a
# bucket in its own Region). RECONCILER_PIP: what pip installs (default: the pinned release;
# until it is on PyPI, a git+https URL pinned to a commit). OWNER_ROLE_ARN: the manifest's
# role_arn for this account, if it names one; OWNER_PLAN_ROLE_ARN: its plan_role_arn, if it
# names one (DETECT_ONLY reads through it). DETECT_ONLY=true: report drift, write nothing.
set -eu
manifest=${MANIFEST:-amis.yaml}
prefix=${BUCKET_PREFIX:?set BUCKET_PREFIX (one bucket per Region, named PREFIX-REGION)}
stack=${STACK_NAME:-ami-share-reconciler-event}
here=$(cd "$(dirname "$0")" && pwd)

reconcile validate "$manifest"   # a manifest the scheduled plan would refuse is not deployed
build=$(mktemp -d)
trap 'rm -rf "$build" "$build.zip"' EXIT
pip install --quiet --target "$build" --platform manylinux2014_x86_64 --implementation cp \
    --python-version 3.13 --only-binary=:all: "${RECONCILER_PIP:-ami-share-reconciler==0.1.0}"
cp "$manifest" "$build/amis.yaml"
(cd "$build" && zip -q -r -X "$build.zip" .)
key="ami-share-reconciler/$(sha256sum "$build.zip" | cut -c1-16).zip"

# every Region any rule names: AMIs, their CloudTrail events and EC2's request buckets are
# per Region, so a stack goes to each
regions=$(python3 -c 'import sys
from reconciler.shell.inputs import load_manifest
print(" ".join(load_manifest(sys.argv[1]).regions))' "$manifest")
for region in $regions; do
    aws s3 cp --region "$region" "$build.zip" "s3://$prefix-$region/$key"
    aws cloudformation deploy --region "$region" --stack-name "$stack" \
        --template-file "$here/template.yaml" --capabilities CAPABILITY_IAM \
        --parameter-overrides "CodeBucket=$prefix-$region" "CodeKey=$key" \
            "OwnerRoleArn=${OWNER_ROLE_ARN:-}" "OwnerPlanRoleArn=${OWNER_PLAN_ROLE_ARN:-}" \
            "DetectOnly=${DETECT_ONLY:-false}"
done
