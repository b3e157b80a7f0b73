// The FHIR API on the production driver: PostgreSQL (CLOISTER_TEST_POSTGRES_URL, default the role and
// database .ci/run creates), in a fresh schema: create, update, history, search, isolation and audit.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import {
  AccountService,
  AuditTrail,
  buildApp,
  createLocalSessions,
  deriveTenantKeyring,
  openPostgresStore,
  type RecordStore,
  type TenantKeyring,
} from "./app.js";
import { postgresSkipReason, postgresTestUrl } from "./test-support/postgres.js";

const skip = await postgresSkipReason();
const password = "correct horse battery staple";
const keyrings = new Map<string, TenantKeyring>([
  ["a", deriveTenantKeyring(randomBytes(32), "a")],
  ["b", deriveTenantKeyring(randomBytes(32), "b")],
]);
let store: RecordStore;
let app: FastifyInstance;
const tokens: Record<string, string> = {};

before(async () => {
  if (skip !== false) {
    return;
  }
  store = openPostgresStore({
    connectionString: postgresTestUrl,
    schema: `fhir_${randomBytes(6).toString("hex")}`,
  });
  await store.migrate();
  const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
  const accounts = new AccountService(store, systemKeyring);
  await accounts.create({ email: "clerk@a.test", password, tenantId: "a", role: "clerk" });
  await accounts.create({ email: "clerk@b.test", password, tenantId: "b", role: "clerk" });
  app = await buildApp({
    baseUrl: "https://platform.test",
    store,
    accounts,
    systemKeyring,
    sessions: await createLocalSessions({ issuer: "https://platform.test" }),
    tenantKeyring: async (tenantId) =>
      keyrings.get(tenantId) ?? deriveTenantKeyring(randomBytes(32), tenantId),
  });
  for (const who of ["a", "b"]) {
    const response = await app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: `clerk@${who}.test`, password },
    });
    tokens[who] = response.json<{ accessToken: string }>().accessToken;
  }
});
after(async () => {
  if (skip === false) {
    await app.close();
    await store.close();
  }
});

test(
  "the FHIR API on PostgreSQL: versions, history, search, tenant isolation and a verifying audit chain",
  { skip },
  async () => {
    const request = (
      who: string,
      method: "GET" | "POST" | "PUT",
      url: string,
      payload?: unknown,
      headers: Record<string, string> = {},
    ) =>
      app.inject({
        method,
        url,
        headers: {
          authorization: `Bearer ${tokens[who] ?? ""}`,
          ...(payload === undefined ? {} : { "content-type": "application/fhir+json" }),
          ...headers,
        },
        ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
      });
    const patient = {
      resourceType: "Patient",
      identifier: [{ system: "urn:mrn", value: "PG-1" }],
      name: [{ family: "Postgres", given: ["Ada"] }],
      birthDate: "1970-01-01",
    };
    const created = await request("a", "POST", "/fhir/Patient", patient);
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json<{ id: string }>().id;
    const updated = await request(
      "a",
      "PUT",
      `/fhir/Patient/${id}`,
      { ...patient, id, gender: "female" },
      { "if-match": 'W/"1"' },
    );
    assert.equal(updated.statusCode, 200, updated.body);
    assert.equal(
      (await request("a", "GET", `/fhir/Patient/${id}/_history`)).json<{ total: number }>().total,
      2,
    );
    const found = await request(
      "a",
      "GET",
      "/fhir/Patient?identifier=urn:mrn|PG-1&name=ada&birthdate=1970-01-01",
    );
    assert.deepEqual(
      found.json<{ entry: { resource: { id: string } }[] }>().entry.map((entry) => entry.resource.id),
      [id],
    );
    assert.equal(
      (await request("a", "GET", `/fhir/Patient?name=${encodeURIComponent("x' OR '1'='1")}`)).json<{
        total: number;
      }>().total,
      0,
    );
    assert.equal((await request("b", "GET", `/fhir/Patient/${id}`)).statusCode, 404);
    assert.equal(
      (await request("b", "GET", "/fhir/Patient?identifier=urn:mrn|PG-1")).json<{ total: number }>().total,
      0,
    );
    const tenant = { tenantId: "a", keyring: keyrings.get("a") ?? deriveTenantKeyring(randomBytes(32), "a") };
    assert.ok((await new AuditTrail(store).verify(tenant)) >= 6);
  },
);
