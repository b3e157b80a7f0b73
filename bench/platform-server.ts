// Child process of platform.bench.ts: the platform API over HTTPS on loopback with SQLite, one clinician
// and 200 sealed Patients. Prints {url, token, patientIds}.
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDevCertificateAuthority, issueServerCertificate } from "@cloister/enclave";
import {
  AccountService,
  buildApp,
  createLocalSessions,
  deriveTenantKeyring,
  openSqliteStore,
} from "../services/platform-api/src/app.js";

const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "cloister-bench-platform-")), "records.db"));
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const tenantKeyring = deriveTenantKeyring(randomBytes(32), "bench");
const accounts = new AccountService(store, systemKeyring);
const password = randomBytes(16).toString("hex");
await accounts.create({ email: "clinician@bench.test", password, tenantId: "bench", role: "clinician" });
const tls = issueServerCertificate(createDevCertificateAuthority(), { ips: ["127.0.0.1"] });
const app = await buildApp({
  // As deployed (main.ts): shed load when the event loop is 200 ms late.
  maxEventLoopDelayMs: 200,
  baseUrl: "https://127.0.0.1",
  store,
  accounts,
  systemKeyring,
  tenantKeyring: async () => tenantKeyring,
  sessions: await createLocalSessions({ issuer: "https://127.0.0.1", lifetimeSeconds: 3600 }),
  https: tls,
});
const login = await app.inject({
  method: "POST",
  url: "/auth/login",
  payload: { email: "clinician@bench.test", password },
});
const token = login.json<{ accessToken: string }>().accessToken;
const patientIds: string[] = [];
for (let i = 0; i < 200; i++) {
  const created = await app.inject({
    method: "POST",
    url: "/fhir/Patient",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/fhir+json" },
    payload: JSON.stringify({
      resourceType: "Patient",
      identifier: [{ system: "urn:mrn", value: `BENCH-${i}` }],
      name: [{ family: `Benchperson${i}`, given: ["Test"] }],
      birthDate: "1980-01-01",
    }),
  });
  patientIds.push(created.json<{ id: string }>().id);
}
const url = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${JSON.stringify({ url, token, patientIds })}\n`);
