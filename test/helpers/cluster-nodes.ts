// Pure parsing of CLUSTER NODES, for the cluster helper. One line per known node:
//   <id> <ip:port@cport[,hostname]> <flags> <master-id|-> <ping> <pong> <epoch> <link> <slot|range ...>
// The node's own line (flag "myself") also lists open slots as [slot->-id] (migrating)
// and [slot-<-id] (importing); other nodes' lines never do.
// https://redis.io/docs/latest/commands/cluster-nodes/

export interface NodeLine {
  id: string
  port: number
  flags: Set<string>
  /** The id of the master of a replica. */
  masterId: string | undefined
  ranges: Array<[number, number]>
  migrating: Map<number, string>
  importing: Map<number, string>
}

export function parseClusterNodes(text: string): NodeLine[] {
  const lines: NodeLine[] = []
  for (const line of text.split('\n')) {
    const f = line.trim().split(' ')
    if (f.length < 8) continue
    const [id = '', addr = '', flags = '', master = '-'] = f
    const line_: NodeLine = {
      id,
      port: Number(addr.split('@')[0]?.split(':').pop()),
      flags: new Set(flags.split(',')),
      masterId: master === '-' ? undefined : master,
      ranges: [],
      migrating: new Map(),
      importing: new Map(),
    }
    for (const s of f.slice(8)) {
      const open = /^\[(\d+)-([<>])-(\w+)\]$/.exec(s)
      if (open) (open[2] === '>' ? line_.migrating : line_.importing).set(Number(open[1]), open[3] ?? '')
      else {
        const [a, b = a] = s.split('-').map(Number)
        if (a !== undefined && b !== undefined) line_.ranges.push([a, b])
      }
    }
    lines.push(line_)
  }
  return lines
}

export const isMaster = (n: NodeLine) => n.flags.has('master')
/** FAIL is agreed by a majority of masters and broadcast; PFAIL ("fail?") is one node's opinion. */
export const isFailed = (n: NodeLine) => n.flags.has('fail')
export const owns = (n: NodeLine, slot: number) => n.ranges.some(([a, b]) => slot >= a && slot <= b)

/**
 * One node's view of the topology as a string: who is master of what, who
 * replicates whom, who has failed. Two nodes agree when their strings are equal.
 * PFAIL, ping times and link states are left out: they differ between nodes
 * even in a healthy cluster.
 */
export function topologyKey(lines: NodeLine[]): string {
  const portOf = new Map(lines.map((n) => [n.id, n.port]))
  return lines
    .filter((n) => !n.flags.has('handshake') && !n.flags.has('noaddr'))
    .map((n) => {
      const role = isMaster(n) ? 'master' : `replica-of-${portOf.get(n.masterId ?? '') ?? n.masterId}`
      const slots = n.ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')
      return `${n.port}:${role}${isFailed(n) ? ':fail' : ''}${slots ? `:${slots}` : ''}`
    })
    .sort()
    .join(' ')
}
