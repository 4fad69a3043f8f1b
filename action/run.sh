#!/usr/bin/env bash
# Runs plan, apply, verify or usage-reports; records its exit code and output in OUT. Never
# fails the step (the upload and the result come after it): result.sh decides.
#   ARGS  extra arguments, split at blanks, never evaluated (no globbing, no $(...)).
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "$0")/lib.sh"
mkdir -p "$OUT"
# every line of a multi-line input too; empty stays empty (bash 3.2's set -u too)
extra=()
if [ -n "${ARGS:-}" ]; then read -r -d '' -a extra <<<"$ARGS" || true; fi
set +e
case "$COMMAND" in
  plan)
    # the plan's SARIF log replaces validate's; a plan that fails before it has one (an AWS
    # failure) leaves none, so code scanning keeps its last results
    rm -f "$OUT/reconcile.sarif" "$OUT/plan.md"
    # One plan, three renderings: the full text plan on stdout (the artifact keeps it), the
    # JSON with --out, and the Markdown where GITHUB_STEP_SUMMARY points (reconcile appends
    # it there: README, "Commands"); result.sh puts it in the job summary under the verdict.
    GITHUB_STEP_SUMMARY="$OUT/plan.md" reconcile plan "$MANIFEST" --out "$OUT/plan.json" \
      --sarif "$OUT/reconcile.sarif" --detailed-exitcode ${extra[@]+"${extra[@]}"} \
      >"$OUT/plan.txt" 2>"$OUT/plan.err"
    code=$?
    shown=("$OUT/plan.err") ;;
  apply)
    rm -f "$OUT/apply.jsonl"  # a workspace that is not cleaned keeps no earlier run's log
    reconcile apply "$MANIFEST" --auto-approve --log-file "$OUT/apply.jsonl" ${extra[@]+"${extra[@]}"} \
      >"$OUT/apply.txt" 2>&1
    code=$?
    shown=("$OUT/apply.txt") ;;
  verify)
    if [ -z "${CONSUMER_ROLE:-}" ]; then
      echo "error: consumer-role: the role template is required for verify" >"$OUT/verify.txt"
      code=1
    else
      reconcile verify "$MANIFEST" --consumer-role "$CONSUMER_ROLE" ${extra[@]+"${extra[@]}"} \
        >"$OUT/verify.txt" 2>&1
      code=$?
    fi
    shown=("$OUT/verify.txt") ;;
  usage-reports)
    reconcile usage-reports "$MANIFEST" ${extra[@]+"${extra[@]}"} >"$OUT/usage-reports.txt" 2>&1
    code=$?
    shown=("$OUT/usage-reports.txt") ;;
  *)
    echo "::error::run.sh: no such command: $COMMAND"; exit 1 ;;
esac
set -e
echo "$code" >"$OUT/$COMMAND.exitcode"
if [ "$COMMAND" = apply ]; then
  # operations executed: the log's other records are bookkeeping (ownership tags, the
  # deprecation of retired builds), the manifest's own doing rather than drift corrected
  operations=0
  if [ -f "$OUT/apply.jsonl" ]; then
    operations=$(grep -vcE '"kind": "(ownership_tag|deprecation)"' "$OUT/apply.jsonl" || true)
  fi
  echo "$operations" >"$OUT/operations"
fi
show "${shown[@]}"
