// Fixed-window counters for sign-in limits. In memory they count per replica; on Redis every replica shares
// them, so N replicas do not allow N times the limit. Redis sees only HMACs of what is counted (an email's
// blind-index token, a client address), under a key derived from the platform's system key.
import { createHmac, hkdfSync } from "node:crypto";
import type { Redis } from "ioredis";
import { connectRedis } from "../redis-connection.js";

/** One counted attempt: how long to wait when it went over the limit, and how to take it back. */
export interface CountedAttempt {
  /** Seconds until the window ends, when this attempt is over the limit; otherwise undefined. */
  readonly wait: number | undefined;
  /** Takes the attempt back (it turned out not to count) if its window still runs. */
  readonly release: () => Promise<void>;
}

export interface AttemptCounter {
  readonly hit: (key: string, now: number) => Promise<CountedAttempt>;
}

/** Makes the counters a policy needs: `name` tells them apart ("email", "client-failures"). */
export type AttemptCounterFactory = (name: string, limit: number, windowMs: number) => AttemptCounter;

const waitSeconds = (windowEnd: number, now: number): number =>
  Math.max(1, Math.ceil((windowEnd - now) / 1000));

/** Per-process counters: one window per key, dropped as they pass. */
export function memoryAttemptCounter(limit: number, windowMs: number): AttemptCounter {
  const windows = new Map<string, { start: number; count: number }>();
  return {
    hit: async (key, now) => {
      let window = windows.get(key);
      if (window === undefined || now - window.start >= windowMs) {
        if (windows.size > 100_000) {
          windows.clear();
        }
        window = { start: now, count: 0 };
        windows.set(key, window);
      }
      window.count++;
      const counted = window;
      return {
        wait: counted.count > limit ? waitSeconds(counted.start + windowMs, now) : undefined,
        release: async () => {
          // Only from the window it was counted in: a newer window starts from its own attempts.
          if (windows.get(key) === counted && counted.count > 0) {
            counted.count--;
          }
        },
      };
    },
  };
}

export const memoryAttemptCounters: AttemptCounterFactory = (_name, limit, windowMs) =>
  memoryAttemptCounter(limit, windowMs);

// Atomically: count one attempt in the key's window, starting the window (start time, expiry) on its first.
// Returns the count and the window's start.
const hitScript = `
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if count == 1 then
  redis.call('HSET', KEYS[1], 'start', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {count, redis.call('HGET', KEYS[1], 'start')}
`;

// Atomically: take one attempt back, only from the window it was counted in.
const releaseScript = `
if redis.call('HGET', KEYS[1], 'start') == ARGV[1] and tonumber(redis.call('HGET', KEYS[1], 'count')) > 0 then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
end
return 0
`;

export interface RedisAttemptCountersOptions {
  /** e.g. `redis://127.0.0.1:6379`; credentials come from the key broker, not the URL. */
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /** The platform's system data key (its oldest version held, so replicas across a rotation agree). */
  readonly key: Uint8Array;
  readonly prefix?: string;
  /** How long a command may take before the replica counts locally instead (default 1000 ms). */
  readonly commandTimeoutMs?: number;
  /** Called when Redis did not answer and an attempt was counted in this replica only. */
  readonly onUnavailable?: () => void;
}

/**
 * Counters shared by every replica through Redis. When Redis does not answer, an attempt is counted in this
 * replica's memory instead, so sign-in stays available and limited as without Redis.
 */
export function createRedisAttemptCounters(options: RedisAttemptCountersOptions): {
  readonly counters: AttemptCounterFactory;
  readonly redis: Redis;
  readonly close: () => Promise<void>;
} {
  const prefix = options.prefix ?? "cloister:signin";
  const namingKey = Buffer.from(
    hkdfSync("sha256", options.key, Buffer.alloc(0), "cloister sign-in limits v1 names", 32),
  );
  const redis = connectRedis({ ...options, commandTimeoutMs: options.commandTimeoutMs ?? 1000 });
  const counters: AttemptCounterFactory = (name, limit, windowMs) => {
    const local = memoryAttemptCounter(limit, windowMs);
    const redisKey = (key: string): string =>
      `${prefix}:${name}:${createHmac("sha256", namingKey).update(`${name}\n${key}`).digest("hex")}`;
    return {
      hit: async (key, now) => {
        const counted = redisKey(key);
        let reply: unknown;
        try {
          reply = await redis.eval(hitScript, 1, counted, now, windowMs);
        } catch {
          options.onUnavailable?.();
          return local.hit(key, now);
        }
        const [count, start] = Array.isArray(reply) ? (reply as unknown[]) : [];
        const windowStart = Number(start);
        return {
          wait: Number(count) > limit ? waitSeconds(windowStart + windowMs, now) : undefined,
          release: async () => {
            try {
              await redis.eval(releaseScript, 1, counted, String(start));
            } catch {
              // Not taken back: the attempt keeps counting until its window ends, which errs towards limiting.
            }
          },
        };
      },
    };
  };
  return {
    counters,
    redis,
    close: async () => {
      redis.disconnect();
    },
  };
}
