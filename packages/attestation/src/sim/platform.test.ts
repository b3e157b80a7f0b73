import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  createSimulationPlatform,
  evaluatePolicy,
  loadSimulationPlatform,
  parseQuote,
  simulateQuote,
  verifyQuote,
  verifyRuntimeDataBinding,
} from "../index.js";
import { toHex } from "../lib/bytes.js";
import { assertAttestationError } from "../test-support/assert-error.js";
import { createHash } from "node:crypto";

const enclave = {
  mrenclave: "1f".repeat(32),
  mrsigner: "2e".repeat(32),
  productId: 7,
  svn: 3,
  reportData: new Uint8Array(createHash("sha256").update('{"keys":[]}').digest()),
};

describe("simulation platform", () => {
  const platform = createSimulationPlatform();

  test("simulateQuote gives a byte-exact SGX ECDSA quote v3 carrying the given identity, DEBUG set", () => {
    const quote = parseQuote(simulateQuote(platform, enclave));
    assert.equal(quote.tee, "sgx");
    assert.equal(quote.header.version, 3);
    assert.equal(quote.header.attestationKeyType, 2);
    assert.equal(toHex(quote.header.qeVendorId), "939a7233f79c4ca9940a0db3957f0607");
    assert.equal(toHex(quote.body.mrEnclave), enclave.mrenclave);
    assert.equal(toHex(quote.body.mrSigner), enclave.mrsigner);
    assert.equal(quote.body.isvProdId, 7);
    assert.equal(quote.body.isvSvn, 3);
    assert.equal((quote.body.attributes[0] ?? 0) & 0x02, 0x02, "DEBUG attribute");
    assert.equal(quote.signatureData.qeAuthData.length, 32);
    assert.equal(quote.signatureData.pckCertChainPem.match(/BEGIN CERTIFICATE/g)?.length, 3);
  });

  test("round trip: quote → verify with the sim root trusted; the claims say debuggable", () => {
    const quote = simulateQuote(platform, enclave);
    const evidence = verifyQuote(quote, {
      collateral: platform.collateral(),
      trustedRoots: [platform.rootCertificatePem],
    });
    assert.equal(evidence.tcbStatus, "UpToDate");
    assert.equal(evidence.trustAnchor.commonName, "Cloister SGX Simulation Root CA");
    assert.equal(evidence.trustAnchor.spkiSha256, platform.rootSpkiSha256);
    assert.equal(evidence.claims["x-ms-sgx-is-debuggable"], true);
    assert.equal(evidence.claims["x-ms-sgx-mrenclave"], enclave.mrenclave);
    verifyRuntimeDataBinding(new TextEncoder().encode('{"keys":[]}'), evidence.reportData);
  });

  test("the same quote with the sim root untrusted fails (Intel's root is the default)", async () => {
    const quote = simulateQuote(platform, enclave);
    await assertAttestationError(
      () => verifyQuote(quote, { collateral: platform.collateral() }),
      "ERR_CERT_CHAIN",
      /not a pinned root/,
    );
    await assertAttestationError(() => verifyQuote(quote, { skipTcb: true }), "ERR_CERT_CHAIN");
    const other = createSimulationPlatform();
    await assertAttestationError(
      () => verifyQuote(quote, { collateral: platform.collateral(), trustedRoots: [other.rootSpkiSha256] }),
      "ERR_CERT_CHAIN",
    );
  });

  test("a production policy rejects simulation evidence", async () => {
    const evidence = verifyQuote(simulateQuote(platform, enclave), {
      collateral: platform.collateral(),
      trustedRoots: [platform.rootSpkiSha256],
    });
    const production = `version=1.0; authorizationrules{ [type=="x-ms-sgx-is-debuggable", value==false] => permit(); }; issuancerules{};`;
    await assertAttestationError(() => evaluatePolicy(production, evidence.claims), "ERR_POLICY_DENIED");
  });

  test("collateral expires after 30 days like Intel's", async () => {
    const issued = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    const day = 24 * 3600 * 1000;
    const quote = simulateQuote(platform, enclave);
    const collateral = platform.collateral({ now: issued });
    const trustedRoots = [platform.rootSpkiSha256];
    assert.equal(
      verifyQuote(quote, { collateral, trustedRoots, now: new Date(issued.getTime() + 20 * day) }).tcbStatus,
      "UpToDate",
    );
    await assertAttestationError(
      () =>
        verifyQuote(quote, { collateral, trustedRoots, now: new Date(issued.getTime() + 30 * day + 1000) }),
      "ERR_COLLATERAL_EXPIRED",
    );
  });

  test("save and load: a loaded platform makes quotes the original's root verifies; the file is 0600", () => {
    const directory = mkdtempSync(join(tmpdir(), "cloister-sim-"));
    try {
      const path = platform.save(directory);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const loaded = loadSimulationPlatform(directory);
      assert.equal(loaded.rootSpkiSha256, platform.rootSpkiSha256);
      const evidence = verifyQuote(simulateQuote(loaded, enclave), {
        collateral: platform.collateral(),
        trustedRoots: [platform.rootSpkiSha256],
      });
      assert.equal(evidence.claims["x-ms-sgx-svn"], 3);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  test("bad inputs are typed errors", async () => {
    await assertAttestationError(
      () => simulateQuote(platform, { ...enclave, mrenclave: "00" }),
      "ERR_SIM_PLATFORM",
    );
    await assertAttestationError(
      () => simulateQuote(platform, { ...enclave, svn: 70000 }),
      "ERR_SIM_PLATFORM",
    );
    await assertAttestationError(
      () => simulateQuote(platform, { ...enclave, reportData: new Uint8Array(65) }),
      "ERR_SIM_PLATFORM",
    );
    await assertAttestationError(
      () => loadSimulationPlatform(join(tmpdir(), "no-such-cloister-dir")),
      "ERR_SIM_PLATFORM",
    );
  });
});
