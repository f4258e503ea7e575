# Shared by the CI rehearsal scripts (sourced, not run). Sets ROOT and WORK (a
# temporary directory), a `pids` array whose processes are killed at exit, and a
# `groups` array of process groups (commands started with setsid, such as npm
# scripts: killing npm alone leaves its node child running), killed likewise;
# on failure the tail of $WORK/service.log is printed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
pids=()
groups=()

# fd 3 is this script's stderr: `fail` may run inside `wait_for`, whose command
# output goes to /dev/null, and the exit trap then inherits that redirection.
exec 3>&2

step() { printf '\n---- %s\n' "$*"; }
fail() { echo "FAIL: $*" >&3; exit 1; }

cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for group in "${groups[@]}"; do kill -- -"$group" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((rc != 0)) && [[ -f $WORK/service.log ]]; then
    echo "---- service log (last 40 lines)" >&3
    tail -n 40 "$WORK/service.log" >&3
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
# So that Ctrl-C or a CI timeout still runs the cleanup above.
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls `cmd...` every 0.1 s until it succeeds; fails after $1 seconds.
wait_for() {
  local secs=$1 what=$2 i; shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "$what: not within ${secs}s"
}
free_port() {
  node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })"
}
http_status() { # url [curl args...]
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true
}
is_200() { [[ $(http_status "$@") == 200 ]]; }
alive() { kill -0 "$1" 2>/dev/null; }
