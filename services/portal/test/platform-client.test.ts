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
import { FhirRepository } from "../../platform-api/src/fhir/repository.js";
import { startTestPlatform, type TestPlatform } from "../../platform-api/src/test-support/test-platform.js";
import { PlatformClient, PlatformRequestError, type AttestedKey } from "../src/platform-client.js";
import { orderPriorityExtension } from "../src/fhir.js";
import { awaitingReview } from "../src/worklist.js";

const password = "correct horse battery staple";
const tenantId = "hospital-a";
const scratch = mkdtempSync(join(tmpdir(), "cloister-portal-client-"));
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const sessionSecret = randomBytes(32);
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
  options: { maxInFlight?: number; ohttpKeys?: OhttpKeyPair; previousOhttpKeys?: OhttpKeyPair[] } = {},
): Promise<TestPlatform> {
  const { ohttpKeys = keys, previousOhttpKeys = [], ...platformOptions } = options;
  const platform = await startTestPlatform({
    store: openSqliteStore(join(scratch, "records.db")),
    systemKeyring,
    // One session key for all replicas, as the platform derives it from its system key.
    sessionSecret,
    tenantKeyring: tenant.keyring,
    ...(tenant.refresh === undefined ? {} : { refreshTenantKeyring: tenant.refresh }),
    ...platformOptions,
    attestation: {
      token: () => "token",
      evidence: { type: "sgx", quote: new Uint8Array(16) },
      runtimeData: new Uint8Array(2),
      keys: { ohttp: ohttpKeys, ohttpPrevious: previousOhttpKeys },
    },
  });
  started.push(platform);
  return platform;
}

/** What verifying a platform with these OHTTP keys gives the portal, valid for `validMs`. */
function attestedKey(ohttpKeys: OhttpKeyPair, validMs = 3_600_000): AttestedKey {
  return {
    keyConfig: Buffer.from(ohttpKeys.keyConfig).toString("base64url"),
    expiresAt: new Date(Date.now() + validMs),
  };
}

/**
 * A portal client that attested `keys`, signed in as `email` (default the clerk), talking to `platform` only;
 * `reattest` is how it verifies the platform again.
 */
async function portalClient(
  platform: TestPlatform,
  options: { email?: string; reattest?: () => Promise<AttestedKey> } = {},
): Promise<PlatformClient> {
  globalThis.XMLHttpRequest = xhrFor(platform.app);
  const client = new PlatformClient("https://platform.test", attestedKey(keys), options.reattest);
  const { accessToken } = (await client.json("POST", "/auth/login", {
    email: options.email ?? "clerk@a.test",
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
  const client = new PlatformClient("https://platform.test", attestedKey(keys));
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

test("the platform's key changed (a rotation, a lone replica's restart): verified again once, the request sent once more, the session kept", async () => {
  const before = await startReplica({ keyring: async () => tenantBoth });
  await before.accounts.create({ email: "keychange@a.test", password, tenantId, role: "clerk" });
  let attestations = 0;
  // What the platform's evidence binds now; the portal verifies it again only through this.
  let current = keys;
  const client = await portalClient(before, {
    email: "keychange@a.test",
    reattest: async () => {
      attestations++;
      return attestedKey(current);
    },
  });

  // Rotated to a key with another key id (ERR_OHTTP_UNKNOWN_KEY), then to one with the same id
  // (ERR_OHTTP_DECRYPT): each time, one attestation and one more send, and the request is done once.
  for (const keyId of [4, 4 + 256]) {
    const rotated = await generateOhttpKeyPair({ keyId: keyId % 256 });
    const after = await startReplica({ keyring: async () => tenantBoth }, { ohttpKeys: rotated });
    current = rotated;
    globalThis.XMLHttpRequest = xhrFor(after.app);
    const attestationsBefore = attestations;
    const patient = (await client.json("POST", "/fhir/Patient", {
      resourceType: "Patient",
      name: [{ family: `Rotation${keyId}` }],
    })) as { id: string };
    assert.equal(attestations - attestationsBefore, 1, "verified again once");
    assert.equal(sent.get(after.app), 2, "refused by the gateway, then sent once more");
    const found = await client.search<{ id: string }>("Patient", { name: `Rotation${keyId}` });
    assert.deepEqual(
      found.map((entry) => entry.id),
      [patient.id],
      "created once",
    );
    assert.equal(attestations - attestationsBefore, 1, "the next request goes to the new key at once");
  }

  // Several requests that meet the change together: one attestation between them.
  const rotated = await generateOhttpKeyPair({ keyId: 9 });
  const after = await startReplica({ keyring: async () => tenantBoth }, { ohttpKeys: rotated });
  current = rotated;
  globalThis.XMLHttpRequest = xhrFor(after.app);
  const attestationsBefore = attestations;
  const sentBefore = sent.get(after.app) ?? 0;
  const searches = await Promise.all(
    [1, 2, 3].map(async () => client.search("Patient", { name: "Rotation4" })),
  );
  assert.deepEqual(
    searches.map((found) => found.length),
    [1, 1, 1],
  );
  assert.equal(attestations - attestationsBefore, 1);
  assert.equal((sent.get(after.app) ?? 0) - sentBefore, 6, "each refused once, then sent once more");
});

test("a platform that no longer verifies gets nothing more; an expired attestation is verified again before anything is sent", async () => {
  const platform = await startReplica({ keyring: async () => tenantBoth });
  await platform.accounts.create({ email: "expiry@a.test", password, tenantId, role: "clerk" });
  globalThis.XMLHttpRequest = xhrFor(platform.app);
  let attestations = 0;
  let verifies = true;
  const reattest = async (): Promise<AttestedKey> => {
    attestations++;
    if (!verifies) {
      throw new Error("ERR_PEER_MEASUREMENT");
    }
    return attestedKey(keys);
  };
  // Verified a moment ago, with a token that has expired since.
  const client = new PlatformClient("https://platform.test", attestedKey(keys, -1), reattest);
  await client.json("POST", "/auth/login", { email: "expiry@a.test", password });
  assert.equal(attestations, 1, "verified again before the sign-in was sent");
  assert.equal(sent.get(platform.app), 1);

  // The platform's key changed, and its new evidence does not verify: the request is not sent again.
  const other = await generateOhttpKeyPair({ keyId: 5 });
  const replaced = await startReplica({ keyring: async () => tenantBoth }, { ohttpKeys: other });
  globalThis.XMLHttpRequest = xhrFor(replaced.app);
  verifies = false;
  await assert.rejects(
    client.json("POST", "/auth/login", { email: "expiry@a.test", password }),
    (error: unknown) => error instanceof PlatformRequestError && error.code === "ERR_ATTESTATION_REFUSED",
  );
  assert.equal(attestations, 2);
  assert.equal(sent.get(replaced.app), 1, "only the first send, which the gateway could not open");

  // Without a way to verify again, a key change asks for a reload, and an expired attestation sends nothing.
  const withoutReattest = new PlatformClient("https://platform.test", attestedKey(keys));
  await assert.rejects(
    withoutReattest.json("POST", "/auth/login", { email: "expiry@a.test", password }),
    (error: unknown) => error instanceof PlatformRequestError && error.code === "ERR_OHTTP_UNKNOWN_KEY",
  );
  const expired = new PlatformClient("https://platform.test", attestedKey(other, -1));
  await assert.rejects(
    expired.json("POST", "/auth/login", { email: "expiry@a.test", password }),
    (error: unknown) => error instanceof PlatformRequestError && error.code === "ERR_ATTESTATION_EXPIRED",
  );
  assert.equal(sent.get(replaced.app), 2, "the expired client sent nothing");
});

test("a replica rolled out after a rotation still opens the previous key: a page that attested an older replica needs no new attestation", async () => {
  const before = await startReplica({ keyring: async () => tenantBoth });
  await before.accounts.create({ email: "roll@a.test", password, tenantId, role: "clerk" });
  let attestations = 0;
  const client = await portalClient(before, {
    email: "roll@a.test",
    reattest: async () => {
      attestations++;
      return attestedKey(keys);
    },
  });
  const rotated = await generateOhttpKeyPair({ keyId: 6 });
  const rolled = await startReplica(
    { keyring: async () => tenantBoth },
    { ohttpKeys: rotated, previousOhttpKeys: [keys] },
  );
  globalThis.XMLHttpRequest = xhrFor(rolled.app);
  const found = await client.search("Patient", { name: "Nobody" });
  assert.deepEqual(found, []);
  assert.equal(sent.get(rolled.app), 1, "opened at once");
  assert.equal(attestations, 0);
});

test("a session the platform ends (the account disabled by an admin, PATCH through the gateway) calls the handler once; a wrong password at sign-in does not", async () => {
  const platform = await startReplica({ keyring: async () => tenantBoth });
  await platform.accounts.create({ email: "admin@ended.test", password, tenantId, role: "admin" });
  await platform.accounts.create({ email: "clerk@ended.test", password, tenantId, role: "clerk" });
  const clerk = await portalClient(platform, { email: "clerk@ended.test" });
  const ended: string[] = [];
  clerk.setSessionEndedHandler((failure) => ended.push(failure.code));
  await assert.rejects(
    clerk.json("POST", "/auth/login", { email: "clerk@ended.test", password: "not the password" }),
    (error: unknown) => error instanceof PlatformRequestError && error.status === 401,
  );
  assert.deepEqual(ended, [], "a refused sign-in is not an ended session");

  const admin = await portalClient(platform, { email: "admin@ended.test" });
  const listed = (await admin.json("GET", "/admin/accounts")) as {
    accounts: { id: string; email: string }[];
  };
  const id = listed.accounts.find((account) => account.email === "clerk@ended.test")?.id ?? "";
  const disabled = (await admin.json("PATCH", `/admin/accounts/${id}`, { active: false })) as {
    active: boolean;
  };
  assert.equal(disabled.active, false);
  await assert.rejects(
    clerk.search("Patient", { name: "anyone" }),
    (error: unknown) => error instanceof PlatformRequestError && error.code === "ERR_SESSION_ENDED",
  );
  assert.deepEqual(ended, ["ERR_SESSION_ENDED"]);
});

test("searchFirst: the first matches of a search, following its sealed next links through the gateway, with the number of all", async () => {
  const platform = await startReplica({ keyring: async () => tenantBoth });
  await platform.accounts.create({ email: "clerk@pages.test", password, tenantId, role: "clerk" });
  const clerk = await portalClient(platform, { email: "clerk@pages.test" });
  const family = `Pageable${randomBytes(3).toString("hex")}`;
  for (let i = 0; i < 7; i++) {
    await clerk.json("POST", "/fhir/Patient", {
      resourceType: "Patient",
      name: [{ family, given: [`G${i}`] }],
    });
  }
  const ids = (resources: readonly unknown[]): string[] =>
    resources.map((patient) => (patient as { id?: string }).id ?? "");
  const all = await clerk.searchPage("Patient", { name: family, _count: "7" });
  assert.equal(all.total, 7);
  assert.equal(all.next, undefined);
  const everyId = ids(all.resources);

  // Pages of two: three pages for the first five, in the platform's order.
  const firstFive = await clerk.searchFirst("Patient", { name: family }, 5, 2);
  assert.deepEqual(ids(firstFive.resources), everyId.slice(0, 5));
  assert.equal(firstFive.total, 7);
  // Asking for more than there are: every page is read, and it stops at the last.
  const beyond = await clerk.searchFirst("Patient", { name: family }, 20, 3);
  assert.deepEqual(ids(beyond.resources), everyId);
  assert.equal(beyond.total, 7);
  // One page when it holds them.
  const two = await clerk.searchFirst("Patient", { name: family }, 2);
  assert.deepEqual(ids(two.resources), everyId.slice(0, 2));
  assert.equal(two.total, 7);
});

test("the worklist through the gateway: results of urgent orders first (STAT, ASAP, urgent), then the oldest routine ones; each priority read alone when more urgent ones wait than are shown", async () => {
  const platform = await startReplica({ keyring: async () => tenantBoth });
  await platform.accounts.create({ email: "clinician@worklist.test", password, tenantId, role: "clinician" });
  const clinician = await portalClient(platform, { email: "clinician@worklist.test" });
  // AI reports as the workflow writes them, one second apart (the worklist sorts by last update).
  let clock = Date.parse("2026-11-30T08:00:00Z");
  const repository = new FhirRepository(platform.store, () => new Date((clock += 1000)));
  const tenant = { tenantId, keyring: tenantBoth };
  const write = async (name: string, priority?: string): Promise<string> =>
    (
      await repository.create(tenant, {
        resourceType: "DiagnosticReport",
        ...(priority === undefined
          ? {}
          : { extension: [{ url: orderPriorityExtension, valueCode: priority }] }),
        status: "preliminary",
        code: { text: name },
      })
    ).id ?? "";
  const names = async (shown: number) =>
    (await awaitingReview(clinician, shown)).reports.map((report) => report.code?.text);

  // Oldest first: a report from before priorities were recorded, routine ones, then urgent ones.
  await write("legacy");
  await write("routine 1", "routine");
  await write("urgent 1", "urgent");
  await write("routine 2", "routine");
  await write("stat 1", "stat");
  await write("asap 1", "asap");
  await write("urgent 2", "urgent");
  await write("stat 2", "stat");
  assert.deepEqual(await names(20), [
    "stat 1",
    "stat 2",
    "asap 1",
    "urgent 1",
    "urgent 2",
    "legacy",
    "routine 1",
    "routine 2",
  ]);
  const six = await awaitingReview(clinician, 6);
  assert.deepEqual(
    six.reports.map((report) => report.code?.text),
    ["stat 1", "stat 2", "asap 1", "urgent 1", "urgent 2", "legacy"],
  );
  assert.equal(six.total, 8);
  assert.equal(six.urgent, 5);
  // More urgent results than shown: the newest STAT one still comes before older urgent ones.
  const three = await awaitingReview(clinician, 3);
  assert.deepEqual(
    three.reports.map((report) => report.code?.text),
    ["stat 1", "stat 2", "asap 1"],
  );
  assert.equal(three.total, 8);
  assert.equal(three.urgent, 5);
  // A reviewed report (final) is not waiting any more.
  const reviewed = await write("reviewed", "stat");
  await repository.update(
    tenant,
    { ...(await repository.read(tenant, "DiagnosticReport", reviewed)), status: "final" },
    reviewed,
  );
  assert.deepEqual(await names(2), ["stat 1", "stat 2"]);
});
