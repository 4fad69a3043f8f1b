#!/usr/bin/env bash
# Sets the action's outputs, writes the job summary and fails the step when the manifest is
# invalid or the command failed (plan: 0 and 2 pass; apply and verify: only 0).
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "$0")/lib.sh"
validate=$(read_code "$OUT/validate.exitcode")
code=$validate
if [ "$validate" = 0 ] && [ "$COMMAND" != validate ]; then
  code=$(read_code "$OUT/$COMMAND.exitcode")
fi
changes=false
case "$COMMAND" in
  plan) if [ "$code" = 2 ]; then changes=true; fi ;;
  apply) if [ "$(read_code "$OUT/operations")" -gt 0 ] 2>/dev/null; then changes=true; fi ;;
esac
plan_json=""
if [ "$COMMAND" = plan ] && [ -f "$OUT/plan.json" ]; then plan_json="$OUT/plan.json"; fi
sarif=""
if [ -f "$OUT/reconcile.sarif" ]; then sarif="$OUT/reconcile.sarif"; fi
{
  echo "exitcode=$code"
  echo "has-changes=$changes"
  echo "plan-json=$plan_json"
  echo "sarif=$sarif"
} >>"$GITHUB_OUTPUT"

# The job summary: the Markdown plan (reconcile neutralises every value it holds), or the
# output in a fence. GitHub takes up to 1 MiB per step; the artifact keeps everything.
{
  echo "### \`reconcile $COMMAND\`: $(status_of "$COMMAND" "$validate" "$code")"
  echo
  if [ "$validate" != 0 ]; then
    body="$OUT/validate.err"
  elif [ "$COMMAND" = plan ] && [ -s "$OUT/plan.md" ]; then
    head -c 900000 "$OUT/plan.md"
    echo
    body="$OUT/plan.err"
  else
    body="$OUT/$COMMAND.txt"
    [ "$COMMAND" = validate ] && body="$OUT/validate.out"
  fi
  if [ -s "$body" ]; then
    fenced "$body" 60000
  fi
} >>"${GITHUB_STEP_SUMMARY:-/dev/null}"

case "$COMMAND:$code" in
  *:0|plan:2) echo "reconcile $COMMAND: $(status_of "$COMMAND" "$validate" "$code")" ;;
  *) echo "::error::reconcile $COMMAND: $(status_of "$COMMAND" "$validate" "$code")"; exit 1 ;;
esac
