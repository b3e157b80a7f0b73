// Data key rotation without downtime: after the key broker rotates a tenant's data key, records sealed under
// the old version stay readable and findable, new ones are sealed under the new version, an admin's
// re-encryption moves every version batch by batch (history, audit chain and search tokens included), and
// afterwards the old version can be destroyed: everything opens with the new one alone.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import {
  deriveTenantKeyring,
  deriveTenantKeyringGenerations,
  sealedKeyGeneration,
  type TenantKeyring,
} from "./storage/record-crypto.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const tenantId = "hospital-a";
const firstKey = randomBytes(32);
const secondKey = randomBytes(32);
const generationOne = deriveTenantKeyring(firstKey, tenantId);
const bothGenerations = deriveTenantKeyringGenerations(
  new Map([
    [1, firstKey],
    [2, secondKey],
  ]),
  tenantId,
);
const generationTwoOnly = deriveTenantKeyring(secondKey, tenantId, 2);

// What the key broker would release: the test moves it along as an operator would.
let held: TenantKeyring = generationOne;
let atBroker: TenantKeyring = generationOne;
let refreshes = 0;
let platform: TestPlatform;

before(async () => {
  platform = await startTestPlatform({
    tenantKeyring: async () => held,
    refreshTenantKeyring: async () => {
      refreshes++;
      held = atBroker;
      return held;
    },
  });
  for (const role of ["clerk", "admin"] as const) {
    await platform.accounts.create({ email: `${role}@a.test`, password, tenantId, role });
  }
});
after(async () => {
  await platform.close();
});

async function signIn(role: string): Promise<Record<string, string>> {
  const answer = await platform.app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email: `${role}@a.test`, password },
  });
  return { authorization: `Bearer ${answer.json<{ accessToken: string }>().accessToken}` };
}

const fhirJson = { "content-type": "application/fhir+json" };

test("rotate, keep serving, re-encrypt in batches, destroy the old version", async () => {
  const { app, store } = platform;
  const clerk = await signIn("clerk");
  const admin = await signIn("admin");
  const created: string[] = [];
  for (let i = 0; i < 5; i++) {
    const answer = await app.inject({
      method: "POST",
      url: "/fhir/Patient",
      headers: { ...clerk, ...fhirJson },
      payload: {
        resourceType: "Patient",
        identifier: [{ system: "urn:mrn", value: `MRN-OLD-${i}` }],
        name: [{ family: `Oldgen${i}` }],
      },
    });
    assert.equal(answer.statusCode, 201, answer.body);
    created.push(answer.json<{ id: string }>().id);
  }
  const updated = await app.inject({
    method: "PUT",
    url: `/fhir/Patient/${created[0]}`,
    headers: { ...clerk, ...fhirJson },
    payload: {
      resourceType: "Patient",
      id: created[0],
      identifier: [{ system: "urn:mrn", value: "MRN-OLD-0" }],
      name: [{ family: "Renamed" }],
    },
  });
  assert.equal(updated.statusCode, 200, updated.body);

  // The broker rotates; this replica picks the new version up (refresh, or its periodic re-release).
  atBroker = bothGenerations;
  held = bothGenerations;
  const search = async (query: string): Promise<string[]> => {
    const answer = await app.inject({ method: "GET", url: `/fhir/Patient?${query}`, headers: clerk });
    assert.equal(answer.statusCode, 200, answer.body);
    return (answer.json<{ entry?: { resource: { id: string } }[] }>().entry ?? []).map(
      (entry) => entry.resource.id,
    );
  };
  assert.deepEqual(await search("identifier=urn:mrn|MRN-OLD-3"), [created[3]], "old tokens still match");
  const fresh = await app.inject({
    method: "POST",
    url: "/fhir/Patient",
    headers: { ...clerk, ...fhirJson },
    payload: { resourceType: "Patient", identifier: [{ system: "urn:mrn", value: "MRN-NEW" }] },
  });
  const freshId = fresh.json<{ id: string }>().id;
  const freshStored = await store.current(tenantId, "Patient", freshId);
  assert.equal(sealedKeyGeneration(freshStored?.body ?? new Uint8Array()), 2, "new records use version 2");

  // Only admins re-encrypt; the limit is checked.
  assert.equal(
    (await app.inject({ method: "POST", url: "/admin/reencrypt", headers: clerk })).statusCode,
    403,
  );
  const badLimit = await app.inject({
    method: "POST",
    url: "/admin/reencrypt",
    headers: admin,
    payload: { limit: 0 },
  });
  assert.equal(badLimit.json<{ code: string }>().code, "ERR_BAD_REQUEST");

  const staleAtStart = await store.countStaleVersions(tenantId, 2);
  assert.ok(staleAtStart >= 6 + 5, `patients, a history version and audit events (${staleAtStart})`);
  let resealed = 0;
  let batches = 0;
  for (;;) {
    const answer = await app.inject({
      method: "POST",
      url: "/admin/reencrypt",
      headers: admin,
      payload: { limit: 4 },
    });
    assert.equal(answer.statusCode, 200, answer.body);
    const progress = answer.json<{ generation: number; resealed: number; remaining: number }>();
    assert.equal(progress.generation, 2);
    assert.ok(progress.resealed <= 4);
    resealed += progress.resealed;
    batches++;
    // Reads and writes go on between batches.
    assert.equal(
      (await app.inject({ method: "GET", url: `/fhir/Patient/${created[1]}`, headers: clerk })).statusCode,
      200,
    );
    if (progress.remaining === 0) {
      break;
    }
    assert.ok(batches < 50, "re-encryption converges");
  }
  assert.ok(resealed >= staleAtStart, `${resealed} resealed of ${staleAtStart}`);
  assert.ok(refreshes >= batches, "each batch asks the broker for the newest keys first");

  // The old version is destroyed at the broker: everything opens with version 2 alone.
  atBroker = generationTwoOnly;
  held = generationTwoOnly;
  for (const id of created) {
    const read = await app.inject({ method: "GET", url: `/fhir/Patient/${id}`, headers: clerk });
    assert.equal(read.statusCode, 200, read.body);
  }
  const history = await app.inject({
    method: "GET",
    url: `/fhir/Patient/${created[0]}/_history`,
    headers: clerk,
  });
  assert.equal(history.statusCode, 200, history.body);
  assert.equal(history.json<{ total: number }>().total, 2);
  assert.deepEqual(await search("identifier=urn:mrn|MRN-OLD-3"), [created[3]], "tokens were rebuilt");
  assert.deepEqual(await search("name=renamed"), [created[0]]);
  assert.deepEqual(await search("identifier=urn:mrn|MRN-NEW"), [freshId]);
  const verified = await app.inject({ method: "POST", url: "/audit/verify", headers: admin, payload: {} });
  assert.equal(verified.json<{ ok: boolean }>().ok, true, verified.body);
});

test("a record under a version this replica has not seen yet: 503 ERR_KEY_UNAVAILABLE, Retry-After, and a refresh", async () => {
  const { app } = platform;
  const clerk = await signIn("clerk");
  const created = await app.inject({
    method: "POST",
    url: "/fhir/Patient",
    headers: { ...clerk, ...fhirJson },
    payload: { resourceType: "Patient", identifier: [{ system: "urn:mrn", value: "MRN-LAG" }] },
  });
  const id = created.json<{ id: string }>().id;
  // Another replica still holds only version 1 while the broker has moved on.
  atBroker = generationTwoOnly;
  held = generationOne;
  const before = refreshes;
  const lagging = await app.inject({ method: "GET", url: `/fhir/Patient/${id}`, headers: clerk });
  assert.equal(lagging.statusCode, 503);
  assert.equal(lagging.headers["retry-after"], "1");
  assert.equal(lagging.json<{ resourceType: string }>().resourceType, "OperationOutcome");
  assert.match(lagging.body, /ERR_KEY_UNAVAILABLE/);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(refreshes, before + 1);
  const retried = await app.inject({ method: "GET", url: `/fhir/Patient/${id}`, headers: clerk });
  assert.equal(retried.statusCode, 200, "the retry is served with the refreshed keys");
});
