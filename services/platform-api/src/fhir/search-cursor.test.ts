// A search's next-page cursor: sealed with the tenant's key, it expires, and it holds no search value in clear.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { deriveTenantKeyring } from "../storage/record-crypto.js";
import { openSqliteStore } from "../storage/sqlite-store.js";
import { PlatformError } from "../errors.js";
import { FhirRepository } from "./repository.js";

test("a next-page cursor expires after 15 minutes and carries no search value in clear", async () => {
  const scratch = mkdtempSync(join(tmpdir(), "cloister-cursor-"));
  const store = openSqliteStore(join(scratch, "records.db"));
  after(async () => {
    await store.close();
    rmSync(scratch, { recursive: true, force: true });
  });
  await store.migrate();
  let clock = new Date("2026-11-29T10:00:00Z");
  const repository = new FhirRepository(store, () => clock);
  const tenant = { tenantId: "demo", keyring: deriveTenantKeyring(randomBytes(32), "demo") };
  for (const mrn of ["c-1", "c-2", "c-3"]) {
    await repository.create(tenant, {
      resourceType: "Patient",
      identifier: [{ system: "urn:mrn", value: mrn }],
      name: [{ family: "Cursorwood" }],
    });
  }
  const first = await repository.searchWithTotal(tenant, "Patient", { name: "cursorwood", _count: "2" });
  const cursor = first.nextCursor ?? "";
  assert.ok(cursor.length > 0);
  assert.ok(!Buffer.from(cursor, "base64url").toString("latin1").toLowerCase().includes("cursorwood"));
  clock = new Date(clock.getTime() + 14 * 60_000);
  const second = await repository.searchWithTotal(tenant, "Patient", { _cursor: cursor });
  assert.equal(second.resources.length, 1);
  assert.equal(second.nextCursor, undefined);
  clock = new Date(clock.getTime() + 2 * 60_000);
  await assert.rejects(
    repository.searchWithTotal(tenant, "Patient", { _cursor: cursor }),
    (error: unknown) => error instanceof PlatformError && error.code === "ERR_BAD_REQUEST",
  );
});
