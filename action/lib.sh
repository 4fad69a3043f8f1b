# shellcheck shell=bash
# Shared by the action's scripts (sourced, not run).

# Prints files that hold values from the pull request and from AWS (names, tags, Sids): the
# runner takes no workflow command from them (::stop-commands:: until a fresh random token
# comes back; actions/runner, "Stopping and starting workflow commands").
show() {
  local token
  token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  echo "::stop-commands::$token"
  local file
  for file in "$@"; do
    cat "$file"
    # the token must start a line, even after a file without a final newline
    if [ -s "$file" ] && [ "$(tail -c 1 "$file" | od -An -tx1 | tr -d ' ')" != 0a ]; then echo; fi
  done
  echo "::$token::"
}

# The exit code a step recorded in FILE, or nothing.
read_code() { if [ -f "$1" ]; then tr -d ' \n' <"$1"; fi; }

# The last BYTES bytes of FILE, from a line start (a line cut in two could open a fence).
tail_lines() {
  if [ "$(wc -c <"$1")" -gt "$2" ]; then tail -c "$2" "$1" | sed 1d; else cat "$1"; fi
}

# FILE's last BYTES bytes in a Markdown code fence longer than any run of backticks in them
# (so that no value in the output can close it).
fenced() {
  local content longest n fence
  content=$(tail_lines "$1" "$2")
  longest=$(printf '%s\n' "$content" | { grep -o '`\+' || true; } | awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }')
  n=$(( longest >= 3 ? longest + 1 : 3 ))
  fence=$(printf "%${n}s" '' | tr ' ' '`')
  printf '%s\n%s\n%s\n' "$fence" "$content" "$fence"
}

# One line saying how COMMAND went, from validate's exit code and the command's.
status_of() {
  local cmd=$1 validate=$2 code=$3
  if [ -z "$validate" ]; then
    echo "failed before validating the manifest (see the workflow run)"
  elif [ "$validate" != 0 ]; then
    echo "invalid manifest (reconcile validate exited $validate)"
  else
    case "$cmd:$code" in
      validate:0) echo "valid" ;;
      plan:0) echo "no changes" ;;
      plan:2) echo "changes" ;;
      plan:*) echo "failed (reconcile plan exited ${code:-before it ran}: an AWS failure or error findings)" ;;
      apply:0) echo "applied" ;;
      apply:*) echo "failed (reconcile apply exited ${code:-before it ran}: error findings, failed operations, an AWS failure or a guard refusal)" ;;
      verify:0) echo "every declared consumer can launch what is declared for it" ;;
      verify:3) echo "a declared consumer cannot launch an image declared for it" ;;
      usage-reports:0) echo "the usage reports the next plan needs are requested" ;;
      *) echo "failed (reconcile $cmd exited ${code:-before it ran})" ;;
    esac
  fi
}
