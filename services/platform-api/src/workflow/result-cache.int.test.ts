// The result cache, in memory and on a real redis-server: values come back only for their tenant, expire,
// and Redis holds ciphertext under HMAC names.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { deriveTenantKeyring } from "../storage/record-crypto.js";
import { redisSkipReason, startTestRedis, type TestRedis } from "../test-support/redis-server.js";
import { createMemoryResultCache, createRedisResultCache, type ResultCache } from "./result-cache.js";

const tenantA = {
  tenantId: "hospital-sentinel-a",
  keyring: deriveTenantKeyring(randomBytes(32), "hospital-sentinel-a"),
};
const tenantB = { tenantId: "hospital-b", keyring: deriveTenantKeyring(randomBytes(32), "hospital-b") };
let redis: TestRedis | undefined;
before(async () => {
  if (redisSkipReason === false) {
    redis = await startTestRedis();
  }
});
after(() => {
  redis?.stop();
});

const implementations: { name: string; skip: string | false; make: () => ResultCache }[] = [
  { name: "memory", skip: false, make: () => createMemoryResultCache() },
  {
    name: "redis",
    skip: redisSkipReason,
    make: () => createRedisResultCache({ url: redis?.url ?? "", password: redis?.password ?? "" }),
  },
];

for (const implementation of implementations) {
  describe(`result cache: ${implementation.name}`, { skip: implementation.skip }, () => {
    it("returns a value to its tenant only, until it expires", async () => {
      const cache = implementation.make();
      after(() => cache.close());
      const value = Buffer.from('{"predicted":"SENTINEL-FINDING"}');
      await cache.set(tenantA, "inference:sr-sentinel", value, 300);
      assert.deepEqual(Buffer.from((await cache.get(tenantA, "inference:sr-sentinel")) ?? []), value);
      assert.equal(await cache.get(tenantB, "inference:sr-sentinel"), undefined);
      assert.equal(await cache.get(tenantA, "inference:other"), undefined);
      if (implementation.name === "redis" && "redis" in cache) {
        const client = (cache as ReturnType<typeof createRedisResultCache>).redis;
        const keys = await client.keys("*");
        const values = await Promise.all(
          keys.map(async (k) => (await client.getBuffer(k))?.toString("latin1") ?? ""),
        );
        for (const text of [...keys, ...values]) {
          assert.ok(!text.includes("SENTINEL") && !text.includes("sentinel"), "Redis holds plaintext");
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 350));
      assert.equal(await cache.get(tenantA, "inference:sr-sentinel"), undefined);
    });
  });
}
