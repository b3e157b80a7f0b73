// The FHIR API through Fastify's inject: sign-in, CRUD, history, search on blind indexes, validation,
// tenant isolation and roles, Binary images, conditional create. Every error is an OperationOutcome.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import {
  AccountService,
  AuditTrail,
  buildApp,
  createLocalSessions,
  deriveTenantKeyring,
  openSqliteStore,
  type RecordStore,
  type TenantKeyring,
} from "./app.js";
import { openRecord } from "./storage/record-crypto.js";
import { encodeDicom, type DicomImageInit } from "@cloister/imaging";

const scratch = mkdtempSync(join(tmpdir(), "cloister-fhir-"));
const password = "correct horse battery staple";
let app: FastifyInstance;
let store: RecordStore;
const tokens: Record<string, string> = {};
const keyrings = new Map<string, TenantKeyring>();

before(async () => {
  store = openSqliteStore(join(scratch, "records.db"));
  await store.migrate();
  const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
  const accounts = new AccountService(store, systemKeyring, {
    maxFailures: 3,
    lockoutMs: 60_000,
    maxAttempts: 6,
    windowMs: 60_000,
  });
  for (const tenant of ["hospital-a", "hospital-b"]) {
    keyrings.set(tenant, deriveTenantKeyring(randomBytes(32), tenant));
  }
  await accounts.create({ email: "clerk@a.test", password, tenantId: "hospital-a", role: "clerk" });
  await accounts.create({ email: "clinician@a.test", password, tenantId: "hospital-a", role: "clinician" });
  await accounts.create({ email: "clerk@b.test", password, tenantId: "hospital-b", role: "clerk" });
  await accounts.create({ email: "locked@a.test", password, tenantId: "hospital-a", role: "clerk" });
  await accounts.create({ email: "admin@a.test", password, tenantId: "hospital-a", role: "admin" });
  app = await buildApp({
    baseUrl: "https://platform.test",
    store,
    accounts,
    systemKeyring,
    sessions: await createLocalSessions({ issuer: "https://platform.test" }),
    tenantKeyring: async (tenantId) => {
      const keyring = keyrings.get(tenantId);
      assert.ok(keyring);
      return keyring;
    },
    maxBinaryBytes: 64 * 1024,
    maxEverythingImageBytes: 100,
  });
  for (const [name, email] of [
    ["clerkA", "clerk@a.test"],
    ["clinicianA", "clinician@a.test"],
    ["clerkB", "clerk@b.test"],
    ["adminA", "admin@a.test"],
  ] as const) {
    const response = await app.inject({ method: "POST", url: "/auth/login", payload: { email, password } });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json<{ accessToken: string; tokenType: string; expiresIn: number }>();
    assert.equal(body.tokenType, "Bearer");
    tokens[name] = body.accessToken;
  }
});
after(async () => {
  await app.close();
  await store.close();
  rmSync(scratch, { recursive: true, force: true });
});

function fhir(
  who: string,
  method: "GET" | "POST" | "PUT",
  url: string,
  payload?: unknown,
  headers: Record<string, string> = {},
) {
  return app.inject({
    method,
    url,
    headers: {
      authorization: `Bearer ${tokens[who] ?? ""}`,
      ...(payload === undefined ? {} : { "content-type": "application/fhir+json" }),
      ...headers,
    },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  });
}

/** The account id a session token names (its `sub`), as the audit trail records the agent. */
function accountIdOf(who: string): string {
  const payload = JSON.parse(
    Buffer.from((tokens[who] ?? "").split(".")[1] ?? "", "base64url").toString(),
  ) as {
    sub: string;
  };
  return payload.sub;
}

function outcomeCode(body: string): string | undefined {
  const outcome = JSON.parse(body) as {
    resourceType: string;
    issue: { details: { coding: { code: string }[] } }[];
  };
  assert.equal(outcome.resourceType, "OperationOutcome");
  return outcome.issue[0]?.details.coding[0]?.code;
}

const patient = {
  resourceType: "Patient",
  identifier: [{ system: "urn:oid:1.2.36.146.595.217.0.1", value: "MRN-1001" }],
  name: [{ family: "Zoë-Ann", given: ["Ada", "Mary"] }],
  birthDate: "1990-04-12",
};

describe("FHIR R4 API", () => {
  let patientId = "";

  it("creates, reads, updates with If-Match, and keeps history", async () => {
    const created = await fhir("clerkA", "POST", "/fhir/Patient", patient);
    assert.equal(created.statusCode, 201, created.body);
    const body = created.json<{ id: string; meta: { versionId: string } }>();
    patientId = body.id;
    assert.equal(body.meta.versionId, "1");
    assert.equal(created.headers.etag, 'W/"1"');
    assert.equal(created.headers.location, `https://platform.test/fhir/Patient/${patientId}/_history/1`);
    assert.match(String(created.headers["content-type"]), /application\/fhir\+json/);

    const read = await fhir("clerkA", "GET", `/fhir/Patient/${patientId}`);
    assert.equal(read.json<{ birthDate: string }>().birthDate, "1990-04-12");

    const updated = await fhir(
      "clerkA",
      "PUT",
      `/fhir/Patient/${patientId}`,
      { ...patient, id: patientId, gender: "female" },
      { "if-match": 'W/"1"' },
    );
    assert.equal(updated.statusCode, 200, updated.body);
    assert.equal(updated.headers.etag, 'W/"2"');
    const stale = await fhir(
      "clerkA",
      "PUT",
      `/fhir/Patient/${patientId}`,
      { ...patient, id: patientId },
      { "if-match": 'W/"1"' },
    );
    assert.equal(stale.statusCode, 412);
    assert.equal(outcomeCode(stale.body), "ERR_PRECONDITION");

    const history = (await fhir("clerkA", "GET", `/fhir/Patient/${patientId}/_history`)).json<{
      type: string;
      entry: unknown[];
    }>();
    assert.equal(history.type, "history");
    assert.equal(history.entry.length, 2);
    const first = await fhir("clerkA", "GET", `/fhir/Patient/${patientId}/_history/1`);
    assert.equal(first.json<{ gender?: string }>().gender, undefined);
  });

  it("searches by identifier, name (any case, without accents) and birthdate; refuses unknown parameters", async () => {
    const ids = async (query: string): Promise<string[]> => {
      const response = await fhir("clerkA", "GET", `/fhir/Patient?${query}`);
      assert.equal(response.statusCode, 200, response.body);
      return response
        .json<{ entry: { resource: { id: string } }[] }>()
        .entry.map((entry) => entry.resource.id);
    };
    assert.deepEqual(await ids("identifier=urn:oid:1.2.36.146.595.217.0.1|MRN-1001"), [patientId]);
    assert.deepEqual(await ids("identifier=MRN-1001"), []);
    assert.deepEqual(await ids("identifier=|MRN-1001"), [patientId]);
    assert.deepEqual(await ids("name=zoe-ann"), [patientId]);
    assert.deepEqual(await ids("name=ADA&birthdate=1990-04-12"), [patientId]);
    assert.deepEqual(await ids("name=ada&birthdate=1990-04-13"), []);
    assert.deepEqual(await ids(`name=${encodeURIComponent("' OR 1=1 --")}`), []);
    const unknown = await fhir("clerkA", "GET", "/fhir/Patient?favourite-colour=blue");
    assert.equal(unknown.statusCode, 400);
    assert.equal(outcomeCode(unknown.body), "ERR_BAD_REQUEST");
  });

  it("sorts by last update either way, counts every match in Bundle.total, answers _summary=count, and pages with sealed cursors", async () => {
    for (const mrn of ["MRN-S1", "MRN-S2", "MRN-S3"]) {
      const created = await fhir("clerkA", "POST", "/fhir/Patient", {
        resourceType: "Patient",
        identifier: [{ system: "urn:mrn", value: mrn }],
        name: [{ family: "Sortington" }],
      });
      assert.equal(created.statusCode, 201, created.body);
    }
    const page = async (query: string) => {
      const response = await fhir("clerkA", "GET", `/fhir/Patient?name=sortington&${query}`);
      assert.equal(response.statusCode, 200, response.body);
      const bundle = response.json<{
        total: number;
        entry?: { resource: { meta: { lastUpdated: string } } }[];
      }>();
      return { total: bundle.total, updated: (bundle.entry ?? []).map((e) => e.resource.meta.lastUpdated) };
    };
    const newest = await page("");
    const oldest = await page("_sort=_lastUpdated");
    assert.deepEqual(oldest.updated, [...oldest.updated].sort(), "oldest first");
    assert.deepEqual(newest.updated, [...oldest.updated].reverse(), "newest first by default");
    assert.deepEqual((await page("_sort=-_lastUpdated")).updated, newest.updated);
    const firstPage = await page("_sort=_lastUpdated&_count=2");
    assert.deepEqual(firstPage.updated, oldest.updated.slice(0, 2));
    assert.equal(firstPage.total, 3, "Bundle.total counts every match, not the page");
    assert.deepEqual(await page("_summary=count"), { total: 3, updated: [] });

    // Paging: the next page's link carries an opaque cursor, never the search values.
    const first = (
      await fhir("clerkA", "GET", "/fhir/Patient?name=sortington&_sort=_lastUpdated&_count=2")
    ).json<{
      link?: { relation: string; url: string }[];
    }>();
    const next = first.link?.find((link) => link.relation === "next")?.url ?? "";
    assert.match(next, /^https:\/\/platform\.test\/fhir\/Patient\?_cursor=[\w-]+$/);
    assert.doesNotMatch(next.toLowerCase(), /sortington/);
    const nextPath = next.replace("https://platform.test", "");
    const second = await fhir("clerkA", "GET", nextPath);
    assert.equal(second.statusCode, 200, second.body);
    const secondBundle = second.json<{
      total: number;
      link?: unknown[];
      entry: { resource: { meta: { lastUpdated: string } } }[];
    }>();
    assert.deepEqual(
      secondBundle.entry.map((entry) => entry.resource.meta.lastUpdated),
      oldest.updated.slice(2),
      "the rest, in the same order",
    );
    assert.equal(secondBundle.total, 3);
    assert.equal(secondBundle.link, undefined, "no page after the last");
    // A cursor opens only in its tenant, unaltered, for this type, and alone.
    const cursor = nextPath.split("_cursor=")[1] ?? "";
    // One character in the middle changed (every bit of it is used, unlike the last one's).
    const middle = Math.floor(cursor.length / 2);
    const altered = `${cursor.slice(0, middle)}${cursor[middle] === "A" ? "B" : "A"}${cursor.slice(middle + 1)}`;
    for (const [who, path] of [
      ["clerkB", nextPath],
      ["clerkA", `/fhir/Patient?_cursor=${altered}`],
      ["clerkA", `/fhir/ServiceRequest?_cursor=${cursor}`],
      ["clerkA", `${nextPath}&_count=1`],
    ] as const) {
      const refused = await fhir(who, "GET", path);
      assert.equal(refused.statusCode, 400, `${who} ${path}`);
      assert.equal(outcomeCode(refused.body), "ERR_BAD_REQUEST");
    }
    for (const query of ["_sort=name", "_sort=_lastUpdated,name", "_summary=data"]) {
      const refused = await fhir("clerkA", "GET", `/fhir/Patient?name=sortington&${query}`);
      assert.equal(refused.statusCode, 400, query);
      assert.equal(outcomeCode(refused.body), "ERR_BAD_REQUEST");
    }
  });

  it("validates resources and says where they are wrong", async () => {
    const invalid = await fhir("clerkA", "POST", "/fhir/Patient", { ...patient, birthDate: "12/04/1990" });
    assert.equal(invalid.statusCode, 400);
    const outcome = invalid.json<{ issue: { expression: string[] }[] }>();
    assert.deepEqual(outcome.issue[0]?.expression, ["Patient.birthDate"]);
    assert.equal(
      (await fhir("clerkA", "POST", "/fhir/Patient", { resourceType: "Observation" })).statusCode,
      400,
    );
    const badCode = await fhir("clerkA", "POST", "/fhir/Patient", { ...patient, gender: "SENTINELCODE" });
    assert.equal(badCode.statusCode, 400);
    assert.deepEqual(badCode.json<{ issue: { expression: string[] }[] }>().issue[0]?.expression, [
      "Patient.gender",
    ]);
    assert.ok(!badCode.body.includes("SENTINELCODE"), "errors do not echo values");
    const notJson = await app.inject({
      method: "POST",
      url: "/fhir/Patient",
      headers: { authorization: `Bearer ${tokens.clerkA ?? ""}`, "content-type": "application/fhir+json" },
      payload: "{not json",
    });
    assert.equal(notJson.statusCode, 400);
    assert.equal(outcomeCode(notJson.body), "ERR_BAD_REQUEST");
  });

  it("keeps tenants apart and enforces roles", async () => {
    const fromB = await fhir("clerkB", "GET", `/fhir/Patient/${patientId}`);
    assert.equal(fromB.statusCode, 404);
    const searchB = await fhir(
      "clerkB",
      "GET",
      "/fhir/Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|MRN-1001",
    );
    assert.equal(searchB.json<{ total: number }>().total, 0);
    const overwrite = await fhir("clerkB", "PUT", `/fhir/Patient/${patientId}`, {
      ...patient,
      id: patientId,
    });
    // B's write lands in B's own space under that id; A's record is untouched.
    assert.ok([200, 201].includes(overwrite.statusCode));
    assert.equal(
      (await fhir("clerkA", "GET", `/fhir/Patient/${patientId}`)).json<{ meta: { versionId: string } }>().meta
        .versionId,
      "2",
    );

    assert.equal((await fhir("clerkA", "GET", "/fhir/DiagnosticReport?status=final")).statusCode, 403);
    assert.equal((await fhir("clinicianA", "GET", "/fhir/DiagnosticReport?status=final")).statusCode, 200);
    assert.equal(
      (await fhir("clinicianA", "POST", "/fhir/DiagnosticReport", { resourceType: "DiagnosticReport" }))
        .statusCode,
      403,
    );
    assert.equal((await app.inject({ method: "GET", url: `/fhir/Patient/${patientId}` })).statusCode, 401);
    const forged = await app.inject({
      method: "GET",
      url: `/fhir/Patient/${patientId}`,
      headers: { authorization: `Bearer ${(tokens.clerkA ?? "").slice(0, -4)}AAAA` },
    });
    assert.equal(forged.statusCode, 401);
    assert.equal(outcomeCode(forged.body), "ERR_UNAUTHENTICATED");
  });

  it("stores images as Binary, serves them back, and refuses oversized ones", async () => {
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      randomBytes(1000),
    ]);
    const created = await app.inject({
      method: "POST",
      url: "/fhir/Binary",
      headers: {
        authorization: `Bearer ${tokens.clerkA ?? ""}`,
        "content-type": "image/png",
        "x-security-context": `Patient/${patientId}`,
      },
      payload: png,
    });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json<{ id: string }>().id;
    const raw = await fhir("clerkA", "GET", `/fhir/Binary/${id}`);
    assert.equal(raw.headers["content-type"], "image/png");
    assert.deepEqual(raw.rawPayload, png);
    const tooLarge = await app.inject({
      method: "POST",
      url: "/fhir/Binary",
      headers: { authorization: `Bearer ${tokens.clerkA ?? ""}`, "content-type": "image/png" },
      payload: Buffer.alloc(70 * 1024),
    });
    assert.equal(tooLarge.statusCode, 413);
    assert.equal(outcomeCode(tooLarge.body), "ERR_PAYLOAD_TOO_LARGE");
  });

  /** A stored PNG image of the tenant of `who`, uploaded for its patient (tenant a's by default): its Binary id. */
  async function storedImage(who: string, patient?: string): Promise<string> {
    const owner =
      patient ??
      (who.endsWith("A")
        ? patientId
        : (await fhir(who, "POST", "/fhir/Patient", { resourceType: "Patient" })).json<{ id: string }>().id);
    const created = await app.inject({
      method: "POST",
      url: "/fhir/Binary",
      headers: {
        authorization: `Bearer ${tokens[who] ?? ""}`,
        "content-type": "image/png",
        "x-security-context": `Patient/${owner}`,
      },
      payload: Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        randomBytes(64),
      ]),
    });
    assert.equal(created.statusCode, 201, created.body);
    return created.json<{ id: string }>().id;
  }

  /** An active order for the patient and image. */
  function orderFor(patient: string, binary: string, identifier?: string): Record<string, unknown> {
    return {
      resourceType: "ServiceRequest",
      status: "active",
      intent: "order",
      ...(identifier === undefined
        ? {}
        : { identifier: [{ system: "https://hospital-a.test/orders", value: identifier }] }),
      subject: { reference: `Patient/${patient}` },
      code: {
        coding: [{ system: "https://cloister.dev/fhir/CodeSystem/ai-model", code: "chest-xray-pneumonia" }],
      },
      supportingInfo: [{ reference: `Binary/${binary}` }],
    };
  }

  it("makes creates idempotent with If-None-Exist, and refuses path tricks", async () => {
    const order = orderFor(patientId, await storedImage("clerkA"), "ORD-1");
    const condition = { "if-none-exist": "identifier=https://hospital-a.test/orders|ORD-1" };
    const first = await fhir("clerkA", "POST", "/fhir/ServiceRequest", order, condition);
    const second = await fhir("clerkA", "POST", "/fhir/ServiceRequest", order, condition);
    assert.equal(first.statusCode, 201);
    assert.equal(second.statusCode, 200);
    assert.equal(second.json<{ id: string }>().id, first.json<{ id: string }>().id);
    for (const url of [
      "/fhir/Patient/..%2F..%2Fetc",
      "/fhir/Patient/a%00b",
      `/fhir/Patient/${"x".repeat(65)}`,
    ]) {
      const response = await fhir("clerkA", "GET", url);
      assert.equal(response.statusCode, 400, url);
    }
    assert.equal((await fhir("clerkA", "GET", "/fhir/Account?email=x")).statusCode, 403);
    assert.equal(outcomeCode((await fhir("admin", "GET", "/fhir/Nonsense/1")).body), "ERR_UNAUTHENTICATED");
  });

  it("places an order only for a stored patient and image of the tenant, active", async () => {
    const image = await storedImage("clerkA");
    const otherTenantsImage = await storedImage("clerkB");
    const refused = async (order: Record<string, unknown>, expression: string): Promise<void> => {
      const answer = await fhir("clerkA", "POST", "/fhir/ServiceRequest", order);
      assert.equal(answer.statusCode, 400, answer.body);
      assert.equal(outcomeCode(answer.body), "ERR_INVALID_RESOURCE");
      const outcome = answer.json<{ issue: { expression?: string[] }[] }>();
      assert.deepEqual(outcome.issue[0]?.expression, [expression]);
    };
    await refused({ ...orderFor(patientId, image), status: "completed" }, "ServiceRequest.status");
    await refused({ ...orderFor(patientId, image), status: "draft" }, "ServiceRequest.status");
    await refused(orderFor("no-such-patient", image), "ServiceRequest.subject");
    await refused(
      { ...orderFor(patientId, image), subject: { reference: `Binary/${image}` } },
      "ServiceRequest.subject",
    );
    await refused(orderFor(patientId, "no-such-image"), "ServiceRequest.supportingInfo");
    await refused(orderFor(patientId, otherTenantsImage), "ServiceRequest.supportingInfo");
    await refused({ ...orderFor(patientId, image), supportingInfo: [] }, "ServiceRequest.supportingInfo");
    const placed = await fhir("clerkA", "POST", "/fhir/ServiceRequest", orderFor(patientId, image));
    assert.equal(placed.statusCode, 201, placed.body);
  });

  it("never changes a stored image, and changes an order only to cancel it", async () => {
    const image = await storedImage("clerkA");
    const replaced = await app.inject({
      method: "PUT",
      url: `/fhir/Binary/${image}`,
      headers: { authorization: `Bearer ${tokens.clerkA ?? ""}`, "content-type": "image/png" },
      payload: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]),
    });
    assert.equal(replaced.statusCode, 405, replaced.body);
    assert.equal(outcomeCode(replaced.body), "ERR_IMMUTABLE");
    const asJson = await fhir("clinicianA", "PUT", `/fhir/Binary/${image}`, {
      resourceType: "Binary",
      id: image,
      contentType: "image/png",
      data: "AAAA",
    });
    assert.equal(outcomeCode(asJson.body), "ERR_IMMUTABLE");
    const created = await fhir("clerkA", "PUT", "/fhir/Binary/brand-new", {
      resourceType: "Binary",
      id: "brand-new",
      contentType: "image/png",
      data: "AAAA",
    });
    assert.equal(outcomeCode(created.body), "ERR_IMMUTABLE", "no image is stored with PUT either");
    const stored = await fhir("clerkA", "GET", `/fhir/Binary/${image}`, undefined, {
      accept: "application/fhir+json",
    });
    assert.equal(stored.json<{ meta: { versionId: string } }>().meta.versionId, "1");

    const placed = await fhir("clerkA", "POST", "/fhir/ServiceRequest", orderFor(patientId, image));
    const order = placed.json<Record<string, unknown> & { id: string }>();
    const put = (changed: Record<string, unknown>, headers: Record<string, string> = {}) =>
      fhir("clerkA", "PUT", `/fhir/ServiceRequest/${order.id}`, changed, headers);
    const otherPatient = await fhir("clerkA", "POST", "/fhir/Patient", {
      resourceType: "Patient",
      name: [{ family: "Other" }],
    });
    for (const [changed, code] of [
      [
        { ...order, subject: { reference: `Patient/${otherPatient.json<{ id: string }>().id}` } },
        "ERR_ORDER_CHANGE",
      ],
      [
        {
          ...order,
          status: "revoked",
          subject: { reference: `Patient/${otherPatient.json<{ id: string }>().id}` },
        },
        "ERR_ORDER_CHANGE",
      ],
      [
        {
          ...order,
          status: "revoked",
          supportingInfo: [{ reference: `Binary/${await storedImage("clerkA")}` }],
        },
        "ERR_ORDER_CHANGE",
      ],
      [{ ...order, status: "completed" }, "ERR_ORDER_CHANGE"],
      [{ ...order, status: "entered-in-error" }, "ERR_ORDER_CHANGE"],
    ] as const) {
      const answer = await put(changed);
      assert.equal(answer.statusCode, 422, answer.body);
      assert.equal(outcomeCode(answer.body), code);
    }
    assert.equal(
      outcomeCode((await put({ ...order, status: "revoked" }, { "if-match": 'W/"9"' })).body),
      "ERR_PRECONDITION",
    );
    const fresh = await fhir("clerkA", "GET", `/fhir/ServiceRequest/${order.id}`);
    assert.equal(fresh.json<{ status: string; meta: { versionId: string } }>().status, "active");
    assert.equal(fresh.json<{ meta: { versionId: string } }>().meta.versionId, "1", "refusals write nothing");

    const note = { text: "Wrong image chosen", time: "2026-11-29T10:00:00Z" };
    const cancelled = await put({ ...order, status: "revoked", note: [note] }, { "if-match": 'W/"1"' });
    assert.equal(cancelled.statusCode, 200, cancelled.body);
    assert.equal(cancelled.json<{ status: string }>().status, "revoked");
    const again = await put({ ...order, status: "revoked", note: [note] });
    assert.equal(again.statusCode, 409, again.body);
    assert.equal(outcomeCode(again.body), "ERR_ORDER_STATE");

    // Notes are only added to, and an order exists before it changes.
    const second = (
      await fhir("clerkA", "POST", "/fhir/ServiceRequest", { ...orderFor(patientId, image), note: [note] })
    ).json<Record<string, unknown> & { id: string }>();
    const dropped = await fhir("clerkA", "PUT", `/fhir/ServiceRequest/${second.id}`, {
      ...second,
      status: "revoked",
      note: [],
    });
    assert.equal(outcomeCode(dropped.body), "ERR_ORDER_CHANGE");
    const unknown = await fhir("clerkA", "PUT", "/fhir/ServiceRequest/not-placed", {
      ...orderFor(patientId, image),
      id: "not-placed",
    });
    assert.equal(unknown.statusCode, 404, unknown.body);
    // Another hospital's clerk cannot cancel it.
    const foreign = await fhir("clerkB", "PUT", `/fhir/ServiceRequest/${second.id}`, {
      ...second,
      status: "revoked",
    });
    assert.equal(foreign.statusCode, 404, foreign.body);
  });

  it("keeps a patient's MRN to one patient of the hospital, when registering and when correcting", async () => {
    const mrn = (value: string) => [{ system: "urn:oid:1.2.36.146.595.217.0.1", value }];
    const again = await fhir("clerkA", "POST", "/fhir/Patient", { ...patient, name: [{ family: "Other" }] });
    assert.equal(again.statusCode, 409, again.body);
    assert.equal(outcomeCode(again.body), "ERR_DUPLICATE");
    assert.deepEqual(again.json<{ issue: { expression?: string[] }[] }>().issue[0]?.expression, [
      "Patient.identifier",
    ]);
    assert.ok(!again.body.includes("MRN-1001"), "the refusal does not echo the MRN");

    const second = await fhir("clerkA", "POST", "/fhir/Patient", {
      resourceType: "Patient",
      identifier: mrn("MRN-2002"),
      name: [{ family: "Second" }],
    });
    assert.equal(second.statusCode, 201, second.body);
    const secondId = second.json<{ id: string }>().id;
    const taken = await fhir(
      "clerkA",
      "PUT",
      `/fhir/Patient/${secondId}`,
      { resourceType: "Patient", id: secondId, identifier: mrn("MRN-1001"), name: [{ family: "Second" }] },
      { "if-match": 'W/"1"' },
    );
    assert.equal(outcomeCode(taken.body), "ERR_DUPLICATE");
    const kept = await fhir("clerkA", "GET", `/fhir/Patient/${secondId}`);
    assert.equal(kept.json<{ meta: { versionId: string } }>().meta.versionId, "1", "nothing written");
    // A patient keeps its own MRN through a correction of its name.
    const corrected = await fhir(
      "clerkA",
      "PUT",
      `/fhir/Patient/${secondId}`,
      { resourceType: "Patient", id: secondId, identifier: mrn("MRN-2002"), name: [{ family: "Secund" }] },
      { "if-match": 'W/"1"' },
    );
    assert.equal(corrected.statusCode, 200, corrected.body);
    // Identifiers without a system name no namespace, and are not checked.
    for (let i = 0; i < 2; i++) {
      const loose = await fhir("clerkA", "POST", "/fhir/Patient", {
        resourceType: "Patient",
        identifier: [{ value: "LOOSE-1" }],
      });
      assert.equal(loose.statusCode, 201, loose.body);
    }
  });

  it("refuses a DICOM image whose own header names another birth date or sex than its patient's record", async () => {
    const patientOf = async (facts: Record<string, string>) =>
      (
        await fhir("clerkA", "POST", "/fhir/Patient", {
          resourceType: "Patient",
          name: [{ family: "Dicomcheck" }],
          ...facts,
        })
      ).json<{ id: string }>().id;
    const woman = await patientOf({ birthDate: "1990-04-12", gender: "female" });
    const bornIn1990 = await patientOf({ birthDate: "1990" });
    const upload = (patient: string, header: Partial<DicomImageInit>) =>
      app.inject({
        method: "POST",
        url: "/fhir/Binary",
        headers: {
          authorization: `Bearer ${tokens.clerkA ?? ""}`,
          "content-type": "application/dicom",
          "x-security-context": `Patient/${patient}`,
        },
        payload: Buffer.from(encodeDicom({ rows: 4, columns: 4, pixels: new Uint8Array(16), ...header })),
      });
    for (const header of [
      { patientBirthDate: "19900412", patientSex: "F" as const },
      {},
      { patientSex: "O" as const },
    ]) {
      assert.equal((await upload(woman, header)).statusCode, 201, JSON.stringify(header));
    }
    assert.equal(
      (await upload(bornIn1990, { patientBirthDate: "19900412", patientSex: "M" })).statusCode,
      201,
    );
    for (const header of [{ patientBirthDate: "19610412" }, { patientSex: "M" as const }]) {
      const refused = await upload(woman, header);
      assert.equal(refused.statusCode, 422, JSON.stringify(header));
      assert.equal(outcomeCode(refused.body), "ERR_IMAGE_PATIENT_MISMATCH");
      assert.match(refused.body, /Binary\.securityContext/);
      assert.doesNotMatch(refused.body, /1961|1990/, "no value of the header or the record is echoed");
    }
  });

  it("keeps an image to the patient it was uploaded for (X-Security-Context)", async () => {
    const upload = (context?: string) =>
      app.inject({
        method: "POST",
        url: "/fhir/Binary",
        headers: {
          authorization: `Bearer ${tokens.clerkA ?? ""}`,
          "content-type": "image/png",
          ...(context === undefined ? {} : { "x-security-context": context }),
        },
        payload: Buffer.concat([
          Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
          randomBytes(32),
        ]),
      });
    const unnamed = await upload();
    assert.equal(unnamed.statusCode, 400, unnamed.body);
    assert.equal(outcomeCode(unnamed.body), "ERR_INVALID_RESOURCE");
    assert.match(unnamed.body, /X-Security-Context: Patient\/<id>/);
    const unnamedJson = await fhir("clerkA", "POST", "/fhir/Binary", {
      resourceType: "Binary",
      contentType: "image/png",
      data: "iVBORw0KGgo=",
    });
    assert.equal(outcomeCode(unnamedJson.body), "ERR_INVALID_RESOURCE");
    const namedJson = await fhir("clerkA", "POST", "/fhir/Binary", {
      resourceType: "Binary",
      contentType: "image/png",
      securityContext: { reference: `Patient/${patientId}` },
      data: "iVBORw0KGgo=",
    });
    assert.equal(namedJson.statusCode, 201, namedJson.body);
    for (const context of ["Patient/not-stored", "Observation/x", "nonsense"]) {
      const refused = await upload(context);
      assert.equal(refused.statusCode, 400, refused.body);
      assert.deepEqual(refused.json<{ issue: { expression?: string[] }[] }>().issue[0]?.expression, [
        "Binary.securityContext",
      ]);
    }
    const someoneElse = await fhir("clerkA", "POST", "/fhir/Patient", {
      resourceType: "Patient",
      name: [{ family: "Someoneelse" }],
    });
    const othersImage = await upload(`Patient/${someoneElse.json<{ id: string }>().id}`);
    assert.equal(othersImage.statusCode, 201, othersImage.body);
    const stored = othersImage.json<{ id: string; securityContext: { reference: string } }>();
    assert.equal(stored.securityContext.reference, `Patient/${someoneElse.json<{ id: string }>().id}`);
    const wrong = await fhir("clerkA", "POST", "/fhir/ServiceRequest", orderFor(patientId, stored.id));
    assert.equal(wrong.statusCode, 422, wrong.body);
    assert.equal(outcomeCode(wrong.body), "ERR_IMAGE_PATIENT");
    const own = await upload(`Patient/${patientId}`);
    const right = await fhir(
      "clerkA",
      "POST",
      "/fhir/ServiceRequest",
      orderFor(patientId, own.json<{ id: string }>().id),
    );
    assert.equal(right.statusCode, 201, right.body);
    // Another hospital's patient is not a context here.
    const fromB = await app.inject({
      method: "POST",
      url: "/fhir/Binary",
      headers: {
        authorization: `Bearer ${tokens.clerkB ?? ""}`,
        "content-type": "image/png",
        "x-security-context": `Patient/${someoneElse.json<{ id: string }>().id}`,
      },
      payload: Buffer.from([0x89, 0x50, 0x4e, 0x47]),
    });
    assert.equal(fromB.statusCode, 400, fromB.body);
  });

  it("answers an access report per patient: who read, found or changed their record, and when (admins only)", async () => {
    // A patient of their own, so the report holds only what this test did.
    const created = await fhir("clerkA", "POST", "/fhir/Patient", {
      resourceType: "Patient",
      identifier: [{ system: "urn:oid:1.2.36.146.595.217.0.1", value: "MRN-AUDITED" }],
      name: [{ family: "Audited" }],
    });
    const audited = created.json<{ id: string }>().id;
    const image = await app.inject({
      method: "POST",
      url: "/fhir/Binary",
      headers: {
        authorization: `Bearer ${tokens.clerkA ?? ""}`,
        "content-type": "image/png",
        "x-security-context": `Patient/${audited}`,
      },
      payload: Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        randomBytes(32),
      ]),
    });
    const imageId = image.json<{ id: string }>().id;
    const order = await fhir("clerkA", "POST", "/fhir/ServiceRequest", orderFor(audited, imageId));
    const orderId = order.json<{ id: string }>().id;
    await fhir("clinicianA", "GET", `/fhir/Patient/${audited}`);
    await fhir("clinicianA", "GET", `/fhir/Binary/${imageId}`);
    await fhir("clinicianA", "GET", `/fhir/ServiceRequest?subject=Patient/${audited}`);
    await fhir("clinicianA", "GET", `/fhir/Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|MRN-AUDITED`);
    // Someone else's record read meanwhile: not in this patient's report.
    await fhir("clinicianA", "GET", `/fhir/Patient/${patientId}`);

    const report = async (query: string) => {
      const answer = await fhir("adminA", "GET", `/fhir/AuditEvent?${query}`);
      assert.equal(answer.statusCode, 200, answer.body);
      return (answer.json<{ entry?: { resource: Record<string, unknown> }[] }>().entry ?? []).map(
        ({ resource }) => ({
          subtype: (resource.subtype as { code: string }[] | undefined)?.[0]?.code,
          agent: (resource.agent as { who: { identifier: { value: string } } }[])[0]?.who.identifier.value,
          entities: (
            (resource.entity ?? []) as { what: { reference: string }; role?: { code: string } }[]
          ).map((entity) => `${entity.what.reference}${entity.role?.code === "1" ? " (patient)" : ""}`),
        }),
      );
    };
    const principals = { clerkA: accountIdOf("clerkA"), clinicianA: accountIdOf("clinicianA") };
    const patientRef = `Patient/${audited} (patient)`;
    assert.deepEqual(await report(`patient=Patient/${audited}&_sort=_lastUpdated`), [
      { subtype: "create", agent: principals.clerkA, entities: [patientRef] },
      { subtype: "create", agent: principals.clerkA, entities: [`Binary/${imageId}`, patientRef] },
      { subtype: "create", agent: principals.clerkA, entities: [`ServiceRequest/${orderId}`, patientRef] },
      { subtype: "read", agent: principals.clinicianA, entities: [patientRef] },
      { subtype: "read", agent: principals.clinicianA, entities: [`Binary/${imageId}`, patientRef] },
      {
        subtype: "search-type",
        agent: principals.clinicianA,
        entities: [`ServiceRequest/${orderId}`, patientRef],
      },
      { subtype: "search-type", agent: principals.clinicianA, entities: [patientRef] },
    ]);
    // By who too, combined with the patient; other search parameters are refused, not ignored.
    assert.equal((await report(`patient=Patient/${audited}&agent=${principals.clinicianA}`)).length, 4);
    assert.equal((await report(`agent=${principals.clerkA}&patient=Patient/${audited}`)).length, 3);
    assert.equal((await fhir("adminA", "GET", `/fhir/AuditEvent?entity=Binary/${imageId}`)).statusCode, 400);
    const count = await fhir("adminA", "GET", `/fhir/AuditEvent?patient=Patient/${audited}&_summary=count`);
    assert.equal(count.json<{ total: number }>().total, 7);
    // The admin turns the agents' ids into staff emails, in their own tenant only.
    const described = await app.inject({
      method: "GET",
      url: `/admin/accounts/${principals.clinicianA}`,
      headers: { authorization: `Bearer ${tokens.adminA ?? ""}` },
    });
    assert.deepEqual(described.json(), {
      id: principals.clinicianA,
      email: "clinician@a.test",
      role: "clinician",
    });
    const clerkB = { sub: accountIdOf("clerkB") };
    for (const [who, id, status] of [
      ["adminA", clerkB.sub, 404],
      ["adminA", "not-an-id", 404],
      ["clinicianA", principals.clinicianA, 403],
    ] as const) {
      const answer = await app.inject({
        method: "GET",
        url: `/admin/accounts/${id}`,
        headers: { authorization: `Bearer ${tokens[who] ?? ""}` },
      });
      assert.equal(answer.statusCode, status, `${who} ${id}`);
    }
    // The lookups are audited too: found by the admin's id, in no patient's report.
    const admin = { sub: accountIdOf("adminA") };
    const lookups = (await report(`agent=${admin.sub}`)).filter((event) => event.subtype === "account-read");
    assert.deepEqual(
      lookups.map((event) => event.entities),
      [[`Account/not-an-id`], [`Account/${clerkB.sub}`], [`Account/${principals.clinicianA}`]],
    );
    // Staff who are not admins do not read the trail, by search either.
    assert.equal(
      (await fhir("clinicianA", "GET", `/fhir/AuditEvent?patient=Patient/${audited}`)).statusCode,
      403,
    );
  });

  it("refuses a Patient/$everything whose images exceed the limit, naming the way round", async () => {
    // This patient's orders name several images of 72 bytes; the limit here is 100 bytes.
    const everything = await fhir("clinicianA", "GET", `/fhir/Patient/${patientId}/$everything`);
    assert.equal(everything.statusCode, 413, everything.body);
    assert.equal(outcomeCode(everything.body), "ERR_PAYLOAD_TOO_LARGE");
    assert.match(everything.body, /_type leaving Binary out/);
    const withoutImages = await fhir(
      "clinicianA",
      "GET",
      `/fhir/Patient/${patientId}/$everything?_type=Patient,ServiceRequest`,
    );
    assert.equal(withoutImages.statusCode, 200, withoutImages.body);
    const types = withoutImages
      .json<{ entry: { resource: { resourceType: string } }[] }>()
      .entry.map((entry) => entry.resource.resourceType);
    assert.equal(types[0], "Patient");
    assert.ok(types.length > 2 && types.slice(1).every((type) => type === "ServiceRequest"));
    // Clerks do not read results, so not the whole record either; an admin may ask.
    assert.equal((await fhir("clerkB", "GET", `/fhir/Patient/${patientId}/$everything`)).statusCode, 403);
    assert.equal(
      (await fhir("adminA", "GET", `/fhir/Patient/${patientId}/$everything?_type=Patient`)).statusCode,
      200,
    );
  });

  it("says in its CapabilityStatement which types staff create and update", async () => {
    const statement = (await app.inject({ method: "GET", url: "/fhir/metadata" })).json<{
      rest: { resource: { type: string; interaction: { code: string }[] }[] }[];
    }>();
    const interactions = Object.fromEntries(
      (statement.rest[0]?.resource ?? []).map((resource) => [
        resource.type,
        resource.interaction
          .map((interaction) => interaction.code)
          .filter((code) => code === "create" || code === "update"),
      ]),
    );
    assert.deepEqual(interactions, {
      Patient: ["create", "update"],
      ServiceRequest: ["create", "update"],
      Binary: ["create"],
      DiagnosticReport: [],
      Observation: [],
      Provenance: [],
      AuditEvent: [],
    });
  });

  it("answers /fhir/metadata with a CapabilityStatement", async () => {
    const statement = (await app.inject({ method: "GET", url: "/fhir/metadata" })).json<{
      resourceType: string;
      fhirVersion: string;
    }>();
    assert.equal(statement.resourceType, "CapabilityStatement");
    assert.equal(statement.fhirVersion, "4.0.1");
  });

  it("never writes patient values to the database in plain text", () => {
    const files = ["records.db", "records.db-wal"].map((name) => {
      try {
        return readFileSync(join(scratch, name)).toString("latin1");
      } catch {
        return "";
      }
    });
    for (const secret of ["MRN-1001", "Zoë-Ann", "Zo", "1990-04-12"].filter((s) => s.length > 3)) {
      assert.ok(!files.some((file) => file.includes(secret)), `${secret} is in the database`);
    }
  });
});

describe("audit trail", () => {
  const tenantA = (): { tenantId: string; keyring: TenantKeyring } => {
    const keyring = keyrings.get("hospital-a");
    assert.ok(keyring);
    return { tenantId: "hospital-a", keyring };
  };

  it("records every interaction as a chained AuditEvent with ids and codes only, readable by admins only", async () => {
    const length = await app.auditTrail.verify(tenantA());
    assert.ok(length >= 10, `only ${length} events`);
    const denied = await fhir("clerkA", "GET", "/fhir/AuditEvent/audit-1");
    assert.equal(denied.statusCode, 403);
    const db = readFileSync(join(scratch, "records.db")).toString("latin1");
    assert.ok(!db.includes("110110"), "audit events are sealed like every record");
    // Read one event through the store to check its content carries no PHI from the searches above.
    const events = await Promise.all(
      Array.from({ length }, async (_, i) => {
        const stored = await store.current("hospital-a", "AuditEvent", `audit-${i + 1}`);
        assert.ok(stored);
        return stored;
      }),
    );
    const texts = events.map((stored) =>
      openRecord(
        tenantA().keyring,
        { tenantId: "hospital-a", type: "AuditEvent", id: stored.id, versionId: 1 },
        stored.body,
      ).toString(),
    );
    assert.ok(texts.some((text) => text.includes('"subtype"') && text.includes("search-type")));
    for (const phi of ["MRN-1001", "Zoë", "zoe-ann", "1990-04-12", "ORD-1", "correct horse"]) {
      assert.ok(
        !texts.some((text) => text.toLowerCase().includes(phi.toLowerCase())),
        `an AuditEvent holds ${phi}`,
      );
    }
  });

  it("detects an edited, deleted or reordered event", async () => {
    const tenant = tenantA();
    const db = (store as unknown as { dialect: string }).dialect;
    assert.equal(db, "sqlite");
    const Database = (await import("better-sqlite3")).default;
    const raw = new Database(join(scratch, "records.db"));
    const body = (
      raw
        .prepare("SELECT body FROM resource_versions WHERE tenant_id = ? AND id = ?")
        .get("hospital-a", "audit-3") as { body: Buffer }
    ).body;
    const flipped = Buffer.from(body);
    flipped[20] = (flipped[20] ?? 0) ^ 1;
    raw
      .prepare("UPDATE resource_versions SET body = ? WHERE tenant_id = ? AND id = ?")
      .run(flipped, "hospital-a", "audit-3");
    await assert.rejects(app.auditTrail.verify(tenant), /altered/);
    raw
      .prepare("UPDATE resource_versions SET body = ? WHERE tenant_id = ? AND id = ?")
      .run(body, "hospital-a", "audit-3");
    assert.ok((await app.auditTrail.verify(tenant)) > 3);

    // Swapping two events' rows: the ids are bound into the encryption, so neither opens in the other's place.
    const four = (
      raw
        .prepare("SELECT body FROM resource_versions WHERE tenant_id = ? AND id = ?")
        .get("hospital-a", "audit-4") as { body: Buffer }
    ).body;
    raw
      .prepare("UPDATE resource_versions SET body = ? WHERE tenant_id = ? AND id = ?")
      .run(four, "hospital-a", "audit-3");
    await assert.rejects(app.auditTrail.verify(tenant), /altered/);
    raw
      .prepare("UPDATE resource_versions SET body = ? WHERE tenant_id = ? AND id = ?")
      .run(body, "hospital-a", "audit-3");

    // Deleting an event in the middle breaks the chain; deleting the newest is caught against the known length.
    const length = await app.auditTrail.verify(tenant);
    raw
      .prepare("DELETE FROM resources_current WHERE tenant_id = ? AND id = ?")
      .run("hospital-a", `audit-${length}`);
    await assert.rejects(app.auditTrail.verify(tenant), /ends at/);
    // A fresh process (no head in memory) notices it too, from the sealed head record.
    await assert.rejects(new AuditTrail(store).verify(tenant), /ends at/);
    raw.close();
  });
});

describe("sign-in", () => {
  it("refuses a wrong password, locks after repeated failures, and rate-limits with Retry-After", async () => {
    const attempt = (email: string, pass: string) =>
      app.inject({
        method: "POST",
        url: "/auth/login",
        payload: { email, password: pass },
        remoteAddress: "10.0.0.9",
      });
    const wrong = await attempt("locked@a.test", "wrong password!!");
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json<{ code: string }>().code, "ERR_LOGIN_FAILED");
    assert.equal((await attempt("locked@a.test", "wrong password!!")).statusCode, 401);
    assert.equal((await attempt("locked@a.test", "wrong password!!")).statusCode, 423);
    assert.equal(
      (await attempt("locked@a.test", password)).statusCode,
      423,
      "locked even with the right password",
    );
    assert.equal(
      (await attempt("nobody@a.test", password)).json<{ code: string }>().code,
      "ERR_LOGIN_FAILED",
    );
    let limited;
    for (let i = 0; i < 4 && limited === undefined; i++) {
      const response = await attempt("locked@a.test", password);
      if (response.statusCode === 429) {
        limited = response;
      }
    }
    assert.ok(limited, "the seventh attempt within the window is rate limited");
    assert.ok(Number(limited.headers["retry-after"]) > 0);
  });
});
