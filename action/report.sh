#!/usr/bin/env bash
# After a scheduled apply: when it corrected drift (executed an operation) or failed, opens
# or updates ONE issue labelled reconcile-drift; the first later run with nothing to do
# closes it. A merge's changes are intended, so only scheduled runs report.
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "$0")/lib.sh"
label=reconcile-drift
today=$(date -u +%Y-%m-%d)
apply=$(read_code "$OUT/apply.exitcode")
validate=$(read_code "$OUT/validate.exitcode")
operations=$(read_code "$OUT/operations")
open=$(gh issue list --state open --label "$label" --limit 1 --json number --jq '.[0].number // empty')
if [ "$apply" = 0 ] && [ "${operations:-0}" = 0 ]; then
  if [ -n "$open" ]; then
    gh issue close "$open" --comment "No drift found on $today ([run]($RUN_URL)): AWS matches the manifest."
  fi
  echo "No drift."
  exit 0
fi
if [ "$apply" = 0 ]; then
  title="AMI sharing drift corrected on $today"
  status="The scheduled apply found AMI sharing that differed from the manifest and corrected it ($operations operations)."
else
  title="AMI sharing: scheduled apply failed on $today"
  status="The scheduled apply failed ($(status_of apply "$validate" "$apply")); AWS may still differ from the manifest."
fi
{
  echo "$status See the [workflow run]($RUN_URL) for the full log and the artifacts."
  echo
  echo "Someone may have shared (or unshared) an AMI by hand: the manifest is the place for that change."
  echo
  if [ -s "$OUT/apply.txt" ]; then
    fenced "$OUT/apply.txt" 50000
  elif [ -s "$OUT/validate.err" ]; then
    fenced "$OUT/validate.err" 50000
  fi
} >issue.md
if [ -n "$open" ]; then
  gh issue edit "$open" --title "$title" --body-file issue.md
  gh issue comment "$open" --body "$title ([run]($RUN_URL))."
else
  gh label create "$label" --color D93F0B --force \
    --description "AMI sharing corrected or failed in a scheduled reconcile apply"
  gh issue create --title "$title" --label "$label" --body-file issue.md
fi
