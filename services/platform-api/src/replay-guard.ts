// The OHTTP replay check shared by the platform's replicas. They share one OHTTP key (released by the key
// broker), so a request captured on its way to one replica could be replayed to another, whose own replay
// cache never saw it. Each opened request's encapsulated key is claimed in Redis, under an HMAC, for the
// replay window: a second claim is a replay.
import { createHmac, hkdfSync } from "node:crypto";
import { connectRedis } from "./redis-connection.js";

export interface ReplayGuard {
  /** Claims a request's encapsulated key; false when another replica (or this one) already claimed it. */
  readonly claim: (enc: Uint8Array) => Promise<boolean>;
  readonly close: () => Promise<void>;
}

export interface RedisReplayGuardOptions {
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /** A 32-byte key every replica holds (the platform's system key, its oldest version held). */
  readonly key: Uint8Array;
  /** How long a claim holds: the gateway's replay window (default 10 minutes). */
  readonly windowMs?: number;
  readonly prefix?: string;
  /** Redis command timeout (default 1 s). */
  readonly commandTimeoutMs?: number;
  /**
   * Called when Redis does not answer. The claim then succeeds: each replica's own replay cache still holds,
   * and a replay across replicas needs an attacker on the network during the outage (docs/threat-model.md).
   */
  readonly onUnavailable?: () => void;
}

export function createRedisReplayGuard(options: RedisReplayGuardOptions): ReplayGuard {
  const prefix = options.prefix ?? "cloister:ohttp-replay";
  const windowMs = options.windowMs ?? 600_000;
  const namingKey = Buffer.from(
    hkdfSync("sha256", options.key, Buffer.alloc(0), "cloister ohttp replay v1", 32),
  );
  const redis = connectRedis({ ...options, commandTimeoutMs: options.commandTimeoutMs ?? 1000 });
  return {
    claim: async (enc) => {
      const name = `${prefix}:${createHmac("sha256", namingKey).update(enc).digest("hex")}`;
      try {
        return (await redis.set(name, "1", "PX", windowMs, "NX")) === "OK";
      } catch {
        options.onUnavailable?.();
        return true;
      }
    },
    close: async () => {
      redis.disconnect();
    },
  };
}
