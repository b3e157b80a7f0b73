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
const queue = (
  options: {
    leaseMs?: number;
    prefix?: string;
    keys?: ReadonlyMap<number, Uint8Array>;
    newerVersionGraceMs?: number;
  } = {},
) =>
  createRedisJobQueue({
    url: redis?.url ?? "",
    password: redis?.password ?? "",
    keys: new Map([[1, key]]),
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

  it("takes urgent orders' jobs first of those due, in both queues; a delay still holds, and an expired lease stays urgent", async () => {
    const redisJobs = queue({ prefix: "t6", leaseMs: 200 });
    const otherWorker = queue({ prefix: "t6", leaseMs: 200 });
    after(async () => {
      await redisJobs.close();
      await otherWorker.close();
    });
    for (const [jobs, other] of [
      [redisJobs, otherWorker],
      [createMemoryJobQueue(), undefined],
    ] as const) {
      const routine = (id: string) => ({ tenantId: "a", serviceRequestId: id, attempt: 0 });
      const urgent = (id: string) => ({ ...routine(id), urgent: true });
      await jobs.enqueue(routine("routine-1"));
      await jobs.enqueue(routine("routine-2"));
      await jobs.enqueue(urgent("urgent-later"), 400);
      await jobs.enqueue(urgent("urgent-1"));
      assert.equal((await jobs.stats()).waiting, 4);
      assert.deepEqual(await jobs.take(), urgent("urgent-1"), "an urgent job before older routine ones");
      await jobs.complete(urgent("urgent-1"));
      // The delayed urgent job is not due yet: the routine ones come in their order.
      assert.deepEqual(await jobs.take(), routine("routine-1"));
      await jobs.complete(routine("routine-1"));
      const stats = await jobs.stats();
      assert.equal(stats.waiting, 2);
      assert.ok(stats.oldestDueAt !== undefined, "routine-2 is due");
      await new Promise((resolve) => setTimeout(resolve, 450));
      assert.deepEqual(await jobs.take(), urgent("urgent-later"), "once due, before routine-2");
      if (other !== undefined) {
        // Its worker dies: after the lease, another worker takes it again before routine-2.
        await new Promise((resolve) => setTimeout(resolve, 250));
        assert.deepEqual(await other.take(), urgent("urgent-later"));
        await other.complete(urgent("urgent-later"));
      } else {
        await jobs.complete(urgent("urgent-later"));
      }
      assert.deepEqual(await jobs.take(), routine("routine-2"));
      await jobs.complete(routine("routine-2"));
      assert.deepEqual(await jobs.stats(), { waiting: 0, running: 0, oldestDueAt: undefined });
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

  it("works across a rotation of the system key: replicas started before and after share one queue", async () => {
    const oldKeys = new Map([[1, key]]);
    const newKeys = new Map([
      [1, key],
      [2, randomBytes(32)],
    ]);
    const oldReplica = queue({ prefix: "t6", keys: oldKeys });
    const newReplica = queue({ prefix: "t6", keys: newKeys });
    after(() => newReplica.close());
    const job = { tenantId: "a", serviceRequestId: "rotated", attempt: 0 };
    await newReplica.enqueue(job);
    assert.equal(await oldReplica.ensureQueued(job), false, "the same order has the same member on both");
    const [stored] = await newReplica.redis.mget((await newReplica.redis.keys("t6:job:*"))[0] ?? "");
    assert.match(stored ?? "", /^g2\./, "sealed under the newest version, and saying so");
    // The older replica cannot open it and leaves it waiting; the newer one takes it.
    const taken = await Promise.race([
      oldReplica.take().then(() => "the old replica"),
      new Promise<string>((resolve) => {
        setTimeout(() => {
          resolve("nobody");
        }, 400);
      }),
    ]);
    assert.equal(taken, "nobody", "the older replica never returns a job it cannot open");
    await oldReplica.close();
    assert.deepEqual(await newReplica.take(), job);
    await newReplica.complete(job);
    // And the other way round: the older replica's jobs open on the newer one.
    const oldAgain = queue({ prefix: "t6", keys: oldKeys });
    const older = { tenantId: "a", serviceRequestId: "from-before", attempt: 1 };
    await oldAgain.enqueue(older);
    await oldAgain.close();
    assert.deepEqual(await newReplica.take(), older);
    await newReplica.complete(older);
  });

  it("drops a job no key it holds opens, instead of retrying it forever", async () => {
    const gone = queue({ prefix: "t7", keys: new Map([[1, key]]) });
    const current = queue({ prefix: "t7", keys: new Map([[2, randomBytes(32)]]) });
    after(async () => {
      await gone.close();
      await current.close();
    });
    await gone.enqueue({ tenantId: "a", serviceRequestId: "orphan", attempt: 0 });
    const taken = await Promise.race([
      current.take(),
      new Promise<"nothing">((resolve) => {
        setTimeout(() => {
          resolve("nothing");
        }, 300);
      }),
    ]);
    assert.equal(taken, "nothing");
    assert.deepEqual(await current.stats(), { waiting: 0, running: 0, oldestDueAt: undefined });
    assert.deepEqual(await current.redis.keys("t7:job:*"), [], "its payload is gone too");
  });

  it("drops a job under a key version no replica has held within the grace, and queues it again under a held one", async () => {
    // A rotation rolled back: the replica that sealed under version 2 is gone, and the others hold version 1.
    const rolledBack = queue({
      prefix: "t8",
      keys: new Map([
        [1, key],
        [2, randomBytes(32)],
      ]),
    });
    const job = { tenantId: "a", serviceRequestId: "sealed-under-v2", attempt: 0 };
    await rolledBack.enqueue(job);
    await rolledBack.close();
    const holdsVersion1 = () =>
      queue({ prefix: "t8", keys: new Map([[1, key]]), newerVersionGraceMs: 150, leaseMs: 100 });
    // take() waits until it has a job; each probe is its own replica, closed after, so none keeps taking.
    const probe = async (ms: number): Promise<unknown> => {
      const replica = holdsVersion1();
      try {
        return await Promise.race([
          replica.take(),
          new Promise<"nothing">((resolve) => {
            setTimeout(() => {
              resolve("nothing");
            }, ms);
          }),
        ]);
      } finally {
        await replica.close();
      }
    };
    const remaining = holdsVersion1();
    after(() => remaining.close());
    // Within the grace it is put back, for a replica holding version 2, and not dropped.
    assert.equal(await probe(60), "nothing");
    assert.equal((await remaining.stats()).waiting, 1, "put back while the grace runs");
    assert.equal(await probe(600), "nothing");
    assert.deepEqual(await remaining.stats(), { waiting: 0, running: 0, oldestDueAt: undefined });
    assert.deepEqual(await remaining.redis.keys("t8:*"), [], "payload and note are gone");
    // The reconciler's ensureQueued now seals it under version 1, which these replicas open.
    assert.equal(await remaining.ensureQueued(job), true);
    assert.deepEqual(await remaining.take(), job);
    await remaining.complete(job);
    assert.deepEqual(await remaining.redis.keys("t8:*"), []);
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
