// The Redis job queue against a real redis-server (started here on a free port, with a password and an
// append-only file): delivery, deduplication, delays, lease expiry after a dead worker, ciphertext only,
// and a SIGKILL of Redis while jobs wait.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { redisSkipReason, startTestRedis, type TestRedis } from "../test-support/redis-server.js";
import { createMemoryJobQueue } from "./job-queue.js";
import { createRedisJobQueue } from "./redis-job-queue.js";

const skip = redisSkipReason;
if (skip !== false) {
  console.warn(`SKIPPING: ${skip}`);
}
let redis: TestRedis | undefined;
before(async () => {
  if (skip === false) {
    redis = await startTestRedis();
  }
});
after(() => {
  redis?.stop();
});

const key = randomBytes(32);
const queue = (options: { leaseMs?: number; prefix?: string } = {}) =>
  createRedisJobQueue({
    url: redis?.url ?? "",
    password: redis?.password ?? "",
    key,
    pollMs: 20,
    ...options,
  });

describe("Redis job queue", { skip }, () => {
  it("delivers once per ServiceRequest, honours delays, and stores only ciphertext", async () => {
    const jobs = queue({ prefix: "t1" });
    after(() => jobs.close());
    const job = { tenantId: "tenant-sentinel", serviceRequestId: "sr-sentinel-1", attempt: 0 };
    await jobs.enqueue(job);
    await jobs.enqueue(job);
    await jobs.enqueue({ ...job, serviceRequestId: "sr-later" }, 300);
    const started = Date.now();
    assert.deepEqual(await jobs.take(), job);
    const later = await jobs.take();
    assert.equal(later?.serviceRequestId, "sr-later");
    assert.ok(Date.now() - started >= 250, "the delayed job waited");
    const keys = await jobs.redis.keys("t1:*");
    const values = await Promise.all(
      keys.filter((k) => k.includes(":job:")).map(async (k) => (await jobs.redis.get(k)) ?? ""),
    );
    const members = await jobs.redis.zrange("t1:running", 0, -1);
    for (const text of [...keys, ...values, ...members]) {
      assert.ok(!text.includes("sentinel") && !text.includes("tenant"), `Redis holds ${text.slice(0, 40)}`);
    }
    await jobs.complete(job);
    await jobs.complete({ ...job, serviceRequestId: "sr-later" });
    assert.equal(await jobs.redis.zcard("t1:running"), 0);
  });

  it("ensureQueued adds an order's job only when none is waiting or running (both queues)", async () => {
    const redisJobs = queue({ prefix: "t5" });
    after(() => redisJobs.close());
    for (const jobs of [redisJobs, createMemoryJobQueue()]) {
      const job = { tenantId: "a", serviceRequestId: "reconciled", attempt: 0 };
      assert.equal(await jobs.ensureQueued(job), true, "a missing job is added");
      assert.equal(await jobs.ensureQueued(job), false, "a waiting one is left alone");
      assert.deepEqual(await jobs.take(), job);
      assert.equal(await jobs.ensureQueued(job), false, "a running one is left alone");
      await jobs.complete(job);
      assert.equal(await jobs.ensureQueued(job), true, "after completion it can be added again");
      assert.deepEqual(await jobs.take(), job);
      await jobs.complete(job);
      await jobs.close();
    }
  });

  it("gives a dead worker's job to another worker when its lease expires", async () => {
    const first = queue({ prefix: "t2", leaseMs: 200 });
    const second = queue({ prefix: "t2", leaseMs: 200 });
    after(async () => {
      await first.close();
      await second.close();
    });
    const job = { tenantId: "a", serviceRequestId: "lease", attempt: 0 };
    await first.enqueue(job);
    assert.deepEqual(await first.take(), job);
    // The first worker "dies" here: it never completes.
    assert.deepEqual(await second.take(), job);
    await second.complete(job);
  });

  it("keeps waiting jobs through a SIGKILL of Redis", async () => {
    const jobs = queue({ prefix: "t3" });
    after(() => jobs.close());
    await jobs.enqueue({ tenantId: "a", serviceRequestId: "survivor", attempt: 2 });
    redis?.kill();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await redis?.start();
    const job = await jobs.take();
    assert.deepEqual(job, { tenantId: "a", serviceRequestId: "survivor", attempt: 2 });
  });
});
