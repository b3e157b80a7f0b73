// Two writers (two replicas) append to one tenant's chain: neither forks it, and each catches up with the
// other's events through the create-only claim on the next sequence number, also when the event is stored
// in the same transaction as the record it reports. A chain under a key version the verifier does not hold
// is not reported as tampered with.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FhirRepository } from "../fhir/repository.js";
import { PlatformError } from "../errors.js";
import { deriveTenantKeyring, openRecord } from "../storage/record-crypto.js";
import { openSqliteStore } from "../storage/sqlite-store.js";
import { AuditTrail, type AuditInput } from "./audit-trail.js";

/** A fresh SQLite store, closed and removed after the test. */
function scratchStore(prefix: string): ReturnType<typeof openSqliteStore> {
  const scratch = mkdtempSync(join(tmpdir(), prefix));
  const store = openSqliteStore(join(scratch, "records.db"));
  after(async () => {
    await store.close();
    rmSync(scratch, { recursive: true, force: true });
  });
  return store;
}

test("two audit writers on one store extend a single chain", async () => {
  const store = scratchStore("cloister-audit-");
  const tenant = { tenantId: "t", keyring: deriveTenantKeyring(randomBytes(32), "t") };
  const event: AuditInput = {
    type: { code: "110110", display: "Patient Record" },
    action: "R",
    outcome: "0",
    agent: { id: "a" },
  };
  const first = new AuditTrail(store);
  const second = new AuditTrail(store);
  for (let i = 0; i < 5; i++) {
    await first.record(tenant, event);
    await second.record(tenant, event);
  }
  await Promise.all([first.record(tenant, event), second.record(tenant, event)]);
  assert.equal(await new AuditTrail(store).verify(tenant), 12);
  assert.equal(await first.verify(tenant), 12);
});

test("two writers storing records along with their events extend a single chain, one event per record", async () => {
  const store = scratchStore("cloister-audit-along-");
  const tenant = { tenantId: "t", keyring: deriveTenantKeyring(randomBytes(32), "t") };
  const repository = new FhirRepository(store);
  const event: AuditInput = {
    type: { code: "110110", display: "Patient Record" },
    action: "C",
    outcome: "0",
    agent: { id: "a" },
  };
  const first = new AuditTrail(store);
  const second = new AuditTrail(store);
  // The second writer does not know the first's events: each of its writes first meets a taken sequence
  // number, catches up, and writes its record again with the next one (the first attempt stored nothing).
  const created = await Promise.all(
    Array.from({ length: 8 }, async (_, i) =>
      (i % 2 === 0 ? first : second).recordAlong(tenant, event, async (auditEvent) =>
        repository.create(tenant, { resourceType: "Patient", name: [{ family: `F${i}` }] }, { auditEvent }),
      ),
    ),
  );
  assert.equal(await new AuditTrail(store).verify(tenant), 8);
  const reported = new Set<string>();
  for (let sequence = 1; sequence <= 8; sequence++) {
    const stored = await store.current("t", "AuditEvent", `audit-${sequence}`);
    assert.ok(stored);
    const opened = JSON.parse(
      openRecord(
        tenant.keyring,
        { tenantId: "t", type: "AuditEvent", id: stored.id, versionId: 1 },
        stored.body,
      ).toString("utf8"),
    ) as { entity: { what: { reference: string } }[] };
    reported.add(opened.entity[0]?.what.reference ?? "");
  }
  for (const patient of created) {
    assert.ok(reported.has(`Patient/${patient.id ?? ""}`), "every record has its own event");
    assert.ok(await store.current("t", "Patient", patient.id ?? ""));
  }
});

test("events under a key version the verifier does not hold: ERR_KEY_UNAVAILABLE, not a broken chain", async () => {
  const store = scratchStore("cloister-audit-version-");
  const written = { tenantId: "t", keyring: deriveTenantKeyring(randomBytes(32), "t") };
  const trail = new AuditTrail(store);
  await trail.record(written, {
    type: { code: "110110", display: "Patient Record" },
    action: "R",
    outcome: "0",
    agent: { id: "a" },
  });
  // A replica that holds only version 2 (version 1 destroyed too early, or not re-encrypted yet).
  const laterOnly = { tenantId: "t", keyring: deriveTenantKeyring(randomBytes(32), "t", 2) };
  await assert.rejects(
    new AuditTrail(store).verifyFromCheckpoint(laterOnly, undefined),
    (error: unknown) => error instanceof PlatformError && error.code === "ERR_KEY_UNAVAILABLE",
  );
  // The same chain verifies with the version that sealed it.
  assert.equal(await new AuditTrail(store).verify(written), 1);
});
