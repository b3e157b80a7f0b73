// A cache for results the workflow must not compute twice (an inference whose answer was not yet written
// when the platform died). Values are sealed with a key derived from the tenant's keys, addressed by an
// HMAC, so Redis (or memory) holds ciphertext only. In memory by default; Redis for several replicas.
import { createHmac, hkdfSync } from "node:crypto";
import type { Redis } from "ioredis";
import { connectRedis } from "../redis-connection.js";
import type { TenantContext } from "../fhir/repository.js";
import { openBytes, sealBytes } from "../storage/record-crypto.js";

export interface ResultCache {
  readonly get: (tenant: TenantContext, key: string) => Promise<Uint8Array | undefined>;
  readonly set: (tenant: TenantContext, key: string, value: Uint8Array, ttlMs: number) => Promise<void>;
  readonly close: () => Promise<void>;
}

const derivedKeys = new WeakMap<object, { sealing: Buffer; naming: Buffer }>();

/** The cache's keys for a tenant, derived once per keyring. */
function cacheKeys(tenant: TenantContext): { sealing: Buffer; naming: Buffer } {
  let keys = derivedKeys.get(tenant.keyring);
  if (keys === undefined) {
    const derive = (purpose: string): Buffer =>
      Buffer.from(
        hkdfSync(
          "sha256",
          tenant.keyring.encryption,
          Buffer.from(tenant.tenantId),
          `cloister cache v1 ${purpose}`,
          32,
        ),
      );
    keys = { sealing: derive("value"), naming: derive("name") };
    derivedKeys.set(tenant.keyring, keys);
  }
  return keys;
}

function address(tenant: TenantContext, key: string): string {
  return createHmac("sha256", cacheKeys(tenant).naming).update(key).digest("hex");
}

function seal(tenant: TenantContext, name: string, value: Uint8Array): Buffer {
  return sealBytes(cacheKeys(tenant).sealing, Buffer.from(name), value);
}

/** Opens a sealed value; undefined when it does not open (another tenant's, or tampered): a miss. */
function open(tenant: TenantContext, name: string, sealed: Buffer): Uint8Array | undefined {
  try {
    return new Uint8Array(openBytes(cacheKeys(tenant).sealing, Buffer.from(name), sealed));
  } catch {
    return undefined;
  }
}

export function createMemoryResultCache(now: () => number = Date.now): ResultCache {
  const entries = new Map<string, { sealed: Buffer; expiresAt: number }>();
  return {
    get: async (tenant, key) => {
      const name = address(tenant, key);
      const entry = entries.get(`${tenant.tenantId}:${name}`);
      if (entry === undefined || entry.expiresAt <= now()) {
        return undefined;
      }
      return open(tenant, name, entry.sealed);
    },
    set: async (tenant, key, value, ttlMs) => {
      const name = address(tenant, key);
      if (entries.size > 10_000) {
        for (const [entryKey, entry] of entries) {
          if (entry.expiresAt <= now()) {
            entries.delete(entryKey);
          }
        }
      }
      entries.set(`${tenant.tenantId}:${name}`, {
        sealed: seal(tenant, name, value),
        expiresAt: now() + ttlMs,
      });
    },
    close: async () => {
      entries.clear();
    },
  };
}

export function createRedisResultCache(options: {
  url: string;
  username?: string;
  password?: string;
  prefix?: string;
}): ResultCache & { readonly redis: Redis } {
  const prefix = options.prefix ?? "cloister:cache";
  const redis = connectRedis({ ...options, maxRetriesPerRequest: 2 });
  // The tenant appears only as an HMAC under its own key, so Redis cannot group entries by hospital.
  const redisKey = (tenant: TenantContext, name: string): string =>
    `${prefix}:${createHmac("sha256", cacheKeys(tenant).naming).update("tenant").digest("hex").slice(0, 16)}:${name}`;
  return {
    redis,
    get: async (tenant, key) => {
      const name = address(tenant, key);
      try {
        const sealed = await redis.getBuffer(redisKey(tenant, name));
        return sealed === null ? undefined : open(tenant, name, sealed);
      } catch {
        // A cache that is away is a miss, never an error: the work is done again.
        return undefined;
      }
    },
    set: async (tenant, key, value, ttlMs) => {
      const name = address(tenant, key);
      try {
        await redis.set(redisKey(tenant, name), seal(tenant, name, value), "PX", ttlMs);
      } catch {
        // Best effort, as above.
      }
    },
    close: async () => {
      redis.disconnect();
    },
  };
}
