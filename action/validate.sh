#!/usr/bin/env bash
# reconcile validate, offline: its errors become annotations at the manifest's lines, its
# SARIF log goes to OUT for code scanning. Never fails the step: result.sh decides.
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "$0")/lib.sh"
mkdir -p "$OUT"
set +e
reconcile validate "$MANIFEST" --sarif "$OUT/reconcile.sarif" >"$OUT/validate.out" 2>"$OUT/validate.err"
code=$?
set -e
echo "$code" >"$OUT/validate.exitcode"
echo "exitcode=$code" >>"$GITHUB_OUTPUT"
show "$OUT/validate.out" "$OUT/validate.err"
# "error: FILE:LINE:COL: message" -> an annotation on the pull request's diff. The message
# is reconcile's, neutralised by it: no newline, no leading "::".
sed -nE 's/^error: ([^:,]+):([0-9]+):([0-9]+): (.*)$/::error file=\1,line=\2,col=\3::\4/p' "$OUT/validate.err"
