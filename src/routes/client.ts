// GET /client.js: the browser client helper (src/client/notify-client.ts,
// compiled), so a page can `import { connectNotify } from '<service>/client.js'`.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'

/**
 * The compiled helper, read once at start. The path is the same from src/
 * (tests, tsx) and from dist/ (production): both sit one level below the
 * package root, and only the build emits the browser file. Undefined when the
 * package has not been built.
 */
export function loadClientScript(): string | undefined {
  try {
    const text = readFileSync(new URL('../../dist/client/notify-client.js', import.meta.url), 'utf8')
    // The source map is not served; a dangling reference would 404 in devtools.
    return text.replace(/\n\/\/# sourceMappingURL=.*\s*$/, '\n')
  } catch {
    return undefined
  }
}

export async function clientRoute(app: FastifyInstance, { script }: { script: string }): Promise<void> {
  const etag = `"${createHash('sha256').update(script).digest('base64url').slice(0, 22)}"`
  app.get('/client.js', async (request, reply) => {
    // Revalidated on every load (a cheap 304), so pages pick up a new version
    // as soon as the service is upgraded.
    reply.header('etag', etag).header('cache-control', 'no-cache')
    if (request.headers['if-none-match'] === etag) return reply.code(304).send()
    return reply.type('text/javascript; charset=utf-8').header('x-content-type-options', 'nosniff').send(script)
  })
}
