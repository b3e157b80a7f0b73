// Restoring the records database from a backup (docs/runbook.md, "Backing up and restoring the records"), with
// PostgreSQL's own pg_dump and pg_restore, as a hospital's DBA or Azure's point-in-time restore would: the
// platform keeps nothing outside the database but its keys, so a restored database opens with the keys the key
// broker still holds. The backup itself is ciphertext, and a checkpoint of the audit chain taken after the
// backup shows that the events since were lost with the restore.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import pg from "pg";
import { deriveTenantKeyring } from "./storage/record-crypto.js";
import { openPostgresStore } from "./storage/postgres-store.js";
import { openSqliteStore, backupSqliteDatabase } from "./storage/sqlite-store.js";
import { postgresSkipReason, postgresTestUrl } from "./test-support/postgres.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";
import type { RecordStore } from "./storage/record-store.js";

const execFileAsync = promisify(execFile);
const tenantId = "hospital-a";
const password = "correct horse battery staple";
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const tenantKeyring = deriveTenantKeyring(randomBytes(32), tenantId);
const sessionSecret = randomBytes(32);
const scratch = mkdtempSync(join(tmpdir(), "cloister-restore-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const postgresSkip = await postgresSkipReason();
const toolsSkip =
  existsSync("/usr/bin/pg_dump") && existsSync("/usr/bin/pg_restore")
    ? false
    : "pg_dump and pg_restore are missing (Debian's postgresql-client, which .ci/run's postgresql brings)";
if (toolsSkip !== false) {
  console.warn(`SKIPPING: ${toolsSkip}`);
}

// Sentinel PHI: none of it may be readable in a backup.
const sentinel = {
  family: `Backupfamily${randomBytes(4).toString("hex")}`,
  mrn: `MRN-BACKUP-${randomBytes(4).toString("hex")}`,
  image: Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(256)]),
};

function platformOn(store: RecordStore): Promise<TestPlatform> {
  return startTestPlatform({
    store,
    systemKeyring,
    sessionSecret,
    tenantKeyring: async () => tenantKeyring,
  });
}

/** A request as `token` to `platform`. */
function requester(platform: TestPlatform, token: string) {
  return (method: "GET" | "POST", url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    platform.app.inject({
      method,
      url,
      headers: {
        authorization: `Bearer ${token}`,
        ...(payload === undefined || Buffer.isBuffer(payload)
          ? {}
          : { "content-type": "application/fhir+json" }),
        ...headers,
      },
      ...(payload === undefined
        ? {}
        : { payload: Buffer.isBuffer(payload) ? payload : JSON.stringify(payload) }),
    });
}

async function signIn(platform: TestPlatform, email: string): Promise<string> {
  const answer = await platform.app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email, password },
  });
  assert.equal(answer.statusCode, 200, answer.body);
  return answer.json<{ accessToken: string }>().accessToken;
}

interface Written {
  readonly patient: Record<string, unknown> & { id: string };
  readonly image: string;
  readonly order: string;
}

/** On a fresh platform: its staff, a patient with an MRN, an image of theirs and an order for it. */
async function writeRecord(platform: TestPlatform): Promise<Written> {
  await platform.accounts.create({ email: "clerk@restore.test", password, tenantId, role: "clerk" });
  await platform.accounts.create({ email: "admin@restore.test", password, tenantId, role: "admin" });
  const clerk = requester(platform, await signIn(platform, "clerk@restore.test"));
  const created = await clerk("POST", "/fhir/Patient", {
    resourceType: "Patient",
    identifier: [{ system: "urn:mrn", value: sentinel.mrn }],
    name: [{ family: sentinel.family }],
  });
  assert.equal(created.statusCode, 201, created.body);
  const patient = created.json<Record<string, unknown> & { id: string }>();
  const image = await clerk("POST", "/fhir/Binary", sentinel.image, {
    "content-type": "image/png",
    "x-security-context": `Patient/${patient.id}`,
  });
  assert.equal(image.statusCode, 201, image.body);
  const order = await clerk("POST", "/fhir/ServiceRequest", {
    resourceType: "ServiceRequest",
    status: "active",
    intent: "order",
    subject: { reference: `Patient/${patient.id}` },
    code: {
      coding: [{ system: "https://cloister.dev/fhir/CodeSystem/ai-model", code: "chest-xray-pneumonia" }],
    },
    supportingInfo: [{ reference: `Binary/${image.json<{ id: string }>().id}` }],
  });
  assert.equal(order.statusCode, 201, order.body);
  return { patient, image: image.json<{ id: string }>().id, order: order.json<{ id: string }>().id };
}

interface Checkpoint {
  readonly sequence: number;
  readonly hash: string;
}

/** The admin has the chain verified (from `checkpoint`, if any): the answer. */
async function verifyAudit(
  platform: TestPlatform,
  checkpoint?: Checkpoint,
): Promise<{ ok: boolean; length?: number; headHash?: string; code?: string }> {
  const admin = requester(platform, await signIn(platform, "admin@restore.test"));
  const answer = await admin("POST", "/audit/verify", checkpoint === undefined ? {} : { checkpoint });
  return answer.json();
}

async function checkpointOf(platform: TestPlatform): Promise<Checkpoint> {
  const verified = await verifyAudit(platform);
  assert.equal(verified.ok, true);
  return { sequence: verified.length ?? 0, hash: verified.headHash ?? "" };
}

interface AfterBackup {
  readonly patient: string;
  readonly checkpoint: Checkpoint;
}

/** After the backup: one more patient and the checkpoint then; the platform is then stopped (the loss). */
async function writeAfterBackupAndStop(platform: TestPlatform): Promise<AfterBackup> {
  const clerk = requester(platform, await signIn(platform, "clerk@restore.test"));
  const later = await clerk("POST", "/fhir/Patient", {
    resourceType: "Patient",
    name: [{ family: "Later" }],
  });
  const afterBackup = { patient: later.json<{ id: string }>().id, checkpoint: await checkpointOf(platform) };
  await platform.close();
  return afterBackup;
}

/**
 * A platform started on the restored database: every record of the backup opens as it was and is found again by its MRN, the
 * image's bytes are the same, the chain verifies to the backup's checkpoint, what was written after the
 * backup is gone (and the later checkpoint says so), and the platform goes on writing.
 */
async function checkRestored(
  restoredStore: RecordStore,
  written: Written,
  atBackup: Checkpoint,
  afterBackup: AfterBackup,
): Promise<void> {
  const platform = await platformOn(restoredStore);
  try {
    await checkRestoredOn(platform, written, atBackup, afterBackup);
  } finally {
    await platform.close();
  }
}

async function checkRestoredOn(
  platform: TestPlatform,
  written: Written,
  atBackup: Checkpoint,
  afterBackup: AfterBackup,
): Promise<void> {
  const clerk = requester(platform, await signIn(platform, "clerk@restore.test"));
  const patient = await clerk("GET", `/fhir/Patient/${written.patient.id}`);
  assert.equal(patient.statusCode, 200, patient.body);
  assert.deepEqual(patient.json(), written.patient);
  const found = await clerk("GET", `/fhir/Patient?identifier=urn:mrn|${sentinel.mrn}`);
  assert.deepEqual(
    found.json<{ entry?: { resource: { id: string } }[] }>().entry?.map((entry) => entry.resource.id),
    [written.patient.id],
  );
  const image = await clerk("GET", `/fhir/Binary/${written.image}`);
  assert.deepEqual(image.rawPayload, sentinel.image);
  const order = await clerk("GET", `/fhir/ServiceRequest/${written.order}`);
  assert.equal(order.json<{ status: string }>().status, "active", "the reconciler queues it again");
  assert.equal(
    (await clerk("GET", `/fhir/Patient/${afterBackup.patient}`)).statusCode,
    404,
    "written after the backup: lost with the restore",
  );

  assert.equal((await verifyAudit(platform, atBackup)).ok, true, "the chain holds the backup's head");
  const lost = await verifyAudit(platform, afterBackup.checkpoint);
  assert.equal(lost.ok, false, "a checkpoint taken after the backup is not in the restored chain");
  assert.equal(lost.code, "ERR_AUDIT_CHAIN_BROKEN");

  const next = await clerk("POST", "/fhir/Patient", { resourceType: "Patient", name: [{ family: "After" }] });
  assert.equal(next.statusCode, 201, next.body);
  assert.equal((await verifyAudit(platform, atBackup)).ok, true, "new events extend the restored chain");
}

/** No sentinel value (name, MRN, image, nor the image in base64) can be read in the backup's bytes. */
function assertCiphertextOnly(backup: Buffer): void {
  assert.ok(backup.includes("resource_versions"), "the scan reads the backup's tables");
  for (const [what, value] of [
    ["family name", sentinel.family],
    ["MRN", sentinel.mrn],
    // As a FHIR Binary holds it (the whole image in base64), from the middle.
    ["image (base64)", sentinel.image.toString("base64").slice(40, 100)],
    ["email", "clerk@restore.test"],
  ] as const) {
    assert.equal(backup.includes(value), false, `the backup holds the ${what}`);
  }
  assert.equal(backup.includes(sentinel.image.subarray(8, 72)), false, "the backup holds the image's bytes");
}

test(
  "PostgreSQL: a pg_dump restored after the schema is lost opens every record with the same keys; the dump is ciphertext, and a later checkpoint shows what the restore lost",
  { skip: postgresSkip !== false ? postgresSkip : toolsSkip },
  async () => {
    const schema = `restore_${randomBytes(6).toString("hex")}`;
    const open = () => openPostgresStore({ connectionString: postgresTestUrl, schema });
    const dump = join(scratch, "records.dump");

    const first = await platformOn(open());
    const written = await writeRecord(first);
    const atBackup = await checkpointOf(first);
    // Uncompressed, so that the scan below reads the rows' bytes as stored.
    await execFileAsync("pg_dump", [
      `--dbname=${postgresTestUrl}`,
      `--schema=${schema}`,
      "--format=custom",
      "--compress=0",
      `--file=${dump}`,
    ]);
    const afterBackup = await writeAfterBackupAndStop(first);

    assertCiphertextOnly(readFileSync(dump));

    // The database is lost; it is restored from the backup.
    const admin = new pg.Client({ connectionString: postgresTestUrl });
    await admin.connect();
    try {
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await execFileAsync("pg_restore", [`--dbname=${postgresTestUrl}`, "--exit-on-error", dump]);
      await checkRestored(open(), written, atBackup, afterBackup);
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
    }
  },
);

test("SQLite (the embedded store): an online backup taken while the platform runs restores the same way", async () => {
  const live = join(scratch, "records.db");
  const backup = join(scratch, "records-backup.db");
  const first = await platformOn(openSqliteStore(live));
  const written = await writeRecord(first);
  const atBackup = await checkpointOf(first);
  // While the platform has the database open (WAL), as `cloister backup` does.
  await backupSqliteDatabase(live, backup);
  const afterBackup = await writeAfterBackupAndStop(first);

  assertCiphertextOnly(readFileSync(backup));

  // The disk is lost; the backup is put in its place.
  for (const suffix of ["", "-wal", "-shm"]) {
    rmSync(`${live}${suffix}`, { force: true });
  }
  await checkRestored(openSqliteStore(backup), written, atBackup, afterBackup);
});
