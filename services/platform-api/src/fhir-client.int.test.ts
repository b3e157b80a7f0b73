// Other people's clients must work against our server: fhir-kit-client (an independent FHIR R4 client)
// discovers, creates, reads, updates, searches and reads history over real HTTP.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { Client } from "fhir-kit-client";
import {
  AccountService,
  buildApp,
  createLocalSessions,
  deriveTenantKeyring,
  openSqliteStore,
} from "./app.js";

test("fhir-kit-client works against the platform's FHIR API", async () => {
  const scratch = mkdtempSync(join(tmpdir(), "cloister-fhir-client-"));
  const store = openSqliteStore(join(scratch, "records.db"));
  const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
  const accounts = new AccountService(store, systemKeyring);
  const password = "correct horse battery staple";
  await accounts.create({ email: "clinician@demo.test", password, tenantId: "demo", role: "clinician" });
  const tenant = deriveTenantKeyring(randomBytes(32), "demo");
  // The links in Bundles (a search's next page) name the server's own base URL, so it must be the real one.
  const port = await freePort();
  const app = await buildApp({
    baseUrl: `http://127.0.0.1:${port}`,
    store,
    accounts,
    systemKeyring,
    sessions: await createLocalSessions({ issuer: "http://127.0.0.1" }),
    tenantKeyring: async () => tenant,
  });
  const url = await app.listen({ port, host: "127.0.0.1" });
  after(async () => {
    await app.close();
    await store.close();
    rmSync(scratch, { recursive: true, force: true });
  });
  const login = await app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email: "clinician@demo.test", password },
  });
  const client = new Client({
    baseUrl: `${url}/fhir`,
    bearerToken: login.json<{ accessToken: string }>().accessToken,
  });

  const capability = (await client.capabilityStatement()) as unknown as { fhirVersion: string };
  assert.equal(capability.fhirVersion, "4.0.1");
  const created = (await client.create({
    resourceType: "Patient",
    body: {
      resourceType: "Patient",
      identifier: [{ system: "urn:mrn", value: "42" }],
      name: [{ family: "Client" }],
    },
  })) as unknown as { id: string; meta: { versionId: string } };
  assert.equal(created.meta.versionId, "1");
  const read = (await client.read({ resourceType: "Patient", id: created.id })) as unknown as {
    name: { family: string }[];
  };
  assert.equal(read.name[0]?.family, "Client");
  const updated = (await client.update({
    resourceType: "Patient",
    id: created.id,
    body: {
      resourceType: "Patient",
      id: created.id,
      identifier: [{ system: "urn:mrn", value: "42" }],
      name: [{ family: "Client" }],
      gender: "other",
    },
  })) as unknown as { meta: { versionId: string } };
  assert.equal(updated.meta.versionId, "2");
  const found = (await client.search({
    resourceType: "Patient",
    searchParams: { identifier: "urn:mrn|42" },
  })) as unknown as {
    entry: { resource: { id: string } }[];
  };
  assert.deepEqual(
    found.entry.map((entry) => entry.resource.id),
    [created.id],
  );
  // Paging: the client follows the Bundle's next link (an opaque cursor) to the last page.
  for (const mrn of ["p-1", "p-2", "p-3", "p-4"]) {
    await client.create({
      resourceType: "Patient",
      body: {
        resourceType: "Patient",
        identifier: [{ system: "urn:mrn", value: mrn }],
        name: [{ family: "Pager" }],
      },
    });
  }
  type Page = { total: number; entry?: { resource: { id: string } }[]; link?: { relation: string }[] };
  let page = (await client.search({
    resourceType: "Patient",
    searchParams: { name: "pager", _count: "3" },
  })) as unknown as Page;
  assert.equal(page.total, 4);
  const paged = (page.entry ?? []).map((entry) => entry.resource.id);
  let pages = 1;
  while (page.link?.some((link) => link.relation === "next") === true) {
    page = (await client.nextPage({ bundle: page as never })) as unknown as Page;
    paged.push(...(page.entry ?? []).map((entry) => entry.resource.id));
    pages++;
  }
  assert.equal(pages, 2);
  assert.equal(new Set(paged).size, 4, "every match once");
  const history = (await client.resourceHistory({ resourceType: "Patient", id: created.id })) as unknown as {
    total: number;
  };
  assert.equal(history.total, 2);
  const version = (await client.vread({
    resourceType: "Patient",
    id: created.id,
    version: "1",
  })) as unknown as {
    gender?: string;
  };
  assert.equal(version.gender, undefined);
  // $everything, as FHIR clients invoke an operation: POST by default (Parameters), or GET.
  type Everything = { type: string; entry: { resource: { resourceType: string } }[] };
  const everything = (await client.operation({
    name: "everything",
    resourceType: "Patient",
    id: created.id,
  })) as unknown as Everything;
  assert.equal(everything.type, "searchset");
  assert.deepEqual(
    everything.entry.map((entry) => entry.resource.resourceType),
    ["Patient"],
  );
  const narrowed = (await client.operation({
    name: "everything",
    resourceType: "Patient",
    id: created.id,
    method: "GET",
    input: { _type: "ServiceRequest" },
  })) as unknown as Everything;
  assert.deepEqual(narrowed.entry, []);
  const posted = (await client.operation({
    name: "everything",
    resourceType: "Patient",
    id: created.id,
    input: { resourceType: "Parameters", parameter: [{ name: "_type", valueString: "Patient" }] },
  })) as unknown as Everything;
  assert.equal(posted.entry.length, 1);
  await assert.rejects(client.read({ resourceType: "Patient", id: "does-not-exist" }), (error: unknown) => {
    const response = (error as { response?: { status?: number; data?: { resourceType?: string } } }).response;
    assert.equal(response?.status, 404);
    assert.equal(response.data?.resourceType, "OperationOutcome");
    return true;
  });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
