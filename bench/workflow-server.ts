// Child process of load.bench.ts: the platform API over HTTPS with the diagnosis workflow (memory queue, two
// workers) against the real inference server and attestation service on loopback, one clerk and one
// clinician, one patient and one chest X-ray. Prints {url, ca, clerk, clinician, order}: the dev CA, the
// tokens and the body of a ServiceRequest to submit again and again.
import { createDevCertificateAuthority, issueServerCertificate } from "@cloister/enclave";
import { chestXrayPng, diagnosisOrder, startWorkflowPlatform } from "./workflow-platform.js";

const authority = createDevCertificateAuthority();
const { app, signIn } = await startWorkflowPlatform({
  https: issueServerCertificate(authority, { ips: ["127.0.0.1"] }),
  // As deployed (main.ts): shed load when the event loop is 200 ms late.
  maxEventLoopDelayMs: 200,
});
const clerk = await signIn("clerk");
const clinician = await signIn("clinician");
const create = async (
  url: string,
  payload: Uint8Array | string,
  contentType: string,
  headers: Record<string, string> = {},
): Promise<string> =>
  (
    await app.inject({
      method: "POST",
      url,
      headers: { authorization: `Bearer ${clerk}`, "content-type": contentType, ...headers },
      payload: typeof payload === "string" ? payload : Buffer.from(payload),
    })
  ).json<{ id: string }>().id;
const patientId = await create(
  "/fhir/Patient",
  JSON.stringify({ resourceType: "Patient", name: [{ family: "Loadtest" }] }),
  "application/fhir+json",
);
const binaryId = await create("/fhir/Binary", chestXrayPng(), "image/png", {
  "x-security-context": `Patient/${patientId}`,
});
const url = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(
  `${JSON.stringify({ url, ca: authority.certificatePem, clerk, clinician, order: diagnosisOrder(patientId, binaryId) })}\n`,
);
