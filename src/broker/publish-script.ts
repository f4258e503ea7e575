// redis/publish.lua, loaded once, and the one way this package calls it: one
// EVALSHA per (event, recipient), all in one pipeline. Shared by the service's
// Redis broker and by the publisher exported for Node services.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Redis } from 'ioredis'
import type { PublishItem } from './broker.js'

export const PUBLISH_SCRIPT = readFileSync(new URL('../../redis/publish.lua', import.meta.url), 'utf8')
export const PUBLISH_SCRIPT_SHA = createHash('sha1').update(PUBLISH_SCRIPT).digest('hex')

/** The key of one recipient's history. The braces make it one Redis Cluster hash slot. */
export function historyKey(channel: string, recipient: string): string {
  return `${channel}:history:{${recipient}}`
}

export interface ScriptOptions {
  channel: string
  historySize: number
  historyTtlS: number
}

/** Runs the script for each item; resolves to the ids (null when history is off). */
export async function runPublishScript(redis: Redis, items: readonly PublishItem[], opts: ScriptOptions): Promise<(string | null)[]> {
  const ids: (string | null)[] = new Array(items.length).fill(null)
  let todo = items.map((_, i) => i)
  for (let attempt = 0; todo.length > 0; attempt++) {
    const pipeline = redis.pipeline()
    for (const i of todo) {
      const item = items[i] as PublishItem
      pipeline.evalsha(
        PUBLISH_SCRIPT_SHA, 1, historyKey(opts.channel, item.recipient),
        opts.channel, item.recipient, item.type ?? '', item.data, opts.historySize, opts.historyTtlS,
      )
    }
    const results = (await pipeline.exec()) ?? []
    const again: number[] = []
    todo.forEach((itemIndex, k) => {
      const [err, id] = results[k] ?? [new Error('no reply')]
      if (err && attempt === 0 && err.message.startsWith('NOSCRIPT')) again.push(itemIndex)
      else if (err) throw err
      else ids[itemIndex] = (id as string | null) ?? null
    })
    // A Redis restart (or SCRIPT FLUSH) empties the script cache; load it and
    // rerun what did not run. Calls that ran are never rerun: no duplicates.
    if (again.length > 0) await redis.script('LOAD', PUBLISH_SCRIPT)
    todo = again
  }
  return ids
}
