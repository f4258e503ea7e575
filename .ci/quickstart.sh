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
npm start >"$WORK/service.log" 2>&1 &
pids+=($!)
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
step "quick start rehearsal passed"
