// Key rotations seen by several replicas over one database, as they spread: one replica holds the new version
// while another has not fetched it yet.
// - A tenant's records written or re-encrypted by a replica holding the new version are still found by one
//   that does not (search tokens under every version held), so a clerk is never told a patient does not
//   exist and creates a duplicate.
// - The platform's own key (platform-system): accounts and the system audit trail move to the new version in
//   the background; a replica that has not seen the rotation keeps signing staff in (it fetches the version it
//   meets), and once the old version is destroyed everything opens with the new one alone.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  deriveTenantKeyring,
  deriveTenantKeyringGenerations,
  sealedKeyGeneration,
  type TenantKeyring,
} from "./storage/record-crypto.js";
import { openSqliteStore } from "./storage/sqlite-store.js";
import type { KeyringSource } from "./storage/tenant-keyrings.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const tenantId = "hospital-a";
const scratch = mkdtempSync(join(tmpdir(), "cloister-rotation-replicas-"));
const databasePath = join(scratch, "records.db");
const started: TestPlatform[] = [];

after(async () => {
  for (const platform of started) {
    await platform.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

/** Versions 1 and 2 of one data key, as the key broker would release them before, during and after. */
function generations(owner: string): {
  first: TenantKeyring;
  both: TenantKeyring;
  secondOnly: TenantKeyring;
} {
  const firstKey = randomBytes(32);
  const secondKey = randomBytes(32);
  return {
    first: deriveTenantKeyring(firstKey, owner),
    both: deriveTenantKeyringGenerations(
      new Map([
        [1, firstKey],
        [2, secondKey],
      ]),
      owner,
    ),
    secondOnly: deriveTenantKeyring(secondKey, owner, 2),
  };
}

/** What one replica holds of a key, fetched again from `broker` only when it asks. */
function replicaKeyring(broker: { current: TenantKeyring }, initial: TenantKeyring) {
  const replica = { held: initial, refreshes: 0 };
  const source: KeyringSource = {
    keyring: async () => replica.held,
    refresh: async () => {
      replica.refreshes++;
      replica.held = broker.current;
      return replica.held;
    },
  };
  return { replica, source };
}

async function startReplica(
  system: KeyringSource,
  tenant: { keyring: () => Promise<TenantKeyring>; refresh: () => Promise<TenantKeyring> },
  operatorTenant?: string,
): Promise<TestPlatform> {
  const platform = await startTestPlatform({
    store: openSqliteStore(databasePath),
    systemKeyring: system,
    tenantKeyring: tenant.keyring,
    refreshTenantKeyring: tenant.refresh,
    ...(operatorTenant === undefined ? {} : { operatorTenant }),
  });
  started.push(platform);
  return platform;
}

/**
 * Signs in as a client that honours Retry-After: a replica that meets a record under a version it has not
 * fetched yet answers 503 with Retry-After: 1 while it fetches it (the tenant's trail, here).
 */
async function signIn(platform: TestPlatform, email: string, secret = password) {
  const attempt = () =>
    platform.app.inject({ method: "POST", url: "/auth/login", payload: { email, password: secret } });
  const answer = await attempt();
  if (answer.statusCode !== 503) {
    return answer;
  }
  assert.equal(answer.json<{ code: string }>().code, "ERR_KEY_UNAVAILABLE");
  assert.equal(answer.headers["retry-after"], "1");
  await new Promise((resolve) => setTimeout(resolve, 10));
  return attempt();
}

async function bearer(platform: TestPlatform, email: string): Promise<Record<string, string>> {
  const answer = await signIn(platform, email);
  assert.equal(answer.statusCode, 200, answer.body);
  return { authorization: `Bearer ${answer.json<{ accessToken: string }>().accessToken}` };
}

const systemKeys = generations("_system");
const tenantKeys = generations(tenantId);
const systemBroker = { current: systemKeys.first };
const tenantBroker = { current: tenantKeys.first };

test("replicas on both sides of a rotation: records, searches, accounts and the system audit trail", async () => {
  // Replica A starts before either rotation.
  const systemA = replicaKeyring(systemBroker, systemKeys.first);
  const tenantA = replicaKeyring(tenantBroker, tenantKeys.first);
  const replicaA = await startReplica(systemA.source, tenantA.source);
  for (const role of ["clerk", "admin"] as const) {
    await replicaA.accounts.create({ email: `${role}@a.test`, password, tenantId, role });
  }
  const clerkOnA = await bearer(replicaA, "clerk@a.test");
  assert.equal((await signIn(replicaA, "clerk@a.test", "not the password")).statusCode, 401);
  const oldPatient = await replicaA.app.inject({
    method: "POST",
    url: "/fhir/Patient",
    headers: { ...clerkOnA, "content-type": "application/fhir+json" },
    payload: { resourceType: "Patient", identifier: [{ system: "urn:mrn", value: "MRN-BEFORE" }] },
  });
  assert.equal(oldPatient.statusCode, 201, oldPatient.body);

  // Both keys rotate at the broker. Replica B starts after that; A has not fetched anything yet.
  systemBroker.current = systemKeys.both;
  tenantBroker.current = tenantKeys.both;
  const systemB = replicaKeyring(systemBroker, systemKeys.both);
  const tenantB = replicaKeyring(tenantBroker, tenantKeys.both);
  // B is configured with this hospital as the operator tenant; A with none.
  const replicaB = await startReplica(systemB.source, tenantB.source, tenantId);

  // B moves the platform's own records to version 2 in the background.
  const staleBefore = await replicaB.store.countStaleVersions("_system", 2);
  assert.ok(staleBefore >= 2 + 2, `two accounts and the system audit trail (${staleBefore})`);
  const gauge = async (platform: TestPlatform) =>
    /^system_records_stale_versions (\d+)$/m.exec(
      (await platform.app.inject({ method: "GET", url: "/metrics" })).body,
    )?.[1];
  assert.equal(await gauge(replicaB), String(staleBefore), "what is left, for an alert or the runbook");
  const moved = await replicaB.app.reencryptSystemRecords(3);
  assert.deepEqual(moved, { generation: 2, resealed: staleBefore, remaining: 0 });
  assert.equal(await replicaB.store.countStaleVersions("_system", 2), 0);
  assert.equal(await gauge(replicaB), "0");
  assert.deepEqual(await replicaB.app.reencryptSystemRecords(), { generation: 2, resealed: 0, remaining: 0 });

  // A meets accounts sealed under a version it does not hold: it fetches it and signs staff in.
  const clerkOnB = await bearer(replicaB, "clerk@a.test");
  const systemRefreshesBefore = systemA.replica.refreshes;
  assert.equal(systemRefreshesBefore, 0);
  assert.equal(systemA.replica.held.generation, 1);
  await bearer(replicaA, "clerk@a.test");
  assert.ok(systemA.replica.refreshes > systemRefreshesBefore, "A fetched the new system key version");
  assert.equal(systemA.replica.held.generation, 2);

  // B writes a patient under tenant version 2 and re-encrypts the old one; A, still on version 1, finds both.
  const newPatient = await replicaB.app.inject({
    method: "POST",
    url: "/fhir/Patient",
    headers: { ...clerkOnB, "content-type": "application/fhir+json" },
    payload: { resourceType: "Patient", identifier: [{ system: "urn:mrn", value: "MRN-AFTER" }] },
  });
  assert.equal(newPatient.statusCode, 201, newPatient.body);
  const adminOnB = await bearer(replicaB, "admin@a.test");
  // The operator tenant's admins may ask for the same run (`cloister keys rotate --system`); other staff may
  // not, nor any admin where no operator tenant is configured (a hospital's admin manages its own tenant only).
  const asked = (headers: Record<string, string>, replica = replicaB) =>
    replica.app.inject({ method: "POST", url: "/admin/system/reencrypt", headers });
  assert.equal((await asked(clerkOnB)).statusCode, 403);
  assert.deepEqual((await asked(adminOnB)).json(), { generation: 2, resealed: 0, remaining: 0 });
  const refused = await asked(await bearer(replicaA, "admin@a.test"), replicaA);
  assert.equal(refused.statusCode, 403);
  assert.equal(refused.json<{ code?: string }>().code, "ERR_FORBIDDEN", refused.body);
  for (;;) {
    const batch = await replicaB.app.inject({ method: "POST", url: "/admin/reencrypt", headers: adminOnB });
    assert.equal(batch.statusCode, 200, batch.body);
    if (batch.json<{ remaining: number }>().remaining === 0) {
      break;
    }
  }
  const stored = await replicaB.store.current(tenantId, "Patient", oldPatient.json<{ id: string }>().id);
  assert.equal(sealedKeyGeneration(stored?.body ?? new Uint8Array()), 2);
  const searchOnA = async (mrn: string) => {
    // As if A had not fetched tenant version 2 yet (its sign-in above did): its search tokens are version 1's.
    tenantA.replica.held = tenantKeys.first;
    const url = `/fhir/Patient?identifier=urn:mrn|${mrn}`;
    const first = await replicaA.app.inject({ method: "GET", url, headers: clerkOnA });
    // Found, and sealed under version 2: 503 with Retry-After while A fetches it. A search that missed would
    // answer 200 with no entry.
    assert.equal(first.statusCode, 503, first.body);
    assert.equal(first.headers["retry-after"], "1");
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(tenantA.replica.held.generation, 2);
    const answer = await replicaA.app.inject({ method: "GET", url, headers: clerkOnA });
    assert.equal(answer.statusCode, 200, answer.body);
    return (answer.json<{ entry?: { resource: { id: string } }[] }>().entry ?? []).map(
      (entry) => entry.resource.id,
    );
  };
  assert.deepEqual(await searchOnA("MRN-AFTER"), [newPatient.json<{ id: string }>().id]);
  assert.deepEqual(await searchOnA("MRN-BEFORE"), [oldPatient.json<{ id: string }>().id]);

  // A wrote under version 1 meanwhile (the AuditEvents of its refused searches): what `cloister keys
  // reencrypt --retire` moves before it destroys version 1, and what the background run moves for the system.
  assert.ok((await replicaB.store.countStaleVersions(tenantId, 2)) > 0);
  for (;;) {
    const batch = await replicaB.app.inject({ method: "POST", url: "/admin/reencrypt", headers: adminOnB });
    if (batch.json<{ remaining: number }>().remaining === 0) {
      break;
    }
  }
  assert.equal((await replicaB.app.reencryptSystemRecords()).remaining, 0);

  // Version 1 of both keys is destroyed. Replica C holds version 2 alone: everything opens and is found.
  systemBroker.current = systemKeys.secondOnly;
  tenantBroker.current = tenantKeys.secondOnly;
  const systemC = replicaKeyring(systemBroker, systemKeys.secondOnly);
  const tenantC = replicaKeyring(tenantBroker, tenantKeys.secondOnly);
  const replicaC = await startReplica(systemC.source, tenantC.source);
  const adminOnC = await bearer(replicaC, "admin@a.test");
  const clerkOnC = await bearer(replicaC, "clerk@a.test");
  assert.equal((await signIn(replicaC, "clerk@a.test", "not the password")).statusCode, 401);
  for (const mrn of ["MRN-BEFORE", "MRN-AFTER"]) {
    const found = await replicaC.app.inject({
      method: "GET",
      url: `/fhir/Patient?identifier=urn:mrn|${mrn}`,
      headers: clerkOnC,
    });
    assert.equal(found.json<{ total?: number; entry?: unknown[] }>().entry?.length, 1, mrn);
  }
  assert.equal(systemC.replica.refreshes + tenantC.replica.refreshes, 0, "nothing under version 1 was met");
  const systemTrail = await replicaC.app.auditTrail.verifyFromCheckpoint(
    { tenantId: "_system", keyring: systemKeys.secondOnly },
    undefined,
  );
  assert.ok(
    systemTrail.length >= 3,
    `the system audit trail verifies under version 2 (${systemTrail.length})`,
  );
  const verified = await replicaC.app.inject({ method: "POST", url: "/audit/verify", headers: adminOnC });
  assert.equal(verified.json<{ ok: boolean }>().ok, true, verified.body);
});
