// Reading answers from auth servers (the upstream, an introspection endpoint)
// and describing their failures in logs without the request that carried the token.

/** A member of a JSON object; undefined for anything that is not an object. */
export function member(body: unknown, name: string): unknown {
  return body !== null && typeof body === 'object' && !Array.isArray(body)
    ? (body as Record<string, unknown>)[name]
    : undefined
}

// Only the error's name, code and message: undici errors can carry request
// objects, and the request carries the token (and, for introspection, the client secret).
export function describe(err: unknown): Record<string, unknown> {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } }
  return { type: e?.name, code: e?.code ?? e?.cause?.code, message: e?.cause?.message ?? e?.message }
}
