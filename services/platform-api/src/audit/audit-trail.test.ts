// Two writers (two replicas) append to one tenant's chain: neither forks it, and each catches up with the
// other's events through the create-only claim on the next sequence number.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { deriveTenantKeyring } from "../storage/record-crypto.js";
import { openSqliteStore } from "../storage/sqlite-store.js";
import { AuditTrail, type AuditInput } from "./audit-trail.js";

test("two audit writers on one store extend a single chain", async () => {
  const scratch = mkdtempSync(join(tmpdir(), "cloister-audit-"));
  const store = openSqliteStore(join(scratch, "records.db"));
  after(async () => {
    await store.close();
    rmSync(scratch, { recursive: true, force: true });
  });
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
