// Child process of attestation-service.bench.ts: the attestation service over HTTPS on loopback, in dev
// mode with a fresh simulation platform. Prints {url, body} (a simulated quote with bound runtime data).
import { createHash } from "node:crypto";
import { createSimulationPlatform } from "@cloister/attestation";
import { createDevCertificateAuthority, issueServerCertificate, simulationProvider } from "@cloister/enclave";
import { listenOnLoopback } from "@cloister/service-kit";
import { buildApp } from "../services/attestation-service/src/app.js";

const platform = createSimulationPlatform();
const tls = issueServerCertificate(createDevCertificateAuthority(), { ips: ["127.0.0.1"] });
const provider = simulationProvider(platform, {
  mrenclave: "5e".repeat(32),
  mrsigner: "51".repeat(32),
  productId: 1,
  svn: 1,
});
const { url } = await listenOnLoopback((issuer) =>
  buildApp({
    // As deployed (main.ts): shed load when the event loop is 200 ms late.
    maxEventLoopDelayMs: 200,
    issuer,
    provider,
    policyMode: "dev",
    simulationPlatform: platform,
    https: tls,
  }),
);
const runtime = Buffer.from(
  JSON.stringify({
    keys: [
      {
        kty: "EC",
        crv: "P-256",
        x: "18wHLeIgW9wVN6VD1Txgpqy2LszYkMf6J8njVAibvhM",
        y: "cV4dS4UaLMgP_4fY4j8ir7cl1TXlFdAgcx55o7TkcSA",
      },
    ],
  }),
);
const reportData = new Uint8Array(64);
reportData.set(createHash("sha256").update(runtime).digest());
const quote = platform.quote({
  mrenclave: "aa".repeat(32),
  mrsigner: "bb".repeat(32),
  productId: 1,
  svn: 1,
  reportData,
});
const body = JSON.stringify({
  quote: Buffer.from(quote).toString("base64url"),
  runtimeData: { data: runtime.toString("base64url"), dataType: "JSON" },
});
process.stdout.write(`${JSON.stringify({ url, body })}\n`);
