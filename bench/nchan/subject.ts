// Nchan as the subject of a bench/run.ts run: nginx (bench/nchan/nginx.ts),
// events published over HTTP (bench/nchan/publisher.ts), no Redis.
import { restingRss } from '../load/proc.js'
import type { Subject } from '../subject.js'
import { NCHAN_OPEN_COMMENT, startNchan } from './nginx.js'
import { NchanPublisher, nchanSender } from './publisher.js'

export async function startNchanSubject(upstream: string): Promise<Subject> {
  const nchan = await startNchan({ upstream })
  const pub = new NchanPublisher(nchan.pubPort)
  return {
    port: nchan.port,
    openComment: NCHAN_OPEN_COMMENT,
    publish: 'HTTP POST /pub/<user> (a broadcast: /pub/<user>,<user>,... 255 users per POST)',
    redis: 'none',
    sender: nchanSender(pub),
    pid: nchan.worker,
    cpu: () => ({ service: nchan.cpu(), redis: 0 }),
    rss: nchan.rss,
    // nginx gives nothing back to wait for; waiting as long as for the service keeps the procedure the same.
    restingRss: async () => {
      await restingRss(nchan.worker())
      return nchan.rss()
    },
    commandStats: async () => new Map(),
    log: nchan.log,
    crashed: nchan.crashed,
    stop: async () => {
      // nginx first, as the service: its fast shutdown closes the streams from its side.
      await nchan.stop()
      await pub.close()
    },
    measured: {
      cpu: 'nginx master + worker (Nchan has no Redis to count)',
      rss: 'nginx master + worker: RssAnon + RssFile of each, shared memory (RssShmem) once',
      connections: `worker_connections ${nchan.connections}`,
    },
  }
}
