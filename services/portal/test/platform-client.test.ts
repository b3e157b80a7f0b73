// The portal's platform client against the platform's real OHTTP gateway (its app, in this process), through
// an XMLHttpRequest stand-in: a 503 with a short Retry-After, which the platform sends only when it did
// nothing with the request, is sent once more after the pause, so staff do not see a failure that a second
// later is gone; every other failure is shown at once.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { generateOhttpKeyPair, type OhttpKeyPair } from "@cloister/ohttp";
import type { FastifyInstance } from "fastify";
import {
  deriveTenantKeyring,
  deriveTenantKeyringGenerations,
  type TenantKeyring,
} from "../../platform-api/src/storage/record-crypto.js";
import { openSqliteStore } from "../../platform-api/src/storage/sqlite-store.js";
import { startTestPlatform, type TestPlatform } from "../../platform-api/src/test-support/test-platform.js";
import { PlatformClient, PlatformRequestError } from "../src/platform-client.js";

const password = "correct horse battery staple";
const tenantId = "hospital-a";
const scratch = mkdtempSync(join(tmpdir(), "cloister-portal-client-"));
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const firstKey = randomBytes(32);
const tenantFirst = deriveTenantKeyring(firstKey, tenantId);
const tenantBoth = deriveTenantKeyringGenerations(
  new Map([
    [1, firstKey],
    [2, randomBytes(32)],
  ]),
  tenantId,
);

/** How many sealed requests reached each app. */
const sent = new Map<FastifyInstance, number>();

/** Enough of XMLHttpRequest for the client: one POST of a Blob, answered by `app.inject`. */
function xhrFor(app: FastifyInstance): typeof XMLHttpRequest {
  class InjectedXMLHttpRequest {
    responseType = "";
    status = 0;
    response: ArrayBuffer | undefined;
    upload: { onprogress?: unknown } = {};
    onload: (() => void) | undefined;
    onerror: (() => void) | undefined;
    private readonly headers: Record<string, string> = {};
    private answerHeaders: Record<string, string | string[] | number | undefined> = {};
    private url = "";
    open(method: string, url: string): void {
      assert.equal(method, "POST");
      this.url = new URL(url).pathname;
    }
    setRequestHeader(name: string, value: string): void {
      this.headers[name] = value;
    }
    getResponseHeader(name: string): string | null {
      const value = this.answerHeaders[name.toLowerCase()];
      return value === undefined ? null : Array.isArray(value) ? value.join(", ") : String(value);
    }
    send(body: Blob): void {
      sent.set(app, (sent.get(app) ?? 0) + 1);
      void body
        .arrayBuffer()
        .then((bytes) =>
          app.inject({ method: "POST", url: this.url, headers: this.headers, payload: Buffer.from(bytes) }),
        )
        .then(
          (answer) => {
            this.status = answer.statusCode;
            this.answerHeaders = answer.headers;
            this.response = new Uint8Array(answer.rawPayload).buffer;
            this.onload?.();
          },
          () => this.onerror?.(),
        );
    }
  }
  return InjectedXMLHttpRequest as unknown as typeof XMLHttpRequest;
}

let keys: OhttpKeyPair;
const started: TestPlatform[] = [];

async function startReplica(
  tenant: { keyring: () => Promise<TenantKeyring>; refresh?: () => Promise<TenantKeyring> },
  options: { maxInFlight?: number } = {},
): Promise<TestPlatform> {
  const platform = await startTestPlatform({
    store: openSqliteStore(join(scratch, "records.db")),
    systemKeyring,
    tenantKeyring: tenant.keyring,
    ...(tenant.refresh === undefined ? {} : { refreshTenantKeyring: tenant.refresh }),
    ...options,
    attestation: {
      token: () => "token",
      evidence: { type: "sgx", quote: new Uint8Array(16) },
      runtimeData: new Uint8Array(2),
      keys: { ohttp: keys },
    },
  });
  started.push(platform);
  return platform;
}

/** A portal client signed in as the clerk, talking to `platform` only. */
async function portalClient(platform: TestPlatform): Promise<PlatformClient> {
  globalThis.XMLHttpRequest = xhrFor(platform.app);
  const client = new PlatformClient(
    "https://platform.test",
    Buffer.from(keys.keyConfig).toString("base64url"),
  );
  const { accessToken } = (await client.json("POST", "/auth/login", {
    email: "clerk@a.test",
    password,
  })) as { accessToken: string };
  client.setAccessToken(accessToken);
  return client;
}

before(async () => {
  keys = await generateOhttpKeyPair({ keyId: 3 });
});
after(async () => {
  for (const platform of started) {
    await platform.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

test("a replica still fetching a key version another replica rotated to first: one automatic retry, no failure shown", async () => {
  // Replica B holds tenant key versions 1 and 2; replica A has not fetched version 2 yet.
  const replicaB = await startReplica({ keyring: async () => tenantBoth });
  await replicaB.accounts.create({ email: "clerk@a.test", password, tenantId, role: "clerk" });
  const onB = await portalClient(replicaB);
  const patient = (await onB.json("POST", "/fhir/Patient", {
    resourceType: "Patient",
    name: [{ family: "Retrysentinel" }],
  })) as { id: string };
  let held = tenantFirst;
  let refreshes = 0;
  const replicaA = await startReplica({
    keyring: async () => held,
    refresh: async () => {
      refreshes++;
      held = tenantBoth;
      return held;
    },
  });
  const onA = await portalClient(replicaA);
  // Its sign-in fetched version 2 for the tenant's trail; as if it had not, for the read.
  held = tenantFirst;
  refreshes = 0;
  const sentBefore = sent.get(replicaA.app) ?? 0;
  const read = (await onA.json("GET", `/fhir/Patient/${patient.id}`)) as { name: { family: string }[] };
  assert.equal(read.name[0]?.family, "Retrysentinel");
  assert.equal(
    (sent.get(replicaA.app) ?? 0) - sentBefore,
    2,
    "refused once (503, Retry-After: 1), then read",
  );
  assert.equal(refreshes, 1);
});

test("a replica shedding load: one retry after Retry-After, then the failure is shown; other failures at once", async () => {
  const shedding = await startReplica({ keyring: async () => tenantBoth }, { maxInFlight: 0 });
  globalThis.XMLHttpRequest = xhrFor(shedding.app);
  const client = new PlatformClient(
    "https://platform.test",
    Buffer.from(keys.keyConfig).toString("base64url"),
  );
  await assert.rejects(
    client.json("POST", "/auth/login", { email: "clerk@a.test", password }),
    (error: unknown) =>
      error instanceof PlatformRequestError && error.status === 503 && error.code === "ERR_OVERLOADED",
  );
  assert.equal(
    sent.get(shedding.app),
    2,
    "sent, refused at the gateway (503, Retry-After: 1), sent once more",
  );

  const serving = await startReplica({ keyring: async () => tenantBoth });
  globalThis.XMLHttpRequest = xhrFor(serving.app);
  await assert.rejects(
    client.json("POST", "/auth/login", { email: "clerk@a.test", password: "not the password" }),
    (error: unknown) => error instanceof PlatformRequestError && error.status === 401,
  );
  assert.equal(sent.get(serving.app), 1, "a refused sign-in is not sent again");
});
