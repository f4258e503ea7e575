// A publish request: validated as a whole, then one item per (event, recipient).
import t from 'tap'
import { type EventError, isEventError } from '../src/errors.js'
import { MAX_RECIPIENTS } from '../src/event.js'
import { prepareBatch, type BatchLimits } from '../src/publish/batch.js'

const LIMITS: BatchLimits = { maxEvents: 5, maxEventBytes: 1000 }

/** The error prepareBatch throws, checked to be a catalog error with details. */
function errorOf(body: unknown, limits = LIMITS): EventError {
  try {
    prepareBatch(body, limits)
  } catch (err) {
    if (!isEventError(err)) throw err
    return err
  }
  throw new Error('prepareBatch did not throw')
}

t.test('a single event: one item, data as sent', async (t) => {
  const event = { recipient_id: '42', type: 'order.shipped', order: 'A-17' }
  const batch = prepareBatch(event, LIMITS)
  t.same(batch.items, [{ event: 0, recipient: '42', type: 'order.shipped', data: JSON.stringify(event) }])
  t.same(batch.owners, [{ event: 0, recipient: '42' }])
})

t.test('a numeric recipient_id: the recipient is its string, data keeps the number', async (t) => {
  const batch = prepareBatch({ recipient_id: 42 }, LIMITS)
  t.strictSame(batch.items, [{ event: 0, recipient: '42', type: undefined, data: '{"recipient_id":42}' }])
})

t.test('an array of events: items in order, each owned by its index', async (t) => {
  const events = [{ recipient_id: 1, n: 0 }, { recipient_id: 'bob', type: 't', n: 1 }, { recipient_id: 1, n: 2 }]
  const batch = prepareBatch(events, LIMITS)
  t.same(batch.items.map((i) => [i.recipient, i.type, JSON.parse(i.data).n]), [['1', undefined, 0], ['bob', 't', 1], ['1', undefined, 2]])
  t.same(batch.owners, [{ event: 0, recipient: '1' }, { event: 1, recipient: 'bob' }, { event: 2, recipient: '1' }])
  t.same(batch.items.map((i) => i.event), [0, 1, 2], 'each item names its event (its idempotency marker does)')
  // An array of one is a batch of one, like a single event.
  t.same(prepareBatch([events[0]], LIMITS), prepareBatch(events[0], LIMITS))
})

t.test('an empty batch is an invalid event about the batch', async (t) => {
  const err = errorOf([])
  t.equal(err.code, 'NOTIFY_INVALID_EVENT')
  t.equal(err.statusCode, 400)
  t.same(err.details, { field: 'events' })
  t.equal(err.details.event, undefined)
})

t.test('too many events: 413 about the batch', async (t) => {
  const six = Array.from({ length: 6 }, (_, i) => ({ recipient_id: i }))
  const err = errorOf(six)
  t.equal(err.code, 'NOTIFY_EVENT_TOO_LARGE')
  t.equal(err.statusCode, 413)
  t.same(err.details, { field: 'events' })
  t.match(err.message, /6 events, at most 5/)
  t.equal(prepareBatch(six.slice(0, 5), LIMITS).items.length, 5, 'maxEvents itself is fine')
})

t.test('an invalid event names its index and field; nothing of the batch is prepared', async (t) => {
  const ok = { recipient_id: 1 }
  const cases: Array<[unknown, number, string]> = [
    [[ok, 'text'], 1, 'event'],
    [[ok, ok, null], 2, 'event'],
    [[[ok]], 0, 'event'],
    [[ok, {}], 1, 'recipient_id'],
    [[{ recipient_id: 1.5 }], 0, 'recipient_id'],
    [[ok, { recipient_ids: [] }], 1, 'recipient_ids'],
    [[ok, { recipient_ids: [1, null] }], 1, 'recipient_ids'],
    [[{ recipient_id: 1, recipient_ids: [2] }], 0, 'recipient_ids'],
    [[ok, ok, ok, { recipient_id: 1, type: 'a b' }], 3, 'type'],
    [[ok, { recipient_id: 1, type: 'resync' }], 1, 'type'],
    [{ recipient_id: 1, type: 7 }, 0, 'type'],
  ]
  for (const [body, event, field] of cases) {
    const err = errorOf(body)
    const name = JSON.stringify(body)
    t.equal(err.code, 'NOTIFY_INVALID_EVENT', name)
    t.equal(err.statusCode, 400, name)
    t.same(err.details, { event, field }, name)
    t.match(err.message, new RegExp(`^event ${event}, ${field}: `), name)
  }
})

t.test('an event over maxEventBytes: 413 naming the event', async (t) => {
  const limits = { maxEvents: 5, maxEventBytes: 100 }
  const fits = { recipient_id: 1, p: 'a'.repeat(100 - '{"recipient_id":1,"p":""}'.length) }
  t.equal(Buffer.byteLength(JSON.stringify(fits)), 100)
  t.equal(prepareBatch(fits, limits).items.length, 1, 'exactly maxEventBytes fits')

  const over = { recipient_id: 1, p: 'é'.repeat(40) } // 40 characters, 80 bytes of them
  t.ok(JSON.stringify(over).length <= 100, 'under the limit in characters')
  const err = errorOf([fits, fits, over], limits)
  t.equal(err.code, 'NOTIFY_EVENT_TOO_LARGE')
  t.equal(err.statusCode, 413)
  t.same(err.details, { event: 2, field: 'event' })
})

t.test('recipient_ids: one item per distinct recipient, each naming only its own', async (t) => {
  const event = { recipient_ids: [42, 'bob', 7], type: 'ping', n: 1 }
  const batch = prepareBatch(event, LIMITS)
  t.same(batch.items.map((i) => i.recipient), ['42', 'bob', '7'])
  t.same(batch.items.map((i) => i.type), ['ping', 'ping', 'ping'])
  const data = batch.items.map((i) => JSON.parse(i.data))
  t.strictSame(data, [
    { recipient_id: 42, type: 'ping', n: 1 },
    { recipient_id: 'bob', type: 'ping', n: 1 },
    { recipient_id: 7, type: 'ping', n: 1 },
  ], 'recipient_id is the value as sent: a number stays a number')
  for (const d of data) t.notOk('recipient_ids' in d, 'the list of everyone is not sent')
  t.same(batch.owners, [{ event: 0, recipient: '42' }, { event: 0, recipient: 'bob' }, { event: 0, recipient: '7' }])
  t.same(event.recipient_ids, [42, 'bob', 7], 'the body is not modified')
})

t.test('recipient_ids that name one user twice give one item', async (t) => {
  const batch = prepareBatch([{ recipient_id: 'x' }, { recipient_ids: [42, '42', 'a', 42, 'a'] }], LIMITS)
  t.same(batch.items.map((i) => i.recipient), ['x', '42', 'a'])
  t.strictSame(JSON.parse(batch.items[1]?.data ?? ''), { recipient_id: 42 }, 'the first value as sent')
  t.same(batch.owners, [{ event: 0, recipient: 'x' }, { event: 1, recipient: '42' }, { event: 1, recipient: 'a' }])
})

t.test('the byte limit applies to each recipient\'s copy', async (t) => {
  const limits = { maxEvents: 5, maxEventBytes: 60 }
  // The whole event (with the list) is over, each copy is under: accepted.
  const many = { recipient_ids: Array.from({ length: 20 }, (_, i) => i), p: 'x' }
  t.ok(Buffer.byteLength(JSON.stringify(many)) > 60)
  t.equal(prepareBatch(many, limits).items.length, 20)
  // One recipient's copy over (a long id): the event is refused.
  const err = errorOf([{ recipient_id: 1 }, { recipient_ids: [1, 'u'.repeat(60)] }], limits)
  t.same(err.details, { event: 1, field: 'event' })
  t.equal(err.code, 'NOTIFY_EVENT_TOO_LARGE')
})

t.test('the most recipients one event may name', async (t) => {
  const ids = Array.from({ length: MAX_RECIPIENTS }, (_, i) => i)
  t.equal(prepareBatch({ recipient_ids: ids }, { maxEvents: 1, maxEventBytes: 1000 }).items.length, MAX_RECIPIENTS)
  const err = errorOf({ recipient_ids: [...ids, MAX_RECIPIENTS] })
  t.same(err.details, { event: 0, field: 'recipient_ids' })
})
