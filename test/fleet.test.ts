// Three instances behind a real nginx (deploy/nginx-fleet.conf), as users meet
// them, on one Redis server and then on the local Redis Cluster (3 masters, 3
// replicas: the users' channels and histories spread over three masters):
// Chromium pages through nginx (the client helper, several users and tabs; the
// plain EventSource script of the README), events published through nginx at a
// steady rate, a rolling deploy (each instance in turn SIGTERM and started
// again) and an instance killed with SIGKILL. Every page shows every event
// once, in order, without resync; every connect lands on a live instance. The
// figures (worst gap, connects per second, catch-up after SIGKILL) are printed
// as comments and quoted in the README ("Deploys"). The scenario is
// test/helpers/fleet-scenario.ts. One file, the two runs one after the other:
// each holds a browser, three instances and nginx, and two side by side on two
// cores slow each other (and the files beside them) down.
import t from 'tap'
import { findNginx } from './helpers/fleet-nginx.js'
import { fleetScenario } from './helpers/fleet-scenario.js'
import { noYaml } from './helpers/manifests.js'

const skip = (findNginx() === undefined && 'nginx not found; install it (sudo apt-get install -y nginx)') || noYaml()
if (skip && process.env.CI) t.fail(skip)
// About 45 s each alone; beside another file and a CPU hog on two cores, up to
// 140 s each (a restarted instance then needs 15-20 s to be ready).
t.setTimeout(420_000)

t.test('a fleet of three on one Redis server: rolling deploy and SIGKILL under load', { skip }, (t) => fleetScenario(t, 'single'))
t.test('a fleet of three on a Redis Cluster: rolling deploy and SIGKILL under load', { skip }, (t) => fleetScenario(t, 'cluster'))
