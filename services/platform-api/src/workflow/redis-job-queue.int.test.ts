// The Redis job queue against a real redis-server (started here on a free port, with a password and an
// append-only file): delivery, deduplication, delays, lease expiry after a dead worker, ciphertext only,
// and a SIGKILL of Redis while jobs wait.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createRedisJobQueue } from "./redis-job-queue.js";

const redisBinary = "/usr/bin/redis-server";
const skip = existsSync(redisBinary)
  ? false
  : "redis-server is not installed (apt-get install redis-server); .ci/run installs it";
if (skip !== false) {
  console.warn(`SKIPPING: ${skip}`);
}
const password = randomBytes(12).toString("hex");
const directory = mkdtempSync(join(tmpdir(), "cloister-redis-"));
let port = 0;
let server: ChildProcess | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => {
        resolve(typeof address === "object" && address !== null ? address.port : 0);
      });
    });
  });
}

async function startRedis(): Promise<void> {
  server = spawn(
    redisBinary,
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--requirepass",
      password,
      "--dir",
      directory,
      "--appendonly",
      "yes",
      "--appendfsync",
      "always",
      "--save",
      "",
    ],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    if (await canConnect(port)) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("redis-server did not start");
}

async function canConnect(target: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(target, "127.0.0.1", () => {
      socket.end();
      resolve(true);
    });
    socket.on("error", () => {
      resolve(false);
    });
  });
}

before(async () => {
  if (skip === false) {
    port = await freePort();
    await startRedis();
  }
});
after(() => {
  server?.kill("SIGKILL");
  rmSync(directory, { recursive: true, force: true });
});

const key = randomBytes(32);
const queue = (options: { leaseMs?: number; prefix?: string } = {}) =>
  createRedisJobQueue({ url: `redis://127.0.0.1:${port}`, password, key, pollMs: 20, ...options });

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
    server?.kill("SIGKILL");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await startRedis();
    const job = await jobs.take();
    assert.deepEqual(job, { tenantId: "a", serviceRequestId: "survivor", attempt: 2 });
  });
});
