// Moving one hash slot between masters the way `redis-cli --cluster reshard`
// does, step by step, so a test can stop half-way (clients then get ASK for the
// keys already moved) and finish later (clients then get MOVED from the old owner).
// https://redis.io/docs/latest/commands/cluster-setslot/
import type { Redis } from 'ioredis'

export interface SlotMigration {
  slot: number
  from: number
  to: number
  /** Keys moved so far. */
  readonly moved: number
  /** MIGRATE up to `n` more keys (all remaining by default), 100 per command. */
  moveKeys(n?: number): Promise<number>
  /** Moves the remaining keys, gives the slot to `to` on every master, waits for agreement. */
  finish(): Promise<void>
}

export interface MigrationContext {
  admin(port: number): Redis
  idOf(port: number): string
  /** Ports of the live masters other than `from` and `to`. */
  otherMasters(from: number, to: number): number[]
  /** Resolves when every node agrees that `to` owns `slot`. */
  agreed(slot: number, from: number, to: number): Promise<void>
}

export async function beginMigration(ctx: MigrationContext, slot: number, from: number, to: number, keys = 0): Promise<SlotMigration> {
  if (from === to) throw new Error(`slot ${slot} is already on ${to}`)
  const src = ctx.admin(from)
  // Importing first: once the source says MIGRATING it sends ASK, and the destination must accept then.
  await ctx.admin(to).cluster('SETSLOT', slot, 'IMPORTING', ctx.idOf(from))
  await src.cluster('SETSLOT', slot, 'MIGRATING', ctx.idOf(to))
  let moved = 0
  const moveKeys = async (n = Infinity) => {
    let done = 0
    while (done < n) {
      const batch = (await src.cluster('GETKEYSINSLOT', slot, Math.min(100, n - done))) as string[]
      if (batch.length === 0) break
      await src.call('MIGRATE', '127.0.0.1', to, '', 0, 5000, 'KEYS', ...batch)
      done += batch.length
    }
    moved += done
    return done
  }
  await moveKeys(keys)
  return {
    slot,
    from,
    to,
    get moved() {
      return moved
    },
    moveKeys,
    finish: async () => {
      await moveKeys()
      // Destination first (it bumps its config epoch, so its claim wins in gossip),
      // then the source (it stops sending ASK), then the other masters (sooner than gossip).
      for (const port of [to, from, ...ctx.otherMasters(from, to)]) await ctx.admin(port).cluster('SETSLOT', slot, 'NODE', ctx.idOf(to))
      await ctx.agreed(slot, from, to)
    },
  }
}
