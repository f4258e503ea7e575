// The service's own counters, read from GET /metrics (Prometheus text).

export interface RedisIntake {
  /** Events taken off Redis on the classic channel (NOTIFY_CHANNEL). */
  classic: number
  /** Events taken off Redis on users' own channels. */
  user: number
  /** Users' channels subscribed now. */
  userChannels: number
  /** Subscriber connections open now. */
  subscriberConnections: number
  /** Longest event-loop delay since the previous scrape (prom-client resets it on each), in ms. */
  eventLoopLagMaxMs: number
}

/** NaN for what a build does not report (one before per-user routing). */
export async function redisIntake(port: number): Promise<RedisIntake> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  if (!res.ok) throw new Error(`GET /metrics: ${res.status}`)
  const text = await res.text()
  const value = (name: string) => {
    const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)
    return m ? Number(m[1]) : NaN
  }
  return {
    classic: value('notify_redis_messages_total{channel="classic"}'),
    user: value('notify_redis_messages_total{channel="user"}'),
    userChannels: value('notify_redis_user_channels'),
    subscriberConnections: value('notify_redis_subscriber_connections'),
    eventLoopLagMaxMs: +(value('nodejs_eventloop_lag_max_seconds') * 1000).toFixed(1),
  }
}
