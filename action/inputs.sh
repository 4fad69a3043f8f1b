#!/usr/bin/env bash
# The action's inputs, checked before anything is installed: a typo fails in one line.
set -euo pipefail
case "${COMMAND:-}" in
  validate|plan|apply|verify|usage-reports|comment|report) ;;
  *) echo "::error::command: expected validate, plan, apply, verify, usage-reports, comment or report, got '${COMMAND:-}'"
     exit 1 ;;
esac
# the scripts and the virtual environment's layout are Linux's (GitHub-hosted ubuntu-*)
if [ "${RUNNER_OS:-Linux}" != Linux ]; then
  echo "::error::this action runs on Linux runners (runs-on: ubuntu-latest); this one is ${RUNNER_OS}"
  exit 1
fi
case "${COMMENT:-false}" in
  true|false) ;;
  *) echo "::error::comment: expected true or false, got '${COMMENT}'"; exit 1 ;;
esac
