// Who has a stream open anywhere, asked of Redis without publishing anything:
// an instance subscribes to a user's own channel with their first stream and
// unsubscribes after the last (subscriptions.ts), so PUBSUB SHARDNUMSUB on the
// master serving the channel's slot counts the instances holding a stream of
// the user (each holds one subscriber connection per master). PUBSUB answers
// from the node it is sent to only (ioredis would send it to any node), so on
// a Cluster each channel is asked of its slot's master: one command per
// master for a whole batch.
import { Cluster } from 'ioredis'
import type { Presence } from './broker.js'
import { liveChannel } from './keys.js'
import { groupByNode, masterOf } from './node-groups.js'
import type { CommandClient } from './redis-clients.js'

/** One answer per user, in order. Rejects if a node cannot be asked (slot unknown, disconnected, an error). */
export async function askPresence(client: CommandClient, channel: string, users: readonly string[]): Promise<Presence[]> {
  const channels = users.map((user) => liveChannel(channel, user))
  const answers: Presence[] = new Array(users.length)
  await Promise.all(
    groupByNode(client, channels).map(async (group) => {
      const node = nodeFor(client, channels[group[0] as number] as string)
      const reply = (await node.call('PUBSUB', 'SHARDNUMSUB', ...group.map((i) => channels[i] as string))) as unknown[]
      // [channel, count, channel, count, ...], in the order asked.
      group.forEach((i, k) => {
        const instances = Number(reply[2 * k + 1])
        if (!Number.isInteger(instances)) throw new Error(`PUBSUB SHARDNUMSUB: unexpected reply ${JSON.stringify(reply)}`)
        answers[i] = { online: instances > 0, instances }
      })
    }),
  )
  return answers
}

/** The connection to the node serving `channel`: the client itself, or the Cluster master of its slot. */
function nodeFor(client: CommandClient, channel: string): Pick<CommandClient, 'call'> {
  if (!(client instanceof Cluster)) return client
  const key = masterOf(client, channel)
  const node = key === undefined ? undefined : client.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === key)
  if (node === undefined) throw new Error(`no known master serves the slot of ${channel} (slot map being refreshed)`)
  return node
}
