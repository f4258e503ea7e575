// Batching single requests into runs, with a bound on runs in flight.
import t from 'tap'
import { Batcher } from '../src/broker/batcher.js'

interface Deferred<T> {
  promise: Promise<T>
  resolve: (v: T) => void
  reject: (err: unknown) => void
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void
  let reject!: (err: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/**
 * A `run` the test drives: each call is recorded with a promise the test settles,
 * and `calls(n)` resolves once n calls have been made.
 */
function controlledRun<Q, R>() {
  const batches: { batch: Q[]; result: Deferred<R[]> }[] = []
  const waiters: { n: number; resolve: () => void }[] = []
  let running = 0
  let maxRunning = 0
  const run = (batch: Q[]): Promise<R[]> => {
    const result = deferred<R[]>()
    batches.push({ batch: [...batch], result })
    running++
    maxRunning = Math.max(maxRunning, running)
    const settled = () => running--
    result.promise.then(settled, settled)
    for (const w of waiters.filter((w) => batches.length >= w.n)) w.resolve()
    return result.promise
  }
  const calls = (n: number) =>
    batches.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))
  return { run, batches, calls, maxRunning: () => maxRunning }
}

/** The batcher flushes on setImmediate; an immediate queued after it runs after that flush. */
const afterFlush = () => new Promise<void>((resolve) => setImmediate(resolve))

t.test('requests made in one tick go in one run, each gets its own result', async (t) => {
  const calls: string[][] = []
  const b = new Batcher<string, string>(async (batch) => {
    calls.push([...batch])
    return batch.map((q) => q.toUpperCase())
  })
  const results = Promise.all([b.add('a'), b.add('b'), b.add('c')])
  t.equal(b.queued, 3, 'nothing runs synchronously')
  t.same(calls, [])
  t.same(await results, ['A', 'B', 'C'])
  t.same(calls, [['a', 'b', 'c']])

  // A later tick is a later run.
  t.same(await Promise.all([b.add('d'), b.add('e')]), ['D', 'E'])
  t.same(calls, [['a', 'b', 'c'], ['d', 'e']])
})

t.test('maxBatch splits one tick into several runs, in order', async (t) => {
  const calls: number[][] = []
  const b = new Batcher<number, number>(async (batch) => {
    calls.push([...batch])
    return batch.map((q) => q * 10)
  }, 2, 10)
  const results = await Promise.all([1, 2, 3, 4, 5].map((q) => b.add(q)))
  t.same(results, [10, 20, 30, 40, 50])
  t.same(calls, [[1, 2], [3, 4], [5]])
  t.equal(b.queued, 0)
})

t.test('no more than maxInFlight runs at once; a finished run lets the next one start', async (t) => {
  const r = controlledRun<number, number>()
  const b = new Batcher<number, number>(r.run, 1, 2)
  const results = [1, 2, 3, 4, 5].map((q) => b.add(q))
  await afterFlush()
  t.same(r.batches.map((x) => x.batch), [[1], [2]], 'two runs started')
  t.equal(b.queued, 3, 'the rest wait')

  // More requests while both slots are taken: they queue too, no run starts.
  const more = b.add(6)
  await afterFlush()
  t.equal(r.batches.length, 2)
  t.equal(b.queued, 4)

  r.batches[1]?.result.resolve([20])
  t.equal(await results[1], 20)
  await r.calls(3)
  t.same(r.batches[2]?.batch, [3], 'the next in order took the free slot')
  t.equal(r.batches.length, 3, 'one slot freed, one run started')

  r.batches[0]?.result.resolve([10])
  r.batches[2]?.result.resolve([30])
  await r.calls(5)
  t.same(r.batches.map((x) => x.batch), [[1], [2], [3], [4], [5]])
  r.batches[3]?.result.resolve([40])
  r.batches[4]?.result.resolve([50])
  await r.calls(6)
  r.batches[5]?.result.resolve([60])
  t.same(await Promise.all([...results, more]), [10, 20, 30, 40, 50, 60])
  t.equal(r.maxRunning(), 2, 'never more than two at once')
  t.equal(b.queued, 0)
})

t.test('batches and the in-flight bound together', async (t) => {
  const r = controlledRun<number, number>()
  const b = new Batcher<number, number>(r.run, 3, 1)
  const results = Array.from({ length: 7 }, (_, i) => b.add(i))
  await afterFlush()
  t.same(r.batches.map((x) => x.batch), [[0, 1, 2]])
  t.equal(b.queued, 4)
  r.batches[0]?.result.resolve([0, 10, 20])
  await r.calls(2)
  t.same(r.batches[1]?.batch, [3, 4, 5])
  r.batches[1]?.result.resolve([30, 40, 50])
  await r.calls(3)
  t.same(r.batches[2]?.batch, [6])
  r.batches[2]?.result.resolve([60])
  t.same(await Promise.all(results), [0, 10, 20, 30, 40, 50, 60])
  t.equal(r.maxRunning(), 1)
})

t.test('a failed run rejects each of its requests; later runs still run', async (t) => {
  const r = controlledRun<string, string>()
  const b = new Batcher<string, string>(r.run, 2, 1)
  const results = ['a', 'b', 'c', 'd'].map((q) => b.add(q))
  // Record how each settles, without leaving a rejection unhandled.
  const settled = results.map((p) => p.then((v) => ({ ok: true, v }), (err: unknown) => ({ ok: false, err })))
  await afterFlush()
  t.same(r.batches.map((x) => x.batch), [['a', 'b']])
  const boom = new Error('pipeline failed')
  r.batches[0]?.result.reject(boom)
  await r.calls(2)
  t.same(r.batches[1]?.batch, ['c', 'd'], 'the slot of the failed run was freed')
  r.batches[1]?.result.resolve(['C', 'D'])
  const out = await Promise.all(settled)
  t.equal(out[0]?.ok, false)
  t.equal((out[0] as { err: unknown }).err, boom, 'a rejects with the run\'s error')
  t.equal((out[1] as { err: unknown }).err, boom, 'b too')
  t.same(out.slice(2), [{ ok: true, v: 'C' }, { ok: true, v: 'D' }])

  // And the batcher is still usable afterwards.
  const e = b.add('e')
  await r.calls(3)
  r.batches[2]?.result.resolve(['E'])
  t.equal(await e, 'E')
})

t.test('a failed run among several in flight affects only its own requests', async (t) => {
  const b = new Batcher<number, number>(async (batch) => {
    if (batch.includes(3)) throw new Error('bad batch')
    return batch.map((q) => -q)
  }, 2, 4)
  const settled = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((q) => b.add(q)))
  t.same(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled'])
  t.same(settled.filter((s) => s.status === 'fulfilled').map((s) => (s as PromiseFulfilledResult<number>).value), [-1, -2, -5, -6])
  t.match((settled[2] as PromiseRejectedResult).reason, { message: 'bad batch' })
})
