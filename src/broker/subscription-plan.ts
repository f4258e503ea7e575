// What one reconciling pass of subscriptions.ts must do, pure: from what Redis
// has confirmed (channel -> node) and what is wanted (channel -> the node that
// serves it now), which channels to subscribe where, which to drop, which were
// lost to a slot move, and which nodes need a subscriber connection.

export interface Plan {
  /** Confirmed on a node that no longer serves their slot: lost (a failover, a migration). */
  moved: string[]
  /** Confirmed but no longer wanted, per node. */
  unsubscribe: Map<string, string[]>
  /** Wanted but not confirmed where they belong now, per node. */
  subscribe: Map<string, string[]>
  /** Nodes in use: the classic channel's and every wanted channel's. */
  nodes: Set<string>
}

/**
 * `wanted` maps each wanted channel to the node serving it, undefined while the
 * slot map does not say (it is being refreshed): such a channel waits.
 */
export function planPass(
  active: ReadonlyMap<string, string>,
  wanted: ReadonlyMap<string, string | undefined>,
  classicNode: string | undefined,
): Plan {
  const plan: Plan = { moved: [], unsubscribe: new Map(), subscribe: new Map(), nodes: new Set() }
  if (classicNode !== undefined) plan.nodes.add(classicNode)
  for (const [channel, node] of active) if (!wanted.has(channel)) push(plan.unsubscribe, node, channel)
  for (const [channel, node] of wanted) {
    if (node === undefined) continue
    plan.nodes.add(node)
    const on = active.get(channel)
    if (on === node) continue
    if (on !== undefined) plan.moved.push(channel)
    push(plan.subscribe, node, channel)
  }
  return plan
}

/**
 * Channels one SSUBSCRIBE may carry: on a Cluster the server refuses channels
 * of different slots in one command (CROSSSLOT), so one command per slot;
 * otherwise chunks of `chunk`.
 */
export function commandGroups(channels: readonly string[], slotOf: ((channel: string) => number) | undefined, chunk: number): string[][] {
  if (slotOf === undefined) {
    const groups: string[][] = []
    for (let i = 0; i < channels.length; i += chunk) groups.push(channels.slice(i, i + chunk))
    return groups
  }
  const bySlot = new Map<number, string[]>()
  for (const channel of channels) push(bySlot, slotOf(channel), channel)
  return [...bySlot.values()]
}

/** A short key of a slot map (slot -> [master, ...replicas]): the ranges of slots with the same master. */
export function slotMapKey(slots: readonly (readonly string[] | undefined)[]): string {
  let key = ''
  let previous: string | undefined
  for (let slot = 0; slot < slots.length; slot++) {
    const master = slots[slot]?.[0]
    if (master !== previous) key += `${slot}:${master};`
    previous = master
  }
  return key
}

function push<K>(map: Map<K, string[]>, key: K, value: string): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}
