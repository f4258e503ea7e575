#!/usr/bin/env bash
# Replays the README's quick start on this checkout: no Redis (embedded broker),
# the demo auth upstream, `.env.example` sourced, `npm start`; then a stream, a
# POST /publish, and a reconnect with Last-Event-ID that gets what it missed.
# Ports are free ones instead of 9000/8080 so CI never collides with anything.
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
[[ -f dist/server.js ]] || npm run build

step "demo auth upstream, .env.example, npm start (no REDIS_URL)"
APORT=$(free_port)
PORT=$APORT node examples/auth-upstream/server.mjs >"$WORK/auth.log" 2>&1 &
pids+=($!)
set -a; . ./.env.example; set +a
[[ -z ${REDIS_URL:-} ]] || fail ".env.example must leave REDIS_URL unset"
export PORT=$(free_port) AUTH_UPSTREAM_URL=http://127.0.0.1:$APORT/me HOST=127.0.0.1
BASE=http://127.0.0.1:$PORT
setsid npm start >"$WORK/service.log" 2>&1 &
groups+=($!)
wait_for 15 "/readyz" curl -sf "$BASE/readyz"
curl -s "$BASE/readyz"; echo
grep -q 'embedded broker' "$WORK/service.log" || fail "no single-instance warning logged"

step "a stream for user 42, then POST /publish"
curl -sN -H 'Authorization: Bearer demo-42' "$BASE/notify" >"$WORK/one.txt" &
pids+=($!)
wait_for 5 "stream opened" grep -q '^: connected' "$WORK/one.txt"
publish() {
  curl -s --max-time 5 -X POST "$BASE/publish" -H "Authorization: Bearer $PUBLISH_TOKEN" \
    -H 'content-type: application/json' -d "{\"recipient_id\":\"42\",\"type\":\"order.shipped\",\"order\":\"$1\"}"
}
answer=$(publish A-17)
echo "$answer"
id=$(node -e 'console.log(JSON.parse(process.argv[1]).published[0].id)' "$answer")
wait_for 5 "event delivered" grep -q "^id: $id\$" "$WORK/one.txt"
cat "$WORK/one.txt"

step "two events missed, then a reconnect with Last-Event-ID replays them"
publish A-18 >/dev/null
publish A-19 >/dev/null
curl -sN -H 'Authorization: Bearer demo-42' -H "Last-Event-ID: $id" "$BASE/notify" >"$WORK/two.txt" &
pids+=($!)
wait_for 5 "replay" grep -q 'A-19' "$WORK/two.txt"
cat "$WORK/two.txt"
[[ $(grep -c '^event: order.shipped' "$WORK/two.txt") == 2 ]] || fail "expected exactly the 2 missed events"
grep -q 'A-17' "$WORK/two.txt" && fail "the event before Last-Event-ID was replayed"
step "npm run demo (README's first screen): page, /client.js, sign-in, send, Ctrl-C"
DPORT=$(free_port)
DEMO=http://127.0.0.1:$DPORT
# Its own process group, as in a terminal: Ctrl-C goes to npm, sh, tsx and node alike.
PORT=$DPORT setsid npm run demo >"$WORK/demo.log" 2>&1 &
DPID=$!
groups+=("$DPID")
wait_for 60 "demo page at $DEMO/" is_200 "$DEMO/"
# Into files, then grep: `curl | grep -q` fails under pipefail whenever grep
# exits on its match before curl has written the rest (curl: broken pipe).
curl -sf -o "$WORK/demo-page.html" "$DEMO/" && grep -q 'id="sign-in"' "$WORK/demo-page.html" || fail "the demo page has no sign-in form"
curl -sf -o "$WORK/demo-client.js" "$DEMO/client.js" && grep -q 'export function connectNotify' "$WORK/demo-client.js" ||
  fail "the demo does not serve /client.js"
jar=$WORK/demo-cookies
curl -sf -c "$jar" -H 'content-type: application/json' -d '{"user":"alice"}' "$DEMO/demo/session" >/dev/null ||
  fail "demo sign-in failed"
curl -sN -b "$jar" "$DEMO/notify" >"$WORK/demo-stream.txt" &
pids+=($!)
wait_for 5 "demo stream opened with the sign-in cookie" grep -q '^: connected' "$WORK/demo-stream.txt"
curl -sf -b "$jar" -H 'content-type: application/json' -d '{"to":"alice","type":"job.finished","text":"CI says hi"}' \
  "$DEMO/demo/send" >/dev/null || fail "demo send failed"
wait_for 5 "the sent notification delivered" grep -q 'CI says hi' "$WORK/demo-stream.txt"
cat "$WORK/demo-stream.txt"
kill -INT -- -"$DPID"
for ((i = 0; i < 100; i++)); do alive "$DPID" || break; sleep 0.1; done
alive "$DPID" && fail "npm run demo still running 10 s after Ctrl-C"
echo "demo stopped on Ctrl-C"

step "quick start rehearsal passed"
