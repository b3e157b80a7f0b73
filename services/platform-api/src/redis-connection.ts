// One way to open the platform's Redis connections (sign-in counters, replay check, report events): the
// credentials released by the key broker, bounded retries and timeouts so a Redis that does not answer
// fails a command quickly (each caller has its fallback), and connection errors left to the commands.
import { Redis } from "ioredis";

export interface RedisConnectionOptions {
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /** Command timeout in ms (none by default: a subscriber waits for messages). */
  readonly commandTimeoutMs?: number;
  /** Reconnection attempts a command waits for before it fails (default 1). */
  readonly maxRetriesPerRequest?: number;
}

/** A Redis connection that keeps reconnecting; its errors surface on the commands that fail. */
export function connectRedis(options: RedisConnectionOptions): Redis {
  const redis = new Redis(options.url, {
    ...(options.username === undefined ? {} : { username: options.username }),
    ...(options.password === undefined ? {} : { password: options.password }),
    maxRetriesPerRequest: options.maxRetriesPerRequest ?? 1,
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeout: options.commandTimeoutMs }),
  });
  redis.on("error", () => undefined);
  return redis;
}
