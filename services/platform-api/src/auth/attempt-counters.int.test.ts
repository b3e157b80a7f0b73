// Sign-in limits shared through a real redis-server by two platform replicas (two AccountServices on one
// store, each with its own Redis connection): failures from one address and attempts on one email add up
// across replicas, Redis holds no email or address, and a replica whose Redis does not answer still limits.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PlatformError } from "../errors.js";
import { deriveTenantKeyring } from "../storage/record-crypto.js";
import type { RecordStore } from "../storage/record-store.js";
import { openSqliteStore } from "../storage/sqlite-store.js";
import { redisSkipReason, startTestRedis, type TestRedis } from "../test-support/redis-server.js";
import { AccountService, type LoginPolicy } from "./accounts.js";
import { createRedisAttemptCounters } from "./attempt-counters.js";

const skip = redisSkipReason;
if (skip !== false) {
  console.warn(`SKIPPING: ${skip}`);
}
const policy: LoginPolicy = {
  maxFailures: 100,
  lockoutMs: 60_000,
  maxAttempts: 3,
  maxClientFailures: 4,
  windowMs: 60_000,
};
const password = "correct horse battery staple";
const systemKey = randomBytes(32);
const keyring = deriveTenantKeyring(systemKey, "_system");
let redis: TestRedis | undefined;
let store: RecordStore;
let scratch: string;
const closers: (() => Promise<void>)[] = [];

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), "cloister-signin-limits-"));
  store = openSqliteStore(join(scratch, "records.db"));
  await store.migrate();
  if (skip === false) {
    redis = await startTestRedis();
  }
});

after(async () => {
  for (const close of closers) {
    await close();
  }
  redis?.stop();
  await store.close();
  rmSync(scratch, { recursive: true, force: true });
});

/** One platform replica: its own Redis connection, the shared store. */
function replica(prefix: string, url = redis?.url ?? "", onUnavailable?: () => void): AccountService {
  const shared = createRedisAttemptCounters({
    url,
    password: redis?.password ?? "",
    key: systemKey,
    prefix,
    commandTimeoutMs: 300,
    ...(onUnavailable === undefined ? {} : { onUnavailable }),
  });
  closers.push(shared.close);
  return new AccountService(store, keyring, policy, Date.now, shared.counters);
}

async function outcome(attempt: Promise<unknown>): Promise<string> {
  try {
    await attempt;
    return "ok";
  } catch (error) {
    return error instanceof PlatformError ? error.code : "unexpected";
  }
}

describe("sign-in limits shared on Redis", { skip }, () => {
  it("adds up one address's failures across replicas, and keeps other addresses and successes apart", async () => {
    const first = replica("t1");
    const second = replica("t1");
    for (const email of ["ana@ward.test", "ben@ward.test", "cai@ward.test"]) {
      await first.create({ email, password, tenantId: "hospital-a", role: "clerk" });
    }
    const attacker = "203.0.113.7";
    // Two failures on each replica: four, the limit.
    assert.equal(await outcome(first.login("ana@ward.test", "wrong", attacker)), "ERR_LOGIN_FAILED");
    assert.equal(await outcome(second.login("ben@ward.test", "wrong", attacker)), "ERR_LOGIN_FAILED");
    assert.equal(await outcome(first.login("cai@ward.test", "wrong", attacker)), "ERR_LOGIN_FAILED");
    assert.equal(await outcome(second.login("cai@ward.test", "wrong", attacker)), "ERR_LOGIN_FAILED");
    // In memory each replica would have counted two and let this through.
    assert.equal(await outcome(first.login("ben@ward.test", password, attacker)), "ERR_RATE_LIMITED");
    assert.equal(await outcome(second.login("ben@ward.test", password, attacker)), "ERR_RATE_LIMITED");
    // Another address is not affected, and its successful sign-ins take no failure slots.
    const ward = "198.51.100.10";
    assert.equal(await outcome(first.login("ana@ward.test", password, ward)), "ok");
    assert.equal(await outcome(second.login("ana@ward.test", password, ward)), "ok");
    assert.equal(await outcome(first.login("ben@ward.test", password, ward)), "ok");
    assert.equal(await outcome(second.login("ben@ward.test", password, ward)), "ok");
    assert.equal(await outcome(first.login("cai@ward.test", "wrong", ward)), "ERR_LOGIN_FAILED");
  });

  it("adds up failures on one email across replicas, and never counts successes", async () => {
    const first = replica("t2");
    const second = replica("t2");
    await first.create({ email: "dee@ward.test", password, tenantId: "hospital-a", role: "clerk" });
    // Successful sign-ins, more than the limit of three, on either replica: none is counted.
    for (let i = 0; i < 4; i++) {
      assert.equal(
        await outcome((i % 2 === 0 ? first : second).login("dee@ward.test", password, `198.51.100.${i}`)),
        "ok",
      );
    }
    // Three failures from different addresses, on either replica: the fourth attempt waits.
    assert.equal(await outcome(first.login("dee@ward.test", "wrong", "198.51.100.21")), "ERR_LOGIN_FAILED");
    assert.equal(await outcome(second.login("dee@ward.test", "wrong", "198.51.100.22")), "ERR_LOGIN_FAILED");
    assert.equal(await outcome(first.login("dee@ward.test", "wrong", "198.51.100.23")), "ERR_LOGIN_FAILED");
    assert.equal(await outcome(second.login("dee@ward.test", password, "198.51.100.24")), "ERR_RATE_LIMITED");
  });

  it("stores neither emails nor addresses in Redis", async () => {
    const shared = replica("t3");
    await shared.create({
      email: "sentinel-email@ward.test",
      password,
      tenantId: "hospital-a",
      role: "clerk",
    });
    await outcome(shared.login("sentinel-email@ward.test", "wrong", "192.0.2.201"));
    const connection = createRedisAttemptCounters({
      url: redis?.url ?? "",
      password: redis?.password ?? "",
      key: systemKey,
    });
    closers.push(connection.close);
    const keys = await connection.redis.keys("t3:*");
    assert.ok(keys.length >= 2, "the attempt was counted per email and per address");
    const values = await Promise.all(
      keys.map(async (key) => JSON.stringify(await connection.redis.hgetall(key))),
    );
    for (const text of [...keys, ...values]) {
      assert.ok(
        !text.includes("sentinel") && !text.includes("192.0.2.201"),
        `Redis holds ${text.slice(0, 60)}`,
      );
    }
  });

  it("limits in the replica when Redis does not answer, and says so", async () => {
    let unavailable = 0;
    // Nothing listens on port 1.
    const cut = replica("t4", "redis://127.0.0.1:1", () => {
      unavailable++;
    });
    await cut.create({ email: "eve@ward.test", password, tenantId: "hospital-a", role: "clerk" });
    assert.equal(await outcome(cut.login("eve@ward.test", password, "192.0.2.9")), "ok");
    for (let i = 0; i < 3; i++) {
      assert.equal(await outcome(cut.login("eve@ward.test", "wrong", "192.0.2.9")), "ERR_LOGIN_FAILED");
    }
    assert.equal(await outcome(cut.login("eve@ward.test", password, "192.0.2.9")), "ERR_RATE_LIMITED");
    assert.ok(unavailable >= 4, `every attempt fell back to local counting (${unavailable})`);
  });
});
