// One suite, both drivers: real SQLite (a file) and real PostgreSQL (CLOISTER_TEST_POSTGRES_URL, default
// the role and database .ci/run creates). Each PostgreSQL run uses a fresh schema.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { PlatformError } from "../errors.js";
import { openPostgresStore } from "./postgres-store.js";
import { blindIndex, deriveTenantKeyring, openRecord, sealRecord } from "./record-crypto.js";
import type { RecordStore, StoredVersion } from "./record-store.js";
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
const keyring = deriveTenantKeyring(randomBytes(32), tenant);

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
      assert.equal(await store.migrate(), 1);
      assert.equal(await store.migrate(), 1, "migrations run once");
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
