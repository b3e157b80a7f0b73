// An MRN names one patient across replicas: two platform replicas over one database register (or correct to)
// the same MRN at the same moment, each having checked before the other wrote. The guard record each Patient
// write moves on makes the later one check again and refuse. The database's searches are slowed so both
// checks happen before either write, on SQLite and on PostgreSQL.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { openPostgresStore } from "./storage/postgres-store.js";
import { deriveTenantKeyring } from "./storage/record-crypto.js";
import type { RecordStore } from "./storage/record-store.js";
import { openSqliteStore } from "./storage/sqlite-store.js";
import { postgresSkipReason, postgresTestUrl } from "./test-support/postgres.js";
import { slowSearches } from "./test-support/slow-store.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const scratch = mkdtempSync(join(tmpdir(), "cloister-patient-replicas-"));
const started: TestPlatform[] = [];
after(async () => {
  for (const platform of started) {
    await platform.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

async function twoReplicas(openStore: () => RecordStore) {
  const shared = {
    tenantKeyring: async () => tenantKeyring,
    systemKeyring: deriveTenantKeyring(randomBytes(32), "_system"),
    sessionSecret: randomBytes(32),
  };
  const tenantKeyring = deriveTenantKeyring(randomBytes(32), "hospital-a");
  const replicas = [];
  for (let i = 0; i < 2; i++) {
    const platform = await startTestPlatform({ ...shared, store: slowSearches(openStore()) });
    started.push(platform);
    replicas.push(platform);
  }
  const [first, second] = replicas as [TestPlatform, TestPlatform];
  await first.accounts.create({ email: "clerk@a.test", password, tenantId: "hospital-a", role: "clerk" });
  const login = await first.app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email: "clerk@a.test", password },
  });
  const token = login.json<{ accessToken: string }>().accessToken;
  const send = (replica: TestPlatform, method: "POST" | "PUT", url: string, payload: unknown) =>
    replica.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/fhir+json" },
      payload: JSON.stringify(payload),
    });
  return { first, second, send, token };
}

/** Each answer's status, with the OperationOutcome's code for a refusal; sorted. */
function outcomes(answers: readonly { statusCode: number; json: () => unknown }[]): string[] {
  return answers
    .map((answer) => {
      if (answer.statusCode < 400) {
        return String(answer.statusCode);
      }
      const outcome = answer.json() as { issue: { details: { coding: { code: string }[] } }[] };
      return `${answer.statusCode} ${outcome.issue[0]?.details.coding[0]?.code ?? ""}`;
    })
    .sort();
}

const mrn = (value: string) => [{ system: "https://hospital-a.test/mrn", value }];

for (const driver of ["sqlite", "postgres"] as const) {
  const skip = driver === "postgres" ? await postgresSkipReason() : false;
  test(
    `two replicas (${driver}) never give one MRN to two patients, registering or correcting`,
    { skip },
    async () => {
      const path = join(scratch, `records-${randomBytes(4).toString("hex")}.db`);
      const schema = `patients_${randomBytes(6).toString("hex")}`;
      const { first, second, send, token } = await twoReplicas(() =>
        driver === "sqlite"
          ? openSqliteStore(path)
          : openPostgresStore({ connectionString: postgresTestUrl, schema }),
      );
      // Both register MRN-1 at once.
      const registered = await Promise.all(
        [first, second].map((replica, i) =>
          send(replica, "POST", "/fhir/Patient", {
            resourceType: "Patient",
            identifier: mrn("MRN-1"),
            name: [{ family: `Replica${i}` }],
          }),
        ),
      );
      assert.deepEqual(outcomes(registered), ["201", "409 ERR_DUPLICATE"]);

      // Two patients corrected to MRN-2 at once, one on each replica.
      const ids: string[] = [];
      for (const value of ["MRN-3", "MRN-4"]) {
        const created = await send(first, "POST", "/fhir/Patient", {
          resourceType: "Patient",
          identifier: mrn(value),
        });
        ids.push(created.json<{ id: string }>().id);
      }
      const corrected = await Promise.all(
        [first, second].map((replica, i) =>
          send(replica, "PUT", `/fhir/Patient/${ids[i] ?? ""}`, {
            resourceType: "Patient",
            id: ids[i],
            identifier: mrn("MRN-2"),
          }),
        ),
      );
      assert.deepEqual(outcomes(corrected), ["200", "409 ERR_DUPLICATE"]);
      const holders = await first.app.inject({
        method: "POST",
        url: "/fhir/Patient/_search",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        payload: "identifier=https://hospital-a.test/mrn|MRN-2",
      });
      assert.equal(holders.json<{ total: number }>().total, 1);
    },
  );
}
