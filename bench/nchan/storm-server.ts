// Nchan as the server of a storm (bench/storm.ts): nginx (bench/nchan/nginx.ts)
// with each event published by POST /pub/<user>; the id Nchan answers
// (last_message_id, `<time>:<tag>`) is the one the stream carries, so the
// storm's streams reconnect with Nchan's own ids as Last-Event-ID.
import type { StormServer } from '../storm-server.js'
import { NCHAN_OPEN_COMMENT, startNchan } from './nginx.js'
import { NchanPublisher } from './publisher.js'

export async function startNchanStormServer(o: { upstream: string; backlog: number | undefined }): Promise<StormServer> {
  const nchan = await startNchan({ upstream: o.upstream, ...(o.backlog !== undefined && { backlog: o.backlog }) })
  const pub = new NchanPublisher(nchan.pubPort)
  return {
    port: nchan.port,
    openComment: NCHAN_OPEN_COMMENT,
    pid: nchan.worker,
    cpu: nchan.cpu,
    rss: nchan.rss,
    // Two processes share the memory: the storm's polling of rss() says the peak.
    resetPeak: () => undefined,
    exited: nchan.crashed,
    publish: (events) =>
      Promise.all(
        events.map(async (e) => {
          const id = await pub.publish([e.recipient_id], JSON.stringify(e), e.type)
          if (id === undefined) throw new Error(`Nchan answered the publish to ${e.recipient_id} without last_message_id`)
          return id
        }),
      ),
    evidence: () => {
      const log = nchan.log()
      return log.lines > 0 ? { nginxLog: log } : {}
    },
    stop: async () => {
      await nchan.stop()
      await pub.close()
    },
  }
}
