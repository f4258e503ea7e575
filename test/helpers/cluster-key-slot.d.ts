// cluster-key-slot (a dependency of ioredis, shipped without types): the Redis
// Cluster hash slot of a key, honouring {hash tags}. Names follow its lib/index.js.
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string | Buffer): number
  export function generateMulti(keys: Array<string | Buffer>): number
}
