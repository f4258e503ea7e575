// Three instances behind a real nginx (deploy/nginx-fleet.conf) on the local
// Redis Cluster (3 masters, 3 replicas), as users meet them: the scenario of
// test/fleet.fleet.ts (Chromium pages through nginx, events published at a
// steady rate, a rolling deploy, a SIGKILL), with the users' channels and
// histories spread over three masters. Every page shows every event once, in
// order, without resync; every connect lands on a live instance. The scenario
// is test/helpers/fleet-scenario.ts.
import t from 'tap'
import { findNginx } from './helpers/fleet-nginx.js'
import { fleetScenario } from './helpers/fleet-scenario.js'
import { noYaml } from './helpers/manifests.js'

const skip = (findNginx() === undefined && 'nginx not found; install it (sudo apt-get install -y nginx)') || noYaml()
if (skip && process.env.CI) t.fail(skip)
// About 90 s alone (the Cluster's a little more): three deploy steps each wait
// for a plain EventSource's 3 s retry and the restarted instance's /readyz.
// Beside other files on two cores it can pass 120 s.
t.setTimeout(240_000)

t.test('a fleet of three on a Redis Cluster: rolling deploy and SIGKILL under load', { skip }, (t) => fleetScenario(t, 'cluster'))
