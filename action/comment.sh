#!/usr/bin/env bash
# Posts ONE comment on the pull request with the plan, or with the validation or plan errors,
# and updates it on each push (found by a hidden marker in a comment by a bot).
set -euo pipefail
# shellcheck source=action/lib.sh
. "$(dirname "$0")/lib.sh"
# one comment per manifest: two plan workflows in one repository keep one comment each
marker="<!-- reconcile-plan $(printf '%s' "${MANIFEST:-amis.yaml}" | tr -cd 'A-Za-z0-9._/-') -->"
validate=$(read_code "$OUT/validate.exitcode")
plan=$(read_code "$OUT/plan.exitcode")
status=$(status_of plan "$validate" "$plan")
if [ "$validate" != 0 ]; then errors="$OUT/validate.err"; else errors="$OUT/plan.err"; fi
{
  echo "$marker"
  echo "### \`reconcile plan\`: $status"
  echo
  echo "Commit ${HEAD_SHA:0:7} · [workflow run]($RUN_URL)"
  echo
  if [ "$validate" = 0 ] && [ -f "$OUT/plan.md" ]; then
    # GitHub takes 65,536 characters in a comment; the artifact has the whole plan
    head -c 60000 "$OUT/plan.md"
  fi
  if [ "$status" != "no changes" ] && [ "$status" != "changes" ] && [ -s "$errors" ]; then
    echo
    echo '<details open><summary>Errors</summary>'
    echo
    fenced "$errors" 4000
    echo '</details>'
  fi
} >comment.md
existing=$(gh api "repos/$GH_REPO/issues/$PR_NUMBER/comments" --paginate \
  --jq ".[] | select(.user.type == \"Bot\" and (.body | contains(\"$marker\"))) | .id" | tail -n 1)
if [ -n "$existing" ]; then
  gh api --method PATCH "repos/$GH_REPO/issues/comments/$existing" -F body=@comment.md >/dev/null
  echo "Updated comment $existing."
else
  gh pr comment "$PR_NUMBER" --body-file comment.md
fi
