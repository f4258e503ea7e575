// cluster-key-slot (ioredis's own dependency) ships no types.
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot of a key or shard channel (CRC16 of its hash tag), 0 to 16383. */
  export default function calculateSlot(key: string | Buffer): number
}
