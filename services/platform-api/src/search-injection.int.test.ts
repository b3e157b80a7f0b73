// SQL injection strings in every search parameter: search values only ever become HMAC blind-index tokens,
// so each query is answered with a (usually empty) Bundle or refused as a bad request, never a server error,
// and the records are intact afterwards.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { searchParameters } from "./fhir/search-parameters.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
let platform: TestPlatform;
let token: string;

before(async () => {
  platform = await startTestPlatform();
  await platform.accounts.create({ email: "admin@a.test", password, tenantId: "hospital-a", role: "admin" });
  token = (
    await platform.app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: "admin@a.test", password },
    })
  ).json<{ accessToken: string }>().accessToken;
});
after(async () => {
  await platform.close();
});

const injections = [
  "' OR '1'='1",
  "'; DROP TABLE resources_current; --",
  '" OR 1=1 --',
  "1); DELETE FROM resource_versions; --",
  "%' UNION SELECT body FROM resource_versions --",
  "\\x00' OR 1=1",
  "$1 OR true",
  "ServiceRequest/x' OR 'a'='a",
];

test("every search parameter of every type takes SQL injection strings without a server error or data loss", async () => {
  const { app } = platform;
  const headers = { authorization: `Bearer ${token}` };
  const created = await app.inject({
    method: "POST",
    url: "/fhir/Patient",
    headers: { ...headers, "content-type": "application/fhir+json" },
    payload: {
      resourceType: "Patient",
      identifier: [{ system: "urn:mrn", value: "INJ-1" }],
      name: [{ family: "Intact" }],
    },
  });
  assert.equal(created.statusCode, 201);
  let queries = 0;
  for (const [type, parameters] of Object.entries(searchParameters)) {
    for (const parameter of Object.keys(parameters)) {
      for (const value of injections) {
        for (const request of [
          {
            method: "GET" as const,
            url: `/fhir/${type}?${new URLSearchParams({ [parameter]: value }).toString()}`,
          },
          {
            method: "POST" as const,
            url: `/fhir/${type}/_search`,
            payload: new URLSearchParams({ [parameter]: value }).toString(),
            headers: { ...headers, "content-type": "application/x-www-form-urlencoded" },
          },
        ]) {
          const response = await app.inject({ headers, ...request });
          queries++;
          assert.ok([200, 400].includes(response.statusCode), `${type}?${parameter}: ${response.statusCode}`);
          const body = response.json<{ resourceType: string; total?: number }>();
          assert.ok(
            body.resourceType === "Bundle" || body.resourceType === "OperationOutcome",
            `${type}?${parameter}: ${body.resourceType}`,
          );
          if (body.resourceType === "Bundle") {
            assert.equal(body.total, 0, `${type}?${parameter}=${value} matched something`);
          }
        }
      }
    }
  }
  assert.ok(queries >= 100, `${queries} queries`);
  const still = await app.inject({ method: "GET", url: "/fhir/Patient?identifier=urn:mrn|INJ-1", headers });
  assert.equal(still.json<{ total: number }>().total, 1, "the patient is still there");
});
