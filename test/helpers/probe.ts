// Small checks shared by the auth suites: who a stream belongs to, what a refusal said.
import type { Built } from './app.js'
import type { TestStream } from './sse.js'

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

/** The catalog code of a refused connect. */
export function errorCode(stream: TestStream): string {
  return (JSON.parse(stream.body) as { code: string }).code
}

/** Proves a stream belongs to `userId`: an event for that user arrives on it. */
export async function deliversTo(s: Built, stream: TestStream, userId: string): Promise<string | undefined> {
  await s.store({ recipient_id: userId, type: 'probe' })
  const [e] = await stream.nextEvents(1)
  return e?.event
}
