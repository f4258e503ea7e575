// Pipelines on a Redis Cluster must stay on one node: this splits a batch of
// per-recipient calls by the master serving each key's slot (ioredis's slot
// map), so a batch still costs one round trip per node, not one per call. On
// a single server or a Sentinel master everything is one group.
import calculateSlot from 'cluster-key-slot'
import { Cluster } from 'ioredis'
import type { CommandClient } from './redis-clients.js'

/** Indexes of `keys`, grouped by the node that serves them, in their original order. */
export function groupByNode(client: CommandClient, keys: readonly string[]): number[][] {
  const all = keys.map((_, i) => i)
  if (!(client instanceof Cluster)) return [all]
  const groups = new Map<string, number[]>()
  keys.forEach((key, i) => {
    // An unknown slot (the map is being refreshed) gets its own group; ioredis
    // then routes that pipeline, or fails it, on its own.
    const node = masterOf(client, key) ?? `slot:${calculateSlot(key)}`
    const group = groups.get(node)
    if (group === undefined) groups.set(node, [i])
    else group.push(i)
  })
  return [...groups.values()]
}

/** The master serving `key`'s slot, as the slot map names it (`host:port`); undefined while unknown. */
export function masterOf(client: Cluster, key: string): string | undefined {
  return client.slots[calculateSlot(key)]?.[0]
}
