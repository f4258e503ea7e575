// pino options shared by the server and tests: JSON lines, errors under `err`,
// credentials redacted wherever they could appear.
import type { FastifyRequest } from 'fastify'
import type { LoggerOptions } from 'pino'

const CENSOR = '[REDACTED]'
// Query parameters that may carry a token (AUTH_ALLOW_QUERY_TOKEN).
const TOKEN_IN_QUERY = /([?&](?:access_token|token)=)[^&#]*/gi

export function redactUrl(url: string): string {
  return url.replace(TOKEN_IN_QUERY, `$1${CENSOR}`)
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'headers.authorization',
        'headers.cookie',
        'res.headers["set-cookie"]',
      ],
      censor: CENSOR,
    },
    serializers: {
      // Fastify's default would log the raw URL, query token included.
      req: (req: FastifyRequest) => ({
        method: req.method,
        url: redactUrl(req.url),
        host: req.host,
        remoteAddress: req.ip,
        remotePort: req.socket?.remotePort,
      }),
    },
  }
}
