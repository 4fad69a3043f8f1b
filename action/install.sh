#!/usr/bin/env bash
# Installs reconcile into a virtual environment of its own (nothing changes in the job's
# Python) and puts its bin directory on PATH for the next steps.
#   RECONCILE_VERSION  empty: this action's own commit, with the dependencies of
#                      action/requirements.lock (hashes checked); 0.1.0: that release from PyPI;
#                      git+https://…@REF: that commit (or tag) of a repository.
#   PYTHON             the interpreter to build the environment with (default: python3)
set -euo pipefail
version="${RECONCILE_VERSION:-}"
if [ -z "$version" ]; then
  spec="${GITHUB_ACTION_PATH:?}"
elif [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+([abrc.]+[0-9]+|\.post[0-9]+|\.dev[0-9]+)*$ ]]; then
  spec="ami-share-reconciler==$version"
elif [[ "$version" =~ ^git\+https://[A-Za-z0-9./_-]+@[A-Za-z0-9._/-]+$ ]]; then
  spec="$version"
else
  echo "::error::version: expected empty (this action's commit), a release such as 0.1.0, or git+https://HOST/OWNER/REPOSITORY@COMMIT_SHA; got '$version'"
  exit 1
fi
venv="${RUNNER_TEMP:?}/reconcile-venv"
"${PYTHON:-python3}" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
if [ -z "$version" ]; then
  # This action's own commit: its dependencies and build backend exactly as locked, each
  # a wheel checked against its hash (action/requirements.lock; no source build, which
  # would fetch build tools of its own), then reconcile itself from the action's files,
  # with nothing else fetched.
  "${pip[@]}" install --quiet --require-hashes --no-deps --only-binary :all: \
    -r "$spec/action/requirements.lock"
  "${pip[@]}" install --quiet --no-deps --no-build-isolation "$spec"
  "${pip[@]}" check
else
  "${pip[@]}" install --quiet "$spec"
fi
echo "$venv/bin" >>"${GITHUB_PATH:?}"
"$venv/bin/reconcile" --version
