// Report events across replicas through a real redis-server: an event published by one replica reaches the
// others' listeners once (and its own at once), a clinician's event stream on one replica shows a report
// another replica's worker wrote, Redis sees neither tenants nor ids, a bus under another key ignores the
// events, and delivery resumes after Redis restarts.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import { Redis } from "ioredis";
import { redisSkipReason, useTestRedis } from "../test-support/redis-server.js";
import { startTestPlatform } from "../test-support/test-platform.js";
import { createRedisEventBus, type ReportEvent, type ReportEventBus } from "./event-bus.js";

const skip = redisSkipReason;
const systemKey = randomBytes(32);
const { redis: testRedis, onClose } = useTestRedis();

/** One replica's bus, subscribed before it is returned. */
async function replicaBus(key: Uint8Array = systemKey): Promise<ReportEventBus> {
  const bus = createRedisEventBus({ url: testRedis().url, password: testRedis().password, key });
  onClose(bus.close);
  await bus.subscribed;
  return bus;
}

/** What a listener received, by tenant. */
function recorder(bus: ReportEventBus): { tenantId: string; event: ReportEvent }[] {
  const received: { tenantId: string; event: ReportEvent }[] = [];
  bus.subscribe((tenantId, event) => {
    received.push({ tenantId, event });
  });
  return received;
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const reportEvent = (id: string): ReportEvent => ({
  type: "DiagnosticReport",
  id,
  status: "final",
  basedOn: `ServiceRequest/${id}-order`,
  subject: `Patient/${id}-patient`,
});

describe("report events through Redis", { skip }, () => {
  it("reach every replica once, and no replica under another key", async () => {
    const [first, second, foreign] = [
      await replicaBus(),
      await replicaBus(),
      await replicaBus(randomBytes(32)),
    ];
    const onFirst = recorder(first);
    const onSecond = recorder(second);
    const onForeign = recorder(foreign);
    first.publish("hospital-a", reportEvent("r1"));
    assert.deepEqual(onFirst, [{ tenantId: "hospital-a", event: reportEvent("r1") }], "at once, locally");
    await until(() => onSecond.length === 1, "the other replica");
    assert.deepEqual(onSecond, [{ tenantId: "hospital-a", event: reportEvent("r1") }]);
    second.publish("hospital-b", reportEvent("r2"));
    await until(() => onFirst.length === 2, "the event back the other way");
    assert.deepEqual(onFirst[1], { tenantId: "hospital-b", event: reportEvent("r2") });
    // A moment for duplicates to arrive, if there were any.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(onFirst.length, 2, "a replica does not get its own event twice");
    assert.equal(onSecond.length, 2);
    assert.equal(onForeign.length, 0, "sealed under another key: ignored");
  });

  it("show Redis neither tenants nor ids", async () => {
    const bus = await replicaBus();
    const watcher = new Redis(testRedis().url, { password: testRedis().password });
    onClose(async () => {
      watcher.disconnect();
    });
    const seen: string[] = [];
    await watcher.subscribe("cloister:report-events");
    watcher.on("message", (_channel: string, message: string) => seen.push(message));
    const sentinel = `report-${randomBytes(6).toString("hex")}`;
    bus.publish("st-sentinel-hospital", reportEvent(sentinel));
    await until(() => seen.length === 1, "the raw message");
    for (const text of [sentinel, "st-sentinel-hospital", "DiagnosticReport", "final"]) {
      assert.ok(!seen.join("\n").includes(text), `${text} is not in the message`);
    }
  });

  it("flow again after Redis restarts", async () => {
    const [first, second] = [await replicaBus(), await replicaBus()];
    const onSecond = recorder(second);
    testRedis().kill();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await testRedis().start();
    const deadline = Date.now() + 15_000;
    // Published again until the subscriber is back: an event published while Redis is away reaches only the
    // publishing replica's streams (the platform logs that once a minute).
    while (onSecond.length === 0 && Date.now() < deadline) {
      first.publish("hospital-a", reportEvent("after-restart"));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.equal(onSecond[0]?.event.id, "after-restart");
  });

  it("reach a clinician's event stream on one replica from another replica's worker", async () => {
    const streamReplica = await replicaBus();
    const workerReplica = await replicaBus();
    const platform = await startTestPlatform({ reportEvents: streamReplica });
    onClose(platform.close);
    await platform.accounts.create({
      email: "clinician@a.test",
      password: "correct horse battery staple",
      tenantId: "hospital-a",
      role: "clinician",
    });
    const signedIn = await platform.app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: "clinician@a.test", password: "correct horse battery staple" },
    });
    const url = await platform.app.listen({ port: 0, host: "127.0.0.1" });
    const abort = new AbortController();
    const stream = await fetch(`${url}/events`, {
      headers: { authorization: `Bearer ${signedIn.json<{ accessToken: string }>().accessToken}` },
      signal: abort.signal,
    });
    const reader = stream.body?.getReader();
    assert.ok(reader);
    let text = "";
    const reading = (async () => {
      for (;;) {
        const chunk = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (chunk.done) {
          return;
        }
        text += new TextDecoder().decode(chunk.value);
      }
    })();
    await until(() => text.includes(": connected"), "the stream");
    workerReplica.publish("hospital-b", reportEvent("another-tenants"));
    workerReplica.publish("hospital-a", reportEvent("from-the-other-replica"));
    await until(() => text.includes("from-the-other-replica"), "the event on the stream");
    assert.match(
      text,
      /event: DiagnosticReport\ndata: \{"type":"DiagnosticReport","id":"from-the-other-replica"/,
    );
    assert.ok(!text.includes("another-tenants"), "another tenant's events stay off this stream");
    abort.abort();
    await reading;
  });
});
