// A FHIR write, or a change of a staff account (a wrong password's count too), and the AuditEvent that
// reports it are stored in one transaction: when the event cannot be stored (here the tenant's audit chain
// holds an event that does not open at the next sequence number), the write is refused and nothing of it is
// stored. Before, the record (or the account) was written first and the event after.
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
  const token = (await signIn("clerk@a.test", password)).json<{ accessToken: string }>().accessToken;
  headers = { authorization: `Bearer ${token}`, "content-type": "application/fhir+json" };
});
after(async () => {
  await platform.close();
});

/** How many audit events the tenant's trail holds, as stored (sealed). */
async function auditLength(tenant = tenantId): Promise<number> {
  let sequence = 0;
  while ((await platform.store.current(tenant, "AuditEvent", `audit-${sequence + 1}`)) !== undefined) {
    sequence++;
  }
  return sequence;
}

/**
 * Puts an event sealed under a key the platform does not hold where the tenant's next one would go: its chain
 * cannot be extended.
 */
async function breakChain(tenant: string): Promise<void> {
  const next = (await auditLength(tenant)) + 1;
  await platform.store.write(
    tenant,
    {
      type: "AuditEvent",
      id: `audit-${next}`,
      versionId: 1,
      lastUpdated: new Date().toISOString(),
      deleted: false,
      body: sealRecord(
        deriveTenantKeyring(randomBytes(32), tenant),
        { tenantId: tenant, type: "AuditEvent", id: `audit-${next}`, versionId: 1 },
        Buffer.from("{}"),
      ),
    },
    0,
    [],
  );
}

async function signIn(email: string, password: string, newPassword?: string) {
  return platform.app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email, password, ...(newPassword === undefined ? {} : { newPassword }) },
  });
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
    await breakChain(tenantId);
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

describe("a change of a staff account and its AuditEvent", () => {
  const tenant = "hospital-b";
  let admin: Record<string, string>;
  let clerkId: string;

  before(async () => {
    await platform.accounts.create({ email: "admin@b.test", password, tenantId: tenant, role: "admin" });
    clerkId = await platform.accounts.create({
      email: "clerk@b.test",
      password,
      tenantId: tenant,
      role: "clerk",
    });
    await platform.accounts.create({
      email: "new-starter@b.test",
      password,
      tenantId: tenant,
      role: "clerk",
      mustChangePassword: true,
    });
    const token = (await signIn("admin@b.test", password)).json<{ accessToken: string }>().accessToken;
    admin = { authorization: `Bearer ${token}` };
  });

  const patchAccount = (id: string, change: Record<string, unknown>) =>
    platform.app.inject({ method: "PATCH", url: `/admin/accounts/${id}`, headers: admin, payload: change });
  const accountOf = async (email: string) =>
    (await platform.accounts.list(tenant)).find((account) => account.email === email);
  /** The subtypes and entities of the tenant's newest event (the admin may read the trail). */
  const newestEvent = async () => {
    const found = await platform.app.inject({
      method: "GET",
      url: "/fhir/AuditEvent?_count=1",
      headers: admin,
    });
    const [entry] = found.json<{ entry: { resource: Record<string, unknown> }[] }>().entry;
    const resource = entry?.resource ?? {};
    return {
      subtypes: ((resource.subtype ?? []) as { code: string }[]).map((coding) => coding.code),
      entities: ((resource.entity ?? []) as { what: { reference: string } }[]).map(
        (entity) => entity.what.reference,
      ),
      outcome: resource.outcome,
    };
  };

  it("are stored together: one event per change, naming every kind of change it made", async () => {
    const before = await auditLength(tenant);
    const changed = await patchAccount(clerkId, { role: "clinician", unlock: true });
    assert.equal(changed.statusCode, 200, changed.body);
    // The event and, after it, the audited search that reads it back.
    assert.equal(await auditLength(tenant), before + 1);
    assert.deepEqual(await newestEvent(), {
      subtypes: ["account-role", "account-unlock"],
      entities: [`Account/${clerkId}`],
      outcome: "0",
    });
    const created = await platform.app.inject({
      method: "POST",
      url: "/admin/accounts",
      headers: admin,
      payload: { email: "second@b.test", role: "clerk", temporaryPassword: "a long temporary password" },
    });
    assert.equal(created.statusCode, 201, created.body);
    const { id } = created.json<{ id: string }>();
    assert.deepEqual(await newestEvent(), {
      subtypes: ["account-create"],
      entities: [`Account/${id}`],
      outcome: "0",
    });
  });

  it("are refused together when the event cannot be stored: the account is as it was", async () => {
    await breakChain(tenant);
    const disabled = await patchAccount(clerkId, { active: false });
    assert.ok(disabled.statusCode >= 500, `refused with ${disabled.statusCode}`);
    assert.equal((await accountOf("clerk@b.test"))?.active, true, "still active");
    assert.equal((await accountOf("clerk@b.test"))?.role, "clinician", "role as it was");

    const created = await platform.app.inject({
      method: "POST",
      url: "/admin/accounts",
      headers: admin,
      payload: { email: "third@b.test", role: "clerk", temporaryPassword: "a long temporary password" },
    });
    assert.ok(created.statusCode >= 500, `refused with ${created.statusCode}`);
    assert.equal(await accountOf("third@b.test"), undefined, "no account");

    // The owner's own password change at sign-in: refused, and the temporary password still stands.
    const changedPassword = await signIn("new-starter@b.test", password, "a new password of my own choosing");
    assert.ok(changedPassword.statusCode >= 500, `refused with ${changedPassword.statusCode}`);
    await assert.rejects(
      platform.accounts.login("new-starter@b.test", password, "test"),
      (error: unknown) => (error as { code?: string }).code === "ERR_PASSWORD_CHANGE_REQUIRED",
    );
    // A wrong password: its refusal is not recorded, so the failure it would count is not stored either.
    const wrong = await signIn("clerk@b.test", "not the password at all");
    assert.ok(wrong.statusCode >= 500, `refused with ${wrong.statusCode}`);
    assert.equal((await accountOf("clerk@b.test"))?.failedSignIns, 0);
  });
});
