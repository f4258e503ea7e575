// Reading answers from auth servers (the upstream, an introspection endpoint):
// bounded in size, and described in logs without the request that carried the token.

/** Largest answer read; anything bigger is treated as a broken auth server. */
export const MAX_ANSWER_BYTES = 64 * 1024

/** Parses a JSON body of at most MAX_ANSWER_BYTES; throws on anything else. */
export async function readJson(res: Response): Promise<unknown> {
  const declared = Number(res.headers.get('content-length') ?? 0)
  if (declared > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`)
  if (res.body === null) throw new Error('empty answer')
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += chunk.byteLength
    if (size > MAX_ANSWER_BYTES) throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`)
    chunks.push(chunk)
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'))
}

/** A member of a JSON object; undefined for anything that is not an object. */
export function member(body: unknown, name: string): unknown {
  return body !== null && typeof body === 'object' && !Array.isArray(body)
    ? (body as Record<string, unknown>)[name]
    : undefined
}

/**
 * Hands the connection back to the keep-alive pool when the body was not read
 * (or not to the end): undici keeps a socket busy until its body is consumed.
 */
export async function release(res: Response): Promise<void> {
  if (res.bodyUsed === false) await res.body?.cancel().catch(() => {})
}

// Only the error's name, code and message: undici errors can carry request
// objects, and the request carries the token (and, for introspection, the client secret).
export function describe(err: unknown): Record<string, unknown> {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } }
  return { type: e?.name, code: e?.code ?? e?.cause?.code, message: e?.cause?.message ?? e?.message }
}
