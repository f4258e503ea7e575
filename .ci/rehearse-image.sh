#!/usr/bin/env bash
# Rehearses the Dockerfile's runtime stage without a Docker engine: package.json,
# package-lock.json and dist/ alone in a clean directory, `npm ci --omit=dev`,
# NODE_ENV=production, `node dist/server.js` in an environment holding only the
# notify service's `environment:` from docker-compose.yml (as `docker-compose
# config` resolves it), next to a real redis-server and the demo auth upstream.
# Outside Docker only these differ: the compose service names in URLs (`redis`,
# `auth`) become 127.0.0.1 with the rehearsal's ports, and HOST/PORT are the
# rehearsal's. Then it checks the image's HEALTHCHECK command, delivers one event
# end to end, and stops the service with SIGTERM, which must exit 0. Catches what
# `npm test` cannot: a runtime import of a dev dependency, a file missing from
# dist/, a broken entry point or shutdown, a compose environment the service
# refuses. Not rehearsed: the non-root user, the base image itself.
# It runs on the `node` first on PATH (npm included, whose script runs on it):
# .ci/run runs it on the image's Node (.ci/image-node.sh) and on the machine's.
# shellcheck source=.ci/lib.sh
. "$(dirname "$0")/lib.sh"

step "node: $(node --version) ($(command -v node)), npm $(npm --version)"

step "build (only when dist/ is missing or older than src/)"
if [[ ! -f $ROOT/dist/server.js ]] || [[ -n $(find "$ROOT/src" -newer "$ROOT/dist/server.js" -print -quit) ]]; then
  (cd "$ROOT" && npm run build)
else
  echo "dist/ is up to date"
fi

step "clean directory with production dependencies only: $WORK/app"
mkdir "$WORK/app"
cp "$ROOT/package.json" "$ROOT/package-lock.json" "$WORK/app/"
cp -R "$ROOT/dist" "$WORK/app/dist"
cp -R "$ROOT/redis" "$WORK/app/redis"
(cd "$WORK/app" && NODE_ENV=production npm ci --omit=dev --no-audit --no-fund)

step "redis-server and the demo auth upstream"
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
pids+=($!)
wait_for 5 "redis-server on :$RPORT" bash -c "redis-cli -p $RPORT ping 2>/dev/null | grep -q PONG"
APORT=$(free_port)
PORT=$APORT node "$ROOT/examples/auth-upstream/server.mjs" >"$WORK/auth.log" 2>&1 &
pids+=($!)
wait_for 5 "auth upstream on :$APORT" is_200 "http://127.0.0.1:$APORT/healthz"

step "the notify service's environment, from docker-compose.yml"
# `docker-compose config` resolves the file as Compose does (interpolation such as
# ${PUBLISH_TOKEN:-...}, a .env file); python3 and PyYAML come with docker-compose.
# Prints KEY=VALUE entries, NUL-separated (values may hold newlines, e.g. a PEM key).
docker-compose -f "$ROOT/docker-compose.yml" config >"$WORK/compose.yml" || fail "docker-compose config failed"
python3 - "$WORK/compose.yml" "redis=127.0.0.1:$RPORT" "auth=127.0.0.1:$APORT" >"$WORK/notify.env" <<'PY' || fail "cannot take the notify environment from docker-compose.yml"
import re, sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
where = dict(arg.split("=", 1) for arg in sys.argv[2:])  # compose service -> host:port here
env = services["notify"].get("environment") or {}
if isinstance(env, list):
    env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)

def rehost(match):
    name = match.group(2)
    if name in where:
        return match.group(1) + where[name]
    if name in services:
        sys.exit(f"no rehearsal address for the compose service {name!r} (in {match.group(0)})")
    return match.group(0)

for key, value in env.items():
    # HOST and PORT are the rehearsal's; a bare name without a value is taken
    # from the shell that runs compose, and is unset here.
    if key in ("HOST", "PORT") or value is None:
        continue
    # scheme://[user:password@]host[:port]
    value = re.sub(r"(//(?:[^@/\s]*@)?)([A-Za-z0-9_.-]+)(:[0-9]+)?", rehost, str(value))
    sys.stdout.write(f"{key}={value}\0")
PY
compose_env=()
while IFS= read -r -d '' entry; do compose_env+=("$entry"); done <"$WORK/notify.env"
((${#compose_env[@]})) || fail "docker-compose.yml: the notify service has no environment"
# Shown without values of secrets.
for entry in "${compose_env[@]}"; do
  if [[ ${entry%%=*} =~ TOKEN|SECRET|PASSWORD|KEY ]]; then echo "${entry%%=*}=(set)"; else echo "$entry"; fi
done
compose_value() { # name: its value in the compose environment, or empty
  local entry
  for entry in "${compose_env[@]}"; do
    if [[ ${entry%%=*} == "$1" ]]; then printf '%s' "${entry#*=}"; fi
  done
}
PUBLISH_TOKEN=$(compose_value PUBLISH_TOKEN)
[[ -n $PUBLISH_TOKEN ]] || fail "docker-compose.yml: the notify service sets no PUBLISH_TOKEN; the rehearsal publishes with it"
CHANNEL=$(compose_value NOTIFY_CHANNEL)
CHANNEL=${CHANNEL:-notifications}

step "start the service as the image does (node dist/server.js, NODE_ENV=production, the compose environment)"
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
cd "$WORK/app"
# env -i: nothing from this shell leaks in; NODE_ENV is the image's ENV, which
# Compose's environment may override, as in a container.
env -i PATH="$PATH" HOME="$HOME" NODE_ENV=production "${compose_env[@]}" HOST=127.0.0.1 PORT="$PORT" \
  node dist/server.js >"$WORK/service.log" 2>&1 &
SVC=$!
pids+=("$SVC")
cd "$ROOT"
healthy() { alive "$SVC" || fail "service exited early"; is_200 "$BASE/healthz"; }
wait_for 15 "GET /healthz = 200" healthy
echo "/healthz 200"
# The subscription comes up after listen; an event published before it is lost.
wait_for 10 "GET /readyz = 200 (Redis subscription active)" is_200 "$BASE/readyz"
echo "/readyz 200"

step "the Dockerfile's HEALTHCHECK command, as written there"
# Run from the clean directory so it cannot lean on the repo's node_modules.
(cd "$WORK/app" && PORT=$PORT node -e '
  const line = require("node:fs").readFileSync(process.argv[1], "utf8").replace(/\\\n/g, " ").split("\n").find((l) => l.startsWith("HEALTHCHECK"))
  const [cmd, ...args] = JSON.parse(line.slice(line.indexOf("CMD") + 3))
  const r = require("node:child_process").spawnSync(cmd, args, { stdio: "inherit", timeout: 5000 })
  process.exit(r.status ?? 1)
' "$ROOT/Dockerfile") || fail "HEALTHCHECK command failed"
echo "HEALTHCHECK exits 0"

step "GET /client.js: the browser helper ships in the image (dist/client)"
# Into a file, then grep: `curl | grep -q` fails under pipefail whenever grep
# exits on its match before curl has written the rest (curl: broken pipe).
curl -sf -o "$WORK/client.js" "$BASE/client.js" || fail "GET /client.js failed"
grep -q 'export function connectNotify' "$WORK/client.js" || fail "/client.js missing from the production build"
echo "/client.js 200"

step "a bad token is refused"
code=$(http_status "$BASE/notify" -H 'Authorization: Bearer nope')
[[ $code == 401 ]] || fail "bad token: expected 401, got $code"
echo "401"

step "one event end to end"
curl -sN -H 'Authorization: Bearer demo-42' "$BASE/notify" >"$WORK/stream.txt" 2>&1 &
pids+=($!)
wait_for 5 "stream opened (retry: received)" grep -q '^retry:' "$WORK/stream.txt"
receivers=$(redis-cli -p "$RPORT" PUBLISH "$CHANNEL" '{"recipient_id":"42","type":"ci.check","ok":true}')
[[ $receivers == 1 ]] || fail "PUBLISH reached $receivers subscribers, expected 1"
wait_for 5 "event delivered" grep -q '^event: ci.check' "$WORK/stream.txt"
grep -q '^data: .*"recipient_id":"42"' "$WORK/stream.txt" || fail "data line missing"

step "POST /publish: stored with an id (the Lua script from redis/), delivered"
answer=$(curl -s --max-time 5 -X POST "$BASE/publish" -H "Authorization: Bearer $PUBLISH_TOKEN" \
  -H 'content-type: application/json' -d '{"recipient_id":42,"type":"ci.stored"}')
echo "$answer"
[[ $answer == *'"id":"'* ]] || fail "POST /publish: no id in $answer"
wait_for 5 "stored event delivered" grep -q '^event: ci.stored' "$WORK/stream.txt"
grep -q '^id: [0-9]*-[0-9]*\.[0-9a-f]\{8\}$' "$WORK/stream.txt" || fail "no id: line"
cat "$WORK/stream.txt"

step "SIGTERM: clean shutdown, exit 0"
kill -TERM "$SVC"
# The service bounds its own shutdown (SHUTDOWN_TIMEOUT_MS, 10 s); allow a bit more.
for ((i = 0; i < 150; i++)); do alive "$SVC" || break; sleep 0.1; done
alive "$SVC" && fail "service still running 15s after SIGTERM"
rc=0; wait "$SVC" || rc=$?
((rc == 0)) || fail "service exited $rc after SIGTERM"
echo "exited 0"

step "image rehearsal passed"
