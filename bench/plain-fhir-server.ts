// Child process of platform.bench.ts: the baseline for FHIR reads. The same Fastify service app (logging and
// metrics), the same session check (ES256 bearer token), the same Patients in SQLite and one audit row
// written per read, but plain JSON: no AES-GCM sealing, no HMAC indexes, no hash chain, no FHIR validation
// layer. It lives in bench/, never in the product, which has no unencrypted path. Prints {url, token, patientIds}.
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createDevCertificateAuthority, issueServerCertificate } from "@cloister/enclave";
import { createServiceApp } from "@cloister/service-kit";
import { createLocalSessions } from "../services/platform-api/src/app.js";

const db = new Database(join(mkdtempSync(join(tmpdir(), "cloister-bench-plain-")), "records.db"));
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.exec(`CREATE TABLE patients (id TEXT PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE audit (sequence INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);`);
const insertPatient = db.prepare("INSERT INTO patients (id, body) VALUES (?, ?)");
const selectPatient = db.prepare("SELECT body FROM patients WHERE id = ?");
const insertAudit = db.prepare("INSERT INTO audit (body) VALUES (?)");

const sessions = await createLocalSessions({ issuer: "https://127.0.0.1", lifetimeSeconds: 3600 });
const { accessToken: token } = await sessions.issue({
  subject: "clinician",
  tenantId: "bench",
  role: "clinician",
});
const patientIds: string[] = [];
for (let i = 0; i < 200; i++) {
  const id = randomUUID();
  const resource = {
    resourceType: "Patient",
    id,
    meta: { versionId: "1", lastUpdated: new Date().toISOString() },
    identifier: [{ system: "urn:mrn", value: `BENCH-${i}` }],
    name: [{ family: `Benchperson${i}`, given: ["Test"] }],
    birthDate: "1980-01-01",
  };
  insertPatient.run(id, JSON.stringify(resource));
  patientIds.push(id);
}

const tls = issueServerCertificate(createDevCertificateAuthority(), { ips: ["127.0.0.1"] });
const { app } = createServiceApp({ logger: false, bodyLimit: 1024 * 1024, https: tls });
app.get<{ Params: { id: string } }>("/fhir/Patient/:id", async (request, reply) => {
  const header = request.headers.authorization ?? "";
  const principal = await sessions.verify(header.startsWith("Bearer ") ? header.slice(7) : "");
  const row = selectPatient.get(request.params.id) as { body: string } | undefined;
  insertAudit.run(
    JSON.stringify({
      resourceType: "AuditEvent",
      id: randomBytes(8).toString("hex"),
      recorded: new Date().toISOString(),
      agent: [{ who: { identifier: { value: principal.subject } } }],
      entity: [{ what: { reference: `Patient/${request.params.id}` } }],
    }),
  );
  if (row === undefined) {
    return reply.status(404).send({ resourceType: "OperationOutcome" });
  }
  return reply.header("content-type", "application/fhir+json").send(row.body);
});
const url = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${JSON.stringify({ url, token, patientIds })}\n`);
