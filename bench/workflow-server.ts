// Child process of load.bench.ts: the platform API over HTTPS with the diagnosis workflow (memory queue, two
// workers) against the real inference server and attestation service on loopback, one clerk and one
// clinician, one patient and one chest X-ray. Prints {url, ca, clerk, clinician, order}: the dev CA, the
// tokens and the body of a ServiceRequest to submit again and again.
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { createDevCertificateAuthority, issueServerCertificate } from "@cloister/enclave";
import { readMedMnistSplit } from "@cloister/imaging";
import {
  AccountService,
  buildApp,
  createLocalSessions,
  createMemoryJobQueue,
  deriveTenantKeyring,
  modelCodeSystem,
  openSqliteStore,
} from "../services/platform-api/src/app.js";
import { startConfidentialStack } from "../services/inference-server/src/test-support/confidential-stack.js";

const stack = await startConfidentialStack();
const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "cloister-bench-orders-")), "records.db"));
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const tenantKeyring = deriveTenantKeyring(randomBytes(32), "bench");
const accounts = new AccountService(store, systemKeyring);
const password = randomBytes(16).toString("hex");
for (const role of ["clerk", "clinician"] as const) {
  await accounts.create({ email: `${role}@bench.test`, password, tenantId: "bench", role });
}
const authority = createDevCertificateAuthority();
const tls = issueServerCertificate(authority, { ips: ["127.0.0.1"] });
const app = await buildApp({
  // As deployed (main.ts): shed load when the event loop is 200 ms late.
  maxEventLoopDelayMs: 200,
  baseUrl: "https://127.0.0.1",
  store,
  accounts,
  systemKeyring,
  tenantKeyring: async () => tenantKeyring,
  sessions: await createLocalSessions({ issuer: "https://127.0.0.1", lifetimeSeconds: 3600 }),
  workflow: { queue: createMemoryJobQueue(), inference: async () => stack.client },
  https: tls,
});
const signIn = async (role: string): Promise<string> =>
  (
    await app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: `${role}@bench.test`, password },
    })
  ).json<{ accessToken: string }>().accessToken;
const clerk = await signIn("clerk");
const clinician = await signIn("clinician");
const validation = readMedMnistSplit(
  new URL("../../shared/data/medmnist/pneumoniamnist_trainval.npz", import.meta.url).pathname,
  "val",
);
const image = new PNG({ width: 28, height: 28 });
validation.images.subarray(0, 784).forEach((value, i) => {
  image.data.set([value, value, value, 255], i * 4);
});
const create = async (url: string, payload: Buffer | string, contentType: string): Promise<string> =>
  (
    await app.inject({
      method: "POST",
      url,
      headers: { authorization: `Bearer ${clerk}`, "content-type": contentType },
      payload,
    })
  ).json<{ id: string }>().id;
const patientId = await create(
  "/fhir/Patient",
  JSON.stringify({ resourceType: "Patient", name: [{ family: "Loadtest" }] }),
  "application/fhir+json",
);
const binaryId = await create("/fhir/Binary", PNG.sync.write(image), "image/png");
const order = JSON.stringify({
  resourceType: "ServiceRequest",
  status: "active",
  intent: "order",
  subject: { reference: `Patient/${patientId}` },
  code: { coding: [{ system: modelCodeSystem, code: "chest-xray-pneumonia" }] },
  supportingInfo: [{ reference: `Binary/${binaryId}` }],
});
const url = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${JSON.stringify({ url, ca: authority.certificatePem, clerk, clinician, order })}\n`);
