#!/usr/bin/env bash
# The action's inputs, checked before anything is installed: a typo fails in one line.
set -euo pipefail
case "${COMMAND:-}" in
  validate|plan|apply|verify|comment|report) ;;
  *) echo "::error::command: expected validate, plan, apply, verify, comment or report, got '${COMMAND:-}'"
     exit 1 ;;
esac
case "${COMMENT:-false}" in
  true|false) ;;
  *) echo "::error::comment: expected true or false, got '${COMMENT}'"; exit 1 ;;
esac
