// Three instances behind a real nginx (deploy/nginx-fleet.conf) on one Redis
// server, as users meet them: Chromium pages through nginx (the client helper,
// several users and tabs; the plain EventSource script of the README), events
// published through nginx at a steady rate, a rolling deploy (each instance in
// turn SIGTERM and started again) and an instance killed with SIGKILL. Every
// page shows every event once, in order, without resync; every connect lands
// on a live instance. The figures (worst gap, connects per second, catch-up
// after SIGKILL) are printed as comments and quoted in the README ("Deploys").
// The scenario is test/helpers/fleet-scenario.ts; the Cluster run is
// test/fleet-cluster.fleet.ts.
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

t.test('a fleet of three on one Redis server: rolling deploy and SIGKILL under load', { skip }, (t) => fleetScenario(t, 'single'))
