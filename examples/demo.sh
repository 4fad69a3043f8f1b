#!/bin/sh
# The whole story on the embedded sandbox, no AWS account needed:
# a plan that finds drift, apply, an empty plan, then new drift caught again.
set -e
cd "$(dirname "$0")/.."
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

step "1. Validate the manifest (offline)" "reconcile validate examples/manifest.yaml"
reconcile validate examples/manifest.yaml

step "2. Plan against the sandbox: drift is found" \
     "reconcile plan examples/manifest.yaml --sandbox examples/sandbox.yaml"
reconcile plan examples/manifest.yaml --sandbox examples/sandbox.yaml --quiet || true

step "3. Apply (saving the sandbox's new state)" \
     "reconcile apply examples/manifest.yaml --sandbox examples/sandbox.yaml --auto-approve --sandbox-save after.yaml"
reconcile apply examples/manifest.yaml --sandbox examples/sandbox.yaml --auto-approve \
    --sandbox-save "$state/after.yaml" --quiet --log-file "$state/apply.jsonl" >/dev/null
echo "applied; $(wc -l < "$state/apply.jsonl") operations logged"

step "4. Plan again: nothing left to do" \
     "reconcile plan examples/manifest.yaml --sandbox after.yaml --detailed-exitcode"
reconcile plan examples/manifest.yaml --sandbox "$state/after.yaml" --detailed-exitcode --quiet

step "5. Someone shares the release candidate by hand; the next plan catches it" \
     "reconcile plan examples/manifest.yaml --sandbox drifted.yaml --detailed-exitcode"
sed "s/^  launch: \['444455556666'\]$/  launch: ['444455556666', '123412341234']/" \
    "$state/after.yaml" > "$state/drift.yaml"
reconcile plan examples/manifest.yaml --sandbox "$state/drift.yaml" --quiet --detailed-exitcode \
    && exit 1 || [ $? -eq 2 ]
