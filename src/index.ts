// The package's public entry. Node services that publish import createPublisher;
// those that embed the service (or test against it) import buildApp and loadConfig.
export {
  collapseIndexKey,
  createPublisher,
  historyKey,
  idempotencyKey,
  IdempotencyConflict,
  liveChannel,
  NotReplicated,
  PUBLISH_SCRIPT,
  type PublishOptions,
  type PublisherOptions,
} from './publisher.js'
export type { NotifyEvent, Published, Publisher } from './publish/publisher.js'
export { buildApp, type AppDeps, type Notifier } from './app.js'
export { loadConfig, ConfigError, type Config } from './config.js'
