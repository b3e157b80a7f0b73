// The PCCS fetch path, against a small PCCS-like server on loopback that serves the real TDX vector's
// collateral in the PCS v4 formats (signed JSON documents, issuer chains in URL-encoded headers).
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createSimulationPlatform, type CollateralBundle } from "@cloister/attestation";
import { simulationProvider } from "@cloister/enclave";
import { buildApp } from "./app.js";

const vectors = resolve(
  dirname(fileURLToPath(import.meta.url)),
  "../../../../shared/attestation-vectors/dcap-qvl",
);
const collateral = JSON.parse(
  readFileSync(join(vectors, "tdx_quote_collateral.json"), "utf8"),
) as CollateralBundle;
const quote = readFileSync(join(vectors, "tdx_quote")).toString("base64url");
const platform = createSimulationPlatform();
const provider = simulationProvider(platform, {
  mrenclave: "5e".repeat(32),
  mrsigner: "51".repeat(32),
  productId: 1,
  svn: 1,
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  after(() => server.close());
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("collateral from a PCCS", () => {
  test("a real TDX quote gets a token with collateral fetched from the PCCS, which is then cached", async () => {
    const hits: string[] = [];
    const pccs = createServer((request, response) => {
      const url = new URL(request.url ?? "/", "http://pccs");
      hits.push(url.pathname);
      switch (url.pathname) {
        case "/tdx/certification/v4/tcb":
          assert.equal(url.searchParams.get("fmspc")?.toLowerCase(), "b0c06f000000");
          response.writeHead(200, {
            "content-type": "application/json",
            "TCB-Info-Issuer-Chain": encodeURIComponent(collateral.tcb_info_issuer_chain),
          });
          response.end(`{"tcbInfo":${collateral.tcb_info},"signature":"${collateral.tcb_info_signature}"}`);
          return;
        case "/tdx/certification/v4/qe/identity":
          response.writeHead(200, {
            "content-type": "application/json",
            "SGX-Enclave-Identity-Issuer-Chain": encodeURIComponent(collateral.qe_identity_issuer_chain),
          });
          response.end(
            `{"enclaveIdentity":${collateral.qe_identity},"signature":"${collateral.qe_identity_signature}"}`,
          );
          return;
        case "/sgx/certification/v4/pckcrl":
          response.writeHead(200, {
            "content-type": "application/pkix-crl",
            "SGX-PCK-CRL-Issuer-Chain": encodeURIComponent(collateral.pck_crl_issuer_chain),
          });
          response.end(Buffer.from(collateral.pck_crl, "hex"));
          return;
        case "/sgx/certification/v4/rootcacrl":
          response.writeHead(200, { "content-type": "text/plain" });
          response.end(collateral.root_ca_crl);
          return;
        default:
          response.writeHead(404).end();
      }
    });
    const baseUrl = await listen(pccs);
    const app = await buildApp({
      issuer: "https://attest.test",
      provider,
      policyMode: "production",
      pccs: { baseUrl },
      now: () => new Date("2025-07-04T10:24:15Z"),
    });
    after(() => app.close());
    const first = await app.inject({ method: "POST", url: "/attest/TdxVm", payload: { quote } });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(hits.length, 4);
    assert.equal(
      (await app.inject({ method: "POST", url: "/attest/TdxVm", payload: { quote } })).statusCode,
      200,
    );
    assert.equal(hits.length, 4, "the collateral was cached");
  });

  test("an unreachable or silent PCCS gives ERR_COLLATERAL_UNAVAILABLE within the timeout", async () => {
    const silent = createServer(() => {
      // never answers
    });
    const baseUrl = await listen(silent);
    const app = await buildApp({
      issuer: "https://attest.test",
      provider,
      policyMode: "production",
      pccs: { baseUrl, timeoutMs: 200 },
      now: () => new Date("2025-07-04T10:24:15Z"),
    });
    after(() => app.close());
    const started = Date.now();
    const response = await app.inject({ method: "POST", url: "/attest/TdxVm", payload: { quote } });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json<{ error: { code: string } }>().error.code, "ERR_COLLATERAL_UNAVAILABLE");
    assert.ok(Date.now() - started < 3000);
    silent.closeAllConnections();
  });
});
