// One suite, both drivers: real SQLite (a file) and real PostgreSQL (CLOISTER_TEST_POSTGRES_URL, default
// the role and database .ci/run creates). Each PostgreSQL run uses a fresh schema.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import Database from "better-sqlite3";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { PlatformError } from "../errors.js";
import { openPostgresStore } from "./postgres-store.js";
import {
  blindIndex,
  blindIndexes,
  deriveTenantKeyring,
  deriveTenantKeyringGenerations,
  openRecord,
  sealBytes,
  sealedKeyGeneration,
  sealRecord,
  type KeyGeneration,
} from "./record-crypto.js";
import { migrations, type RecordStore, type StoredVersion } from "./record-store.js";
import { openSqliteStore } from "./sqlite-store.js";
import { postgresSkipReason, postgresTestUrl } from "../test-support/postgres.js";

const scratch = mkdtempSync(join(tmpdir(), "cloister-store-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const postgresSkip = await postgresSkipReason();
const drivers: { name: string; skip: string | false; open: () => RecordStore }[] = [
  {
    name: "sqlite",
    skip: false,
    open: () => openSqliteStore(join(scratch, `records-${randomBytes(4).toString("hex")}.db`)),
  },
  {
    name: "postgres",
    skip: postgresSkip,
    open: () =>
      openPostgresStore({
        connectionString: postgresTestUrl,
        schema: `test_${randomBytes(6).toString("hex")}`,
      }),
  },
];

const tenant = "org-1";
const firstDataKey = randomBytes(32);
const keyring = deriveTenantKeyring(firstDataKey, tenant);

function sealed(type: string, id: string, versionId: number, body: object, deleted = false): StoredVersion {
  return {
    type,
    id,
    versionId,
    lastUpdated: new Date(Date.UTC(2026, 10, 29, 0, 0, versionId)).toISOString(),
    deleted,
    body: deleted
      ? new Uint8Array(0)
      : sealRecord(keyring, { tenantId: tenant, type, id, versionId }, Buffer.from(JSON.stringify(body))),
  };
}

for (const driver of drivers) {
  describe(`record store: ${driver.name}`, { skip: driver.skip }, () => {
    const stores: RecordStore[] = [];
    const open = async (): Promise<RecordStore> => {
      const store = driver.open();
      stores.push(store);
      assert.equal(await store.migrate(), 2);
      assert.equal(await store.migrate(), 2, "migrations run once");
      return store;
    };
    after(async () => {
      for (const store of stores) {
        await store.close();
      }
    });

    it("writes versions, reads current, versions and history, and refuses a stale write", async () => {
      const store = await open();
      const token = blindIndex(keyring, "Patient", "identifier", "urn:mrn|123");
      await store.write(tenant, sealed("Patient", "p1", 1, { v: 1 }), 0, [token]);
      await store.write(tenant, sealed("Patient", "p1", 2, { v: 2 }), 1, [token]);
      await assert.rejects(
        store.write(tenant, sealed("Patient", "p1", 2, { v: "lost update" }), 1, []),
        (error: unknown) => error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT",
      );
      await assert.rejects(
        store.write(tenant, sealed("Patient", "p1", 1, { v: "again" }), 0, []),
        PlatformError,
      );
      const current = await store.current(tenant, "Patient", "p1");
      assert.ok(current);
      assert.equal(current.versionId, 2);
      const opened = openRecord(
        keyring,
        { tenantId: tenant, type: "Patient", id: "p1", versionId: 2 },
        current.body,
      );
      assert.deepEqual(JSON.parse(opened.toString()), { v: 2 });
      assert.equal((await store.version(tenant, "Patient", "p1", 1))?.versionId, 1);
      assert.deepEqual(
        (await store.history(tenant, "Patient", "p1")).map((v) => v.versionId),
        [2, 1],
      );
      assert.equal(
        await store.current("org-2", "Patient", "p1"),
        undefined,
        "tenants never see each other's rows",
      );
    });

    it("searches by blind-index tokens (AND of ORs), skips deleted resources, and binds hostile input", async () => {
      const store = await open();
      const t = (value: string): Buffer => blindIndex(keyring, "Patient", "name", value);
      await store.write(tenant, sealed("Patient", "a", 1, {}), 0, [t("ada"), t("lovelace")]);
      await store.write(tenant, sealed("Patient", "b", 1, {}), 0, [t("ada"), t("byron")]);
      await store.write(tenant, sealed("Patient", "c", 1, {}), 0, [t("charles")]);
      const ids = async (groups: Buffer[][]): Promise<string[]> =>
        (await store.search(tenant, "Patient", groups, 100)).map((v) => v.id).sort();
      assert.deepEqual(await ids([[t("ada")]]), ["a", "b"]);
      assert.deepEqual(await ids([[t("ada")], [t("byron")]]), ["b"]);
      assert.deepEqual(await ids([[t("lovelace"), t("charles")]]), ["a", "c"]);
      assert.deepEqual(await ids([[t("'; DROP TABLE search_tokens; --")]]), []);
      assert.deepEqual(await ids([[]]), []);
      await store.write(tenant, sealed("Patient", "b", 2, {}, true), 1, [t("ada")]);
      assert.deepEqual(await ids([[t("ada")]]), ["a"]);
      assert.equal((await store.search("org-2", "Patient", [[t("ada")]], 100)).length, 0);
      assert.equal(
        (await store.search(tenant, "Patient", [], 2)).length,
        2,
        "no groups lists all, up to the limit",
      );
    });

    it("orders search results by last update either way, and counts every match", async () => {
      const store = await open();
      const t = blindIndex(keyring, "DiagnosticReport", "status", "preliminary");
      const at = (id: string, minute: number, versionId = 1, deleted = false): StoredVersion => ({
        ...sealed("DiagnosticReport", id, versionId, {}, deleted),
        lastUpdated: new Date(Date.UTC(2026, 10, 29, 0, minute)).toISOString(),
      });
      await store.write(tenant, at("late", 30), 0, [t]);
      await store.write(tenant, at("early", 1), 0, [t]);
      await store.write(tenant, at("middle", 15), 0, [t]);
      const ids = async (order?: "newest" | "oldest", limit = 10): Promise<string[]> =>
        (await store.search(tenant, "DiagnosticReport", [[t]], limit, order)).map((v) => v.id);
      assert.deepEqual(await ids(), ["late", "middle", "early"], "newest first by default");
      assert.deepEqual(await ids("oldest"), ["early", "middle", "late"]);
      assert.deepEqual(await ids("oldest", 1), ["early"], "the oldest, however many match");
      assert.equal(await store.count(tenant, "DiagnosticReport", [[t]]), 3);
      assert.equal(await store.count(tenant, "DiagnosticReport", [[]]), 0);
      assert.equal(await store.count("org-2", "DiagnosticReport", [[t]]), 0);
      await store.write(tenant, at("middle", 40, 2, true), 1, []);
      assert.equal(await store.count(tenant, "DiagnosticReport", [[t]]), 2, "deleted ones do not count");
    });

    it("tracks each version's key generation, lists what an older one sealed, and reseals with a compare-and-swap", async () => {
      const store = await open();
      const newer = deriveTenantKeyringGenerations(
        new Map([
          [1, firstDataKey],
          [2, randomBytes(32)],
        ]),
        tenant,
      );
      const t = (keys: KeyGeneration, value: string): Buffer => blindIndex(keys, "Patient", "name", value);
      await store.write(tenant, sealed("Patient", "a", 1, { v: 1 }), 0, [t(keyring, "ada")]);
      await store.write(tenant, sealed("Patient", "a", 2, { v: 2 }), 1, [t(keyring, "ada")]);
      await store.write(tenant, sealed("Patient", "gone", 1, {}), 0, []);
      await store.write(tenant, sealed("Patient", "gone", 2, {}, true), 1, []);
      const address = { tenantId: tenant, type: "Patient", id: "n", versionId: 1 };
      await store.write(
        tenant,
        { ...sealed("Patient", "n", 1, {}), body: sealRecord(newer, address, Buffer.from("{}")) },
        0,
        [t(newer, "nell")],
      );
      assert.equal(await store.countStaleVersions(tenant, 1), 0, "nothing is older than generation 1");
      assert.equal(await store.countStaleVersions(tenant, 2), 3, "a/1, a/2 and gone/1; not the deletion");
      assert.equal(await store.countStaleVersions("org-2", 2), 0);
      const stale = await store.staleVersions(tenant, 2, 10);
      assert.deepEqual(
        stale.map(({ version, current }) => [version.id, version.versionId, current]),
        [
          ["a", 1, false],
          ["a", 2, true],
          ["gone", 1, false],
        ],
      );
      assert.deepEqual(
        (await store.staleVersions(tenant, 2, 2)).map(({ version }) => version.versionId),
        [1, 2],
        "the limit holds",
      );
      const [, currentA] = stale;
      assert.ok(currentA !== undefined);
      const addressA = { tenantId: tenant, type: "Patient", id: "a", versionId: 2 };
      const resealed = sealRecord(newer, addressA, openRecord(newer, addressA, currentA.version.body));
      assert.equal(
        await store.reseal(tenant, { ...currentA.version, body: resealed }, Buffer.from("not the body"), []),
        false,
        "a body that changed meanwhile is left alone",
      );
      assert.equal(
        await store.reseal(tenant, { ...currentA.version, body: resealed }, currentA.version.body, [
          t(newer, "ada"),
        ]),
        true,
      );
      assert.equal(await store.countStaleVersions(tenant, 2), 2);
      const reread = await store.current(tenant, "Patient", "a");
      assert.ok(reread !== undefined);
      assert.equal(sealedKeyGeneration(reread.body), 2);
      assert.deepEqual(JSON.parse(openRecord(newer, addressA, reread.body).toString()), { v: 2 });
      assert.equal(reread.versionId, 2, "re-encryption makes no new version");
      const found = async (token: Buffer): Promise<string[]> =>
        (await store.search(tenant, "Patient", [[token]], 10)).map((version) => version.id);
      assert.deepEqual(await found(t(newer, "ada")), ["a"], "the current version's tokens moved");
      assert.deepEqual(await found(t(keyring, "ada")), [], "and the old generation's are gone");
      // Resealing an old version leaves the resource's tokens alone.
      const [oldA] = stale;
      assert.ok(oldA !== undefined);
      const addressA1 = { ...addressA, versionId: 1 };
      assert.equal(
        await store.reseal(
          tenant,
          {
            ...oldA.version,
            body: sealRecord(newer, addressA1, openRecord(newer, addressA1, oldA.version.body)),
          },
          oldA.version.body,
          [],
        ),
        true,
      );
      assert.deepEqual(await found(t(newer, "ada")), ["a"]);
    });

    it("writes several versions in one transaction: all of them, or none when any one conflicts", async () => {
      const store = await open();
      const token = blindIndex(keyring, "Patient", "identifier", "urn:mrn|atomic");
      await store.write(tenant, sealed("AuditEvent", "audit-1", 1, { taken: true }), 0, []);
      // The record is written first and the second write conflicts (audit-1 is taken): nothing is kept.
      await assert.rejects(
        store.writeAll(tenant, [
          { version: sealed("Patient", "atomic", 1, { v: 1 }), expectedVersionId: 0, tokens: [token] },
          { version: sealed("AuditEvent", "audit-1", 1, { mine: true }), expectedVersionId: 0, tokens: [] },
        ]),
        (error: unknown) => error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT",
      );
      assert.equal(await store.current(tenant, "Patient", "atomic"), undefined);
      assert.equal(await store.version(tenant, "Patient", "atomic", 1), undefined);
      assert.deepEqual(await store.search(tenant, "Patient", [[token]], 10), [], "no search token is left");
      await store.writeAll(tenant, [
        { version: sealed("Patient", "atomic", 1, { v: 1 }), expectedVersionId: 0, tokens: [token] },
        { version: sealed("AuditEvent", "audit-2", 1, { mine: true }), expectedVersionId: 0, tokens: [] },
      ]);
      assert.equal((await store.current(tenant, "Patient", "atomic"))?.versionId, 1);
      assert.equal((await store.current(tenant, "AuditEvent", "audit-2"))?.versionId, 1);
      assert.equal((await store.search(tenant, "Patient", [[token]], 10)).length, 1);
    });

    it("writes versions of two tenants in one transaction: a staff account and its tenant's AuditEvent", async () => {
      const store = await open();
      const other = "hospital-other";
      await store.write(other, sealed("AuditEvent", "audit-1", 1, { taken: true }), 0, []);
      const account = {
        version: sealed("Account", "staff-1", 1, { role: "clerk" }),
        expectedVersionId: 0,
        tokens: [],
      };
      await assert.rejects(
        store.writeAll(tenant, [
          account,
          {
            version: sealed("AuditEvent", "audit-1", 1, { mine: true }),
            expectedVersionId: 0,
            tokens: [],
            tenantId: other,
          },
        ]),
        (error: unknown) => error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT",
      );
      assert.equal(await store.current(tenant, "Account", "staff-1"), undefined, "the account is not kept");
      await store.writeAll(tenant, [
        account,
        {
          version: sealed("AuditEvent", "audit-2", 1, { mine: true }),
          expectedVersionId: 0,
          tokens: [],
          tenantId: other,
        },
      ]);
      assert.equal((await store.current(tenant, "Account", "staff-1"))?.versionId, 1);
      assert.equal((await store.current(other, "AuditEvent", "audit-2"))?.versionId, 1, "in its own tenant");
      assert.equal(
        await store.current(tenant, "AuditEvent", "audit-2"),
        undefined,
        "not in the call's tenant",
      );
    });

    it("keeps concurrent writers of one resource from both winning", async () => {
      const store = await open();
      await store.write(tenant, sealed("Patient", "race", 1, {}), 0, []);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          store.write(tenant, sealed("Patient", "race", 2, { writer: i }), 1, []),
        ),
      );
      assert.equal(outcomes.filter((outcome) => outcome.status === "fulfilled").length, 1);
      assert.deepEqual(
        (await store.history(tenant, "Patient", "race")).map((v) => v.versionId),
        [2, 1],
      );
    });
  });
}

describe("record crypto", () => {
  it("binds a sealed record to its tenant, type, id and version", () => {
    const address = { tenantId: tenant, type: "Patient", id: "p1", versionId: 1 };
    const body = sealRecord(keyring, address, Buffer.from('{"name":"SENTINEL"}'));
    assert.ok(!Buffer.from(body).toString("latin1").includes("SENTINEL"));
    for (const moved of [
      { ...address, versionId: 2 },
      { ...address, id: "p2" },
      { ...address, tenantId: "org-2" },
      { ...address, type: "Binary" },
    ]) {
      assert.throws(() => openRecord(keyring, moved, body), PlatformError);
    }
    const otherTenant = deriveTenantKeyring(randomBytes(32), tenant);
    assert.throws(() => openRecord(otherTenant, address, body), PlatformError);
    assert.notDeepEqual(
      blindIndex(keyring, "Patient", "name", "ada"),
      blindIndex(otherTenant, "Patient", "name", "ada"),
    );
  });

  it("names the key generation in each record and opens older generations while they are held", () => {
    const second = randomBytes(32);
    const both = deriveTenantKeyringGenerations(
      new Map([
        [1, firstDataKey],
        [2, second],
      ]),
      tenant,
    );
    const onlySecond = deriveTenantKeyring(second, tenant, 2);
    const address = { tenantId: tenant, type: "Patient", id: "p1", versionId: 1 };
    const old = sealRecord(keyring, address, Buffer.from("old"));
    const fresh = sealRecord(both, address, Buffer.from("new"));
    assert.equal(both.generation, 2);
    assert.deepEqual([sealedKeyGeneration(old), sealedKeyGeneration(fresh)], [1, 2]);
    assert.equal(openRecord(both, address, old).toString(), "old");
    assert.equal(openRecord(onlySecond, address, fresh).toString(), "new");
    assert.throws(
      () => openRecord(onlySecond, address, old),
      (error: unknown) => error instanceof PlatformError && error.code === "ERR_KEY_UNAVAILABLE",
    );
    // The generation is authenticated: relabelling a record fails its check instead of picking a key.
    const relabelled = Buffer.from(fresh);
    relabelled.writeUInt32BE(1, 1);
    assert.throws(
      () => openRecord(both, address, relabelled),
      (error: unknown) => error instanceof PlatformError && error.code === "ERR_STORAGE",
    );
    // Format 1 (before generations): 0x01 ‖ IV ‖ ciphertext ‖ tag, the data key's first version.
    const legacy = Buffer.concat([
      Buffer.from([1]),
      sealBytes(keyring.encryption, Buffer.from(`${tenant}/Patient/p1/_history/1`), Buffer.from("legacy")),
    ]);
    assert.equal(sealedKeyGeneration(legacy), 1);
    assert.equal(openRecord(both, address, legacy).toString(), "legacy");
    for (const unknown of [Buffer.from([3, 0, 0, 0, 1]), Buffer.from([2, 0, 0])]) {
      assert.throws(() => sealedKeyGeneration(unknown), PlatformError);
    }
    const tokens = blindIndexes(both, "Patient", "name", "ada");
    assert.deepEqual(tokens, [
      blindIndex(both, "Patient", "name", "ada"),
      blindIndex(keyring, "Patient", "name", "ada"),
    ]);
  });

  it("migrates a version 1 SQLite file: its rows are generation 1 (deletions 0) and stay readable", async () => {
    const path = join(scratch, "schema-v1.db");
    const db = new Database(path);
    const [first] = migrations;
    assert.ok(first !== undefined);
    db.exec(first.sql.sqlite);
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
    db.prepare("INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00Z')").run();
    const legacy = Buffer.concat([
      Buffer.from([1]),
      sealBytes(keyring.encryption, Buffer.from(`${tenant}/Patient/old/_history/1`), Buffer.from('{"v":1}')),
    ]);
    const insert = db.prepare(
      "INSERT INTO resource_versions VALUES (?, 'Patient', 'old', ?, '2026-01-01T00:00:00Z', ?, ?)",
    );
    insert.run(tenant, 1, 0, legacy);
    insert.run(tenant, 2, 1, Buffer.alloc(0));
    db.prepare(
      "INSERT INTO resources_current VALUES (?, 'Patient', 'old', 2, '2026-01-01T00:00:00Z', 1)",
    ).run(tenant);
    db.close();
    const store = openSqliteStore(path);
    try {
      assert.equal(await store.migrate(), 2);
      assert.equal(await store.countStaleVersions(tenant, 2), 1, "the deletion holds nothing to re-encrypt");
      const version = await store.version(tenant, "Patient", "old", 1);
      assert.ok(version !== undefined);
      assert.equal(
        openRecord(
          keyring,
          { tenantId: tenant, type: "Patient", id: "old", versionId: 1 },
          version.body,
        ).toString(),
        '{"v":1}',
      );
    } finally {
      await store.close();
    }
  });

  it("leaves no plaintext in the SQLite file", async () => {
    const path = join(scratch, "plaintext-check.db");
    const store = openSqliteStore(path);
    await store.migrate();
    const body = {
      resourceType: "Patient",
      name: [{ family: "SENTINELFAMILY" }],
      identifier: [{ value: "MRN-SENTINEL-1" }],
    };
    await store.write(tenant, sealed("Patient", "s", 1, body), 0, [
      blindIndex(keyring, "Patient", "name", "sentinelfamily"),
    ]);
    await store.close();
    const file =
      readFileSync(path).toString("latin1") +
      (() => {
        try {
          return readFileSync(`${path}-wal`).toString("latin1");
        } catch {
          return "";
        }
      })();
    assert.ok(!file.includes("SENTINELFAMILY") && !file.toLowerCase().includes("sentinelfamily"));
    assert.ok(!file.includes("MRN-SENTINEL-1"));
  });
});
