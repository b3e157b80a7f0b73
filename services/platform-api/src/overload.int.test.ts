// Load shedding: over maxInFlight the platform answers 503 ERR_OVERLOADED with Retry-After (an
// OperationOutcome at /fhir) at once, instead of queueing without bound; health checks are never shed, and
// capacity comes back when requests finish.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
let platform: TestPlatform;

before(async () => {
  platform = await startTestPlatform({ maxInFlight: 2 });
  await platform.accounts.create({ email: "clerk@a.test", password, tenantId: "hospital-a", role: "clerk" });
});
after(async () => {
  await platform.close();
});

test("over the limit: 503 ERR_OVERLOADED with Retry-After at once; health is never shed; capacity returns", async () => {
  const { app } = platform;
  const login = async () =>
    app.inject({ method: "POST", url: "/auth/login", payload: { email: "clerk@a.test", password } });
  // Sign-in hashes with scrypt, so these overlap: two are served, the rest are shed.
  const answers = await Promise.all([
    login(),
    login(),
    login(),
    login(),
    app.inject({ method: "GET", url: "/healthz" }),
  ]);
  const statuses = answers.slice(0, 4).map((answer) => answer.statusCode);
  assert.equal(statuses.filter((status) => status === 200).length, 2, String(statuses));
  const shed = answers.slice(0, 4).filter((answer) => answer.statusCode === 503);
  assert.equal(shed.length, 2);
  for (const answer of shed) {
    assert.equal(answer.headers["retry-after"], "1");
    assert.equal(answer.json<{ code: string }>().code, "ERR_OVERLOADED");
  }
  assert.equal(answers[4].statusCode, 200, "/healthz is not shed");

  // At /fhir the refusal is an OperationOutcome.
  const token = (await login()).json<{ accessToken: string }>().accessToken;
  const fhir = async () =>
    app.inject({
      method: "POST",
      url: "/fhir/Patient",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/fhir+json" },
      payload: { resourceType: "Patient", name: [{ family: "Load" }] },
    });
  const burst = await Promise.all([login(), login(), fhir()]);
  const refused = burst[2];
  assert.equal(refused.statusCode, 503);
  assert.equal(refused.json<{ resourceType: string }>().resourceType, "OperationOutcome");
  // Once the burst is over, everything is served again.
  assert.equal((await fhir()).statusCode, 201);
});
