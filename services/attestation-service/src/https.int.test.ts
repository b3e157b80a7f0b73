// The running service over HTTPS on loopback, driven by other people's clients: Microsoft's
// @azure/attestation SDK (with token validation on) and jose's createRemoteJWKSet.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createSimulationPlatform, type SimulationPlatform } from "@cloister/attestation";
import {
  attestAtStart,
  createDevCertificateAuthority,
  issueServerCertificate,
  simulationProvider,
  verifyPeer,
} from "@cloister/enclave";
import type { FastifyInstance } from "fastify";
import { listenOnLoopback } from "@cloister/service-kit";
import { buildApp } from "./app.js";

const here = dirname(fileURLToPath(import.meta.url));
const execFileAsync = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), "cloister-https-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** A throwaway CA and a server certificate for 127.0.0.1. */
function testTls(): { caPem: string; cert: string; key: string } {
  const ca = createDevCertificateAuthority("Cloister Test CA");
  return {
    caPem: ca.certificatePem,
    ...issueServerCertificate(ca, { ips: ["127.0.0.1"], dnsNames: ["localhost"] }),
  };
}

/** The service in dev mode over HTTPS on loopback, trusting a fresh simulation platform. */
async function startService(options: { tokenLifetimeSeconds?: number } = {}): Promise<{
  app: FastifyInstance;
  url: string;
  tls: ReturnType<typeof testTls>;
  platform: SimulationPlatform;
}> {
  const tls = testTls();
  const platform = createSimulationPlatform();
  const provider = simulationProvider(platform, {
    mrenclave: "5e".repeat(32),
    mrsigner: "51".repeat(32),
    productId: 1,
    svn: 1,
  });
  const { app, url } = await listenOnLoopback((issuer) =>
    buildApp({ issuer, provider, policyMode: "dev", simulationPlatform: platform, https: tls, ...options }),
  );
  after(() => app.close());
  return { app, url, tls, platform };
}

test("@azure/attestation and jose work against the service over HTTPS", async () => {
  const { url: endpoint, tls, platform } = await startService();
  const caFile = join(scratch, "ca.pem");
  writeFileSync(caFile, tls.caPem);

  const runtime = Buffer.from(
    JSON.stringify({
      jwk: {
        kty: "EC",
        crv: "P-256",
        x: "18wHLeIgW9wVN6VD1Txgpqy2LszYkMf6J8njVAibvhM",
        y: "cV4dS4UaLMgP_4fY4j8ir7cl1TXlFdAgcx55o7TkcSA",
      },
    }),
  );
  const reportData = new Uint8Array(64);
  reportData.set(createHash("sha256").update(runtime).digest());
  const mrenclave = "c1".repeat(32);
  const quote = platform.quote({ mrenclave, mrsigner: "c2".repeat(32), productId: 1, svn: 1, reportData });
  // Asynchronously: the service runs in this process and must keep answering while the client works.
  const child = await execFileAsync(
    process.execPath,
    [
      join(here, "../test-fixtures/azure-sdk-client.mjs"),
      endpoint,
      Buffer.from(quote).toString("base64url"),
      runtime.toString("base64url"),
    ],
    { env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile }, encoding: "utf8", timeout: 60_000 },
  );
  const result = JSON.parse(child.stdout) as Record<string, unknown>;
  assert.equal(result.issuer, endpoint);
  assert.equal(result.jwksUri, `${endpoint}/certs`);
  assert.deepEqual(result.signers, [
    { keyId: (result.signers as { keyId: string }[])[0]?.keyId, certificates: 1 },
  ]);
  assert.equal(result.mrEnclave, mrenclave);
  assert.equal(result.isDebuggable, true);
  assert.deepEqual(result.runTimeClaims, JSON.parse(runtime.toString()));
  assert.equal(result.joseMrenclave, mrenclave);
});

test("attestAtStart gets a token over HTTPS whose runtime data binds its keys, and verifyPeer accepts it", async () => {
  const { app, url: endpoint, tls, platform } = await startService();

  const workloadMeasurement = "77".repeat(32);
  const attestation = await attestAtStart({
    provider: simulationProvider(platform, {
      mrenclave: workloadMeasurement,
      mrsigner: "88".repeat(32),
      productId: 4,
      svn: 2,
    }),
    attestationService: { url: endpoint, ca: tls.caPem },
    runtime: { service: "test-workload" },
  });
  after(() => {
    attestation.stop();
  });
  const jwks = (await app.inject({ method: "GET", url: "/certs" })).json<{ keys: never[] }>();
  const peer = await verifyPeer(attestation.token(), {
    jwks,
    issuer: endpoint,
    measurements: [workloadMeasurement],
    allowDebug: true,
    allowSimulation: true,
    boundKey: attestation.keys.release.publicJwk,
    ohttpKeyConfig: Buffer.from(attestation.keys.ohttp.keyConfig).toString("base64url"),
  });
  assert.equal(peer.simulated, true);
  assert.equal(peer.runtime.service, "test-workload");
  assert.ok(attestation.expiresAt().getTime() > Date.now());
  // Without the simulation allowance, the same token is refused: simulated evidence is never production.
  await assert.rejects(
    verifyPeer(attestation.token(), {
      jwks,
      issuer: endpoint,
      measurements: [workloadMeasurement],
      allowDebug: true,
    }),
  );
});

test("attestAtStart refreshes the token before it expires", async () => {
  const { url, tls, platform } = await startService({ tokenLifetimeSeconds: 2 });
  const refreshed = new Promise<{ ok: boolean }>((done) => {
    void attestAtStart({
      provider: simulationProvider(platform, {
        mrenclave: "78".repeat(32),
        mrsigner: "88".repeat(32),
        productId: 4,
        svn: 2,
      }),
      attestationService: { url, ca: tls.caPem },
      onRefresh: (outcome) => {
        done(outcome);
      },
    }).then((attestation) => {
      after(() => {
        attestation.stop();
      });
      firstToken = attestation.token();
      current = attestation.token;
    });
  });
  let firstToken = "";
  let current = (): string => "";
  const outcome = await refreshed;
  assert.equal(outcome.ok, true);
  assert.notEqual(current(), firstToken, "a new token after the refresh");
});
