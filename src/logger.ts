// pino options shared by the server and tests: JSON lines, errors under `err`,
// credentials redacted wherever they could appear.
import type { FastifyRequest } from 'fastify'
import type { LoggerOptions } from 'pino'

const CENSOR = '[REDACTED]'
// Query parameters that may carry a token (AUTH_ALLOW_QUERY_TOKEN).
const TOKEN_PARAMS: ReadonlySet<string> = new Set(['access_token', 'token'])
// Separators as the query parser sees them: `&` only (`;` is part of a value).
const QUERY_PARAM = /([?&])([^=&#]*)=([^&#]*)/g

/**
 * The URL with token-bearing query values replaced. Names are compared after
 * percent-decoding, as the query parser does (`access%5Ftoken` is `access_token`).
 */
export function redactUrl(url: string): string {
  if (!url.includes('?')) return url
  return url.replace(QUERY_PARAM, (whole, sep: string, name: string) =>
    TOKEN_PARAMS.has(decodeName(name)) ? `${sep}${name}=${CENSOR}` : whole,
  )
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' ')).toLowerCase()
  } catch {
    return name.toLowerCase()
  }
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
