// Process entry: read config, build the app, listen, shut down on signals.
import { pino } from 'pino'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { loggerOptions } from './logger.js'

async function main(): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${err.message}\n`)
    process.exit(1)
  }
  const logger = pino(loggerOptions(config.logLevel))
  const app = await buildApp(config, { logger })

  let stopping = false
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return
    stopping = true
    logger.info({ signal, streams: app.notifier.hub.size }, 'shutting down')
    // Bound the whole shutdown; unref so the timer itself keeps nothing alive.
    setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out; exiting')
      process.exit(1)
    }, config.shutdownTimeoutMs).unref()
    app.close().then(
      () => {
        logger.info('shut down cleanly')
        process.exit(0)
      },
      (err: unknown) => {
        logger.error({ err }, 'error during shutdown')
        process.exit(1)
      },
    )
  }
  // `on`, not `once`: a second signal must hit the guard above, not Node's
  // default handler, which would kill the process mid-drain.
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)

  await app.listen({ host: config.host, port: config.port, backlog: config.listenBacklog })
}

main().catch((err: unknown) => {
  process.stderr.write(`failed to start: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
