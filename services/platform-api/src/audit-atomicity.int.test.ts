// A FHIR write and the AuditEvent that reports it are stored in one transaction: when the event cannot be
// stored (here the tenant's audit chain holds an event that does not open at the next sequence number), the
// write is refused and nothing of it is stored. Before, the record was written first and the event after.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { deriveTenantKeyring, sealRecord } from "./storage/record-crypto.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const tenantId = "hospital-a";
let platform: TestPlatform;
let headers: Record<string, string>;

before(async () => {
  platform = await startTestPlatform();
  await platform.accounts.create({ email: "clerk@a.test", password, tenantId, role: "clerk" });
  const token = (
    await platform.app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: "clerk@a.test", password },
    })
  ).json<{ accessToken: string }>().accessToken;
  headers = { authorization: `Bearer ${token}`, "content-type": "application/fhir+json" };
});
after(async () => {
  await platform.close();
});

/** The tenant's audit events, in order, as stored (sealed). */
async function auditLength(): Promise<number> {
  let sequence = 0;
  while ((await platform.store.current(tenantId, "AuditEvent", `audit-${sequence + 1}`)) !== undefined) {
    sequence++;
  }
  return sequence;
}

function putPatient(id: string, family: string) {
  return platform.app.inject({
    method: "PUT",
    url: `/fhir/Patient/${id}`,
    headers,
    payload: { resourceType: "Patient", id, name: [{ family }] },
  });
}

describe("a FHIR write and its AuditEvent", () => {
  it("are stored together: each write adds exactly one event", async () => {
    const before = await auditLength();
    assert.equal((await putPatient("atomic-1", "First")).statusCode, 201);
    assert.equal(await auditLength(), before + 1);
    const created = await platform.app.inject({
      method: "POST",
      url: "/fhir/Patient",
      headers,
      payload: { resourceType: "Patient", name: [{ family: "Second" }] },
    });
    assert.equal(created.statusCode, 201);
    assert.equal(await auditLength(), before + 2);
  });

  it("are refused together when the event cannot be stored: no record, no new version", async () => {
    // An event sealed under a key the platform does not hold sits where the next one would go: the chain
    // cannot be extended.
    const next = (await auditLength()) + 1;
    await platform.store.write(
      tenantId,
      {
        type: "AuditEvent",
        id: `audit-${next}`,
        versionId: 1,
        lastUpdated: new Date().toISOString(),
        deleted: false,
        body: sealRecord(
          deriveTenantKeyring(randomBytes(32), tenantId),
          { tenantId, type: "AuditEvent", id: `audit-${next}`, versionId: 1 },
          Buffer.from("{}"),
        ),
      },
      0,
      [],
    );
    const refused = await putPatient("atomic-2", "Never");
    assert.ok(refused.statusCode >= 500, `refused with ${refused.statusCode}`);
    assert.equal(refused.json<{ resourceType: string }>().resourceType, "OperationOutcome");
    assert.equal(await platform.store.current(tenantId, "Patient", "atomic-2"), undefined, "nothing stored");
    const update = await putPatient("atomic-1", "Changed");
    assert.ok(update.statusCode >= 500, `refused with ${update.statusCode}`);
    assert.equal(
      (await platform.store.current(tenantId, "Patient", "atomic-1"))?.versionId,
      1,
      "no version 2",
    );
  });
});
