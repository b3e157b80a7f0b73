// The workflow on the Redis queue, with faults: the inference server is down when the job first runs, and
// Redis is SIGKILLed while the job waits for its retry; or Redis is down when the order is placed. After
// they come back, the result is written once.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startConfidentialStack, type ConfidentialStack } from "@cloister/inference-server/test-support";
import type { FastifyInstance } from "fastify";
import { PNG } from "pngjs";
import {
  AccountService,
  buildApp,
  createLocalSessions,
  createRedisJobQueue,
  deriveTenantKeyring,
  modelCodeSystem,
  openSqliteStore,
  type RecordStore,
} from "./app.js";
import { redisSkipReason, startTestRedis, type TestRedis } from "./test-support/redis-server.js";

if (redisSkipReason !== false) {
  console.warn(`SKIPPING: ${redisSkipReason}`);
}
const scratch = mkdtempSync(join(tmpdir(), "cloister-workflow-redis-"));
let stack: ConfidentialStack;
let redis: TestRedis;
let store: RecordStore;
let app: FastifyInstance;
let token = "";

before(async () => {
  if (redisSkipReason !== false) {
    return;
  }
  stack = await startConfidentialStack();
  redis = await startTestRedis();
  store = openSqliteStore(join(scratch, "records.db"));
  const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
  const accounts = new AccountService(store, systemKeyring);
  const password = randomBytes(12).toString("hex");
  await accounts.create({ email: "clinician@demo.test", password, tenantId: "demo", role: "clinician" });
  const tenant = deriveTenantKeyring(randomBytes(32), "demo");
  app = await buildApp({
    baseUrl: "http://127.0.0.1",
    store,
    accounts,
    systemKeyring,
    sessions: await createLocalSessions({ issuer: "http://127.0.0.1" }),
    tenantKeyring: async () => tenant,
    workflow: {
      queue: createRedisJobQueue({
        url: redis.url,
        password: redis.password,
        keys: new Map([[1, systemKeyring.encryption]]),
        pollMs: 50,
      }),
      inference: async () => stack.client,
    },
  });
  token = (
    await app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: "clinician@demo.test", password },
    })
  ).json<{
    accessToken: string;
  }>().accessToken;
});
after(async () => {
  if (redisSkipReason === false) {
    await app.close();
    await store.close();
    await stack.close();
    redis.stop();
  }
  rmSync(scratch, { recursive: true, force: true });
});

const inject = async (
  method: "GET" | "POST",
  url: string,
  payload?: unknown,
  contentType = "application/fhir+json",
  headers: Record<string, string> = {},
) =>
  app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${token}`,
      ...(payload === undefined ? {} : { "content-type": contentType }),
      ...headers,
    },
    ...(payload === undefined
      ? {}
      : { payload: payload instanceof Buffer ? payload : JSON.stringify(payload) }),
  });

/** A patient, an image and an active order for the pneumonia model. */
async function placeOrder(): Promise<Awaited<ReturnType<typeof inject>>> {
  const image = new PNG({ width: 28, height: 28 });
  image.data.fill(128);
  const patient = (
    await inject("POST", "/fhir/Patient", { resourceType: "Patient", name: [{ family: "Redis" }] })
  ).json<{ id: string }>();
  const binary = (
    await inject("POST", "/fhir/Binary", PNG.sync.write(image), "image/png", {
      "x-security-context": `Patient/${patient.id}`,
    })
  ).json<{ id: string }>();
  return inject("POST", "/fhir/ServiceRequest", {
    resourceType: "ServiceRequest",
    status: "active",
    intent: "order",
    subject: { reference: `Patient/${patient.id}` },
    code: { coding: [{ system: modelCodeSystem, code: "chest-xray-pneumonia" }] },
    supportingInfo: [{ reference: `Binary/${binary.id}` }],
  });
}

/** How many reports the order has once it has any (or 0 after 30 s). */
async function reportsFor(requestId: string): Promise<number> {
  const deadline = Date.now() + 30_000;
  let total = 0;
  while (Date.now() < deadline && total === 0) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    total = (await inject("GET", `/fhir/DiagnosticReport?based-on=ServiceRequest/${requestId}`)).json<{
      total: number;
    }>().total;
  }
  return total;
}

test(
  "an order placed while Redis is down is recorded (201), queued by the reconciler once Redis is back, and reported once",
  { skip: redisSkipReason },
  async () => {
    // The queue is away for longer than the order's own retries (about 3 s).
    redis.kill();
    const order = await placeOrder();
    assert.equal(order.statusCode, 201, "the order is recorded; its job is derived state");
    const requestId = order.json<{ id: string }>().id;
    assert.equal(
      (await inject("GET", `/fhir/ServiceRequest/${requestId}`)).json<{ status: string }>().status,
      "active",
    );
    await redis.start();
    assert.equal(await app.reconcileDiagnosisJobs(["demo"]), 1, "the order without a job is queued");
    assert.equal(await app.reconcileDiagnosisJobs(["demo"]), 0, "and only once");
    assert.equal(await reportsFor(requestId), 1);
    assert.equal(
      (await inject("GET", `/fhir/ServiceRequest/${requestId}`)).json<{ status: string }>().status,
      "completed",
    );
  },
);

test(
  "a job survives the inference server being down and Redis being killed, and is written once",
  { skip: redisSkipReason },
  async () => {
    await stack.stopInference();
    const order = await placeOrder();
    assert.equal(order.statusCode, 201);
    const requestId = order.json<{ id: string }>().id;
    // The first attempt fails (no inference server) and the retry waits in Redis; kill Redis under it.
    await new Promise((resolve) => setTimeout(resolve, 400));
    redis.kill();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await redis.start();
    await stack.startInference();

    assert.equal(await reportsFor(requestId), 1);
    const report = (await inject("GET", `/fhir/DiagnosticReport/report-${requestId}`)).json<{
      status: string;
      meta: { versionId: string };
    }>();
    assert.equal(report.status, "preliminary");
    assert.equal(report.meta.versionId, "1");
    assert.equal(
      (await inject("GET", `/fhir/ServiceRequest/${requestId}`)).json<{ status: string }>().status,
      "completed",
    );
  },
);
