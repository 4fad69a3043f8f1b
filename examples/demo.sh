#!/bin/sh
# The whole story on the embedded sandbox, no AWS account needed: a plan that finds drift,
# apply, an empty plan, then new drift caught again.
#
# Every command is printed, then run exactly as printed, in the folder it works in
# (./reconcile-demo, or the folder given as the first argument). The folder is kept: look
# at the files, or copy any command and run it again there.
set -e
cd "$(dirname "$0")/.."
dir=${1:-reconcile-demo}
mkdir -p "$dir"
cp examples/manifest.yaml examples/sandbox.yaml "$dir/"
cd "$dir"
if [ -t 1 ]; then bold=$(printf '\033[1m'); plain=$(printf '\033[0m'); else bold=; plain=; fi

# step TITLE EXPECTED-EXIT COMMAND: print the command, run it, check its exit code.
step() {
    printf '\n%s== %s%s\n(in %s)\n$ %s\n' "$bold" "$1" "$plain" "$PWD" "$3"
    code=0
    sh -c "$3" || code=$?
    if [ "$code" -ne "$2" ]; then
        echo "demo: expected exit $2, got $code" >&2
        exit 1
    fi
}

step "1. Validate the manifest (offline)" 0 \
    "reconcile validate manifest.yaml"
step "2. Plan against the sandbox: drift is found (exit 2: changes)" 2 \
    "reconcile plan manifest.yaml --sandbox sandbox.yaml --detailed-exitcode"
step "3. Apply, saving the sandbox's new state and a log of every write" 0 \
    "reconcile apply manifest.yaml --sandbox sandbox.yaml --auto-approve --sandbox-save after.yaml --log-file apply.jsonl"
step "4. Plan again: nothing left to do (exit 0)" 0 \
    "reconcile plan manifest.yaml --sandbox after.yaml --detailed-exitcode"
step "5. Someone shares the release candidate by hand" 0 \
    "sed \"s/^  launch: \\['444455556666'\\]\$/  launch: ['444455556666', '123412341234']/\" after.yaml > drifted.yaml"
step "6. The next plan catches it (exit 2)" 2 \
    "reconcile plan manifest.yaml --sandbox drifted.yaml --detailed-exitcode"
printf '\nThe files are in %s.\n' "$PWD"
