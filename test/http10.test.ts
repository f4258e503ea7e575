// Streams are written straight to the socket as HTTP/1.1 chunks once the head
// is out; an HTTP/1.0 client gets no chunked encoding and must still read events.
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { build } from './helpers/app.js'

t.test('an HTTP/1.0 client gets a plain (not chunked) event stream', async (t) => {
  const s = await build(t, { broker: 'embedded' })
  const socket = connect({ port: Number(new URL(s.base).port), host: '127.0.0.1' })
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  let raw = ''
  socket.setEncoding('latin1')
  socket.on('data', (d: string) => (raw += d))
  const opened = once(s.app.notifier.hub, 'open')
  socket.write('GET /notify HTTP/1.0\r\nAuthorization: Bearer user-old\r\n\r\n')
  await opened
  await s.store({ recipient_id: 'old', type: 'note', n: 1 })
  while (!raw.includes('"n":1')) await once(socket, 'data')
  const [head, body] = raw.split('\r\n\r\n', 2) as [string, string]
  t.match(head, /^HTTP\/1\.1 200 OK/)
  t.notMatch(head, /transfer-encoding/i, 'no chunked encoding for HTTP/1.0')
  t.equal(head.match(/^connection:/gim)?.length, 1, 'one Connection header')
  t.match(head, /^connection: close\r?$/im, 'the body ends with the connection, and the head says so')
  t.match(body, /^retry: \d+\n\n: connected\n\nevent: position\nid: [^\n]+\ndata: \{\}\n\nevent: note\nid: [^\n]+\ndata: \{"recipient_id":"old","type":"note","n":1\}\n\n$/)
})
