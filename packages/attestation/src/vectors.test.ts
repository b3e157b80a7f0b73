// Every real vector in ../shared/attestation-vectors gives the result its README states, at the stated
// time, and fails once its collateral has expired.
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { describe, test } from "node:test";
import { exportJWK, importX509 } from "jose";
import {
  evaluatePolicy,
  parseQuote,
  parseSnpReport,
  runtimeDataClaims,
  verifyAttestationToken,
  verifyQuote,
  verifyRuntimeDataBinding,
  verifySnpReport,
} from "./index.js";
import { assertAttestationError } from "./test-support/assert-error.js";
import {
  decodeJwtPart,
  intelVectors,
  maaVector,
  snpVector,
  vectorBytes,
  vectorCollateral,
  vectorText,
} from "./test-support/vectors.js";

const oneMonthMs = 31 * 24 * 3600 * 1000;

function nextUpdateOf(collateralPath: string): Date {
  const tcbInfo = JSON.parse(vectorCollateral(collateralPath).tcb_info) as { nextUpdate: string };
  return new Date(tcbInfo.nextUpdate);
}

describe("Intel DCAP vectors (dcap-qvl)", () => {
  test("SGX quote v3: ConfigurationAndSWHardeningNeeded with INTEL-SA-00289 and INTEL-SA-00615", () => {
    const { quote, collateral, at } = intelVectors.sgx;
    const evidence = verifyQuote(vectorBytes(quote), { collateral: vectorCollateral(collateral), now: at });
    assert.equal(evidence.tee, "sgx");
    assert.equal(evidence.tcbStatus, "ConfigurationAndSWHardeningNeeded");
    assert.deepEqual([...evidence.advisoryIds].sort(), ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert.equal(evidence.trustAnchor.commonName, "Intel SGX Root CA");
    assert.equal(
      evidence.claims["x-ms-sgx-mrenclave"],
      "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
    );
    assert.equal(evidence.claims["x-ms-attestation-type"], "sgx");
  });

  test("TDX quote v4: UpToDate with no advisories", () => {
    const { quote, collateral, at } = intelVectors.tdx;
    const evidence = verifyQuote(vectorBytes(quote), { collateral: vectorCollateral(collateral), now: at });
    assert.equal(evidence.tee, "tdx");
    assert.equal(evidence.tcbStatus, "UpToDate");
    assert.deepEqual(evidence.advisoryIds, []);
    assert.equal(evidence.claims["x-ms-attestation-type"], "tdxvm");
    assert.equal(evidence.claims.attester_tcb_status, "UpToDate");
    assert.equal(typeof evidence.claims.tdx_mrtd, "string");
    assert.equal((evidence.claims.tdx_mrtd as string).length, 96);
  });

  test("TDX quote v5 (TD 1.5 body): no TCB level matches, rejected with ERR_TCB_NO_MATCH", async () => {
    const { quote, collateral, at } = intelVectors.tdxOutdated;
    const parsed = parseQuote(vectorBytes(quote));
    assert.equal(parsed.header.version, 5);
    assert.ok(parsed.tee === "tdx" && parsed.bodyType === "td15" && parsed.body.mrServiceTd?.length === 48);
    await assertAttestationError(
      () => verifyQuote(vectorBytes(quote), { collateral: vectorCollateral(collateral), now: at }),
      "ERR_TCB_NO_MATCH",
      /no TCB level/,
    );
  });

  for (const [name, vector] of Object.entries(intelVectors)) {
    test(`${name}: a month after nextUpdate the collateral has expired`, async () => {
      const now = new Date(nextUpdateOf(vector.collateral).getTime() + oneMonthMs);
      await assertAttestationError(
        () =>
          verifyQuote(vectorBytes(vector.quote), { collateral: vectorCollateral(vector.collateral), now }),
        "ERR_COLLATERAL_EXPIRED",
      );
    });

    test(`${name}: before the collateral was issued it is not valid either`, async () => {
      const now = new Date(new Date(vector.at).getTime() - 2 * oneMonthMs);
      await assertAttestationError(
        () =>
          verifyQuote(vectorBytes(vector.quote), { collateral: vectorCollateral(vector.collateral), now }),
        "ERR_COLLATERAL_EXPIRED",
      );
    });

    test(`${name}: skipTcb verifies signatures and chain and reports NotEvaluated`, () => {
      const evidence = verifyQuote(vectorBytes(vector.quote), { skipTcb: true, now: vector.at });
      assert.equal(evidence.tcbStatus, "NotEvaluated");
      assert.deepEqual(evidence.advisoryIds, []);
    });
  }

  test("verification without collateral (and without skipTcb) fails closed", async () => {
    await assertAttestationError(
      () => verifyQuote(vectorBytes(intelVectors.sgx.quote), { now: intelVectors.sgx.at }),
      "ERR_COLLATERAL_MISSING",
    );
  });

  test("collateral of a TDX platform does not verify an SGX quote", async () => {
    await assertAttestationError(
      () =>
        verifyQuote(vectorBytes(intelVectors.sgx.quote), {
          collateral: vectorCollateral(intelVectors.tdx.collateral),
          now: intelVectors.tdx.at,
        }),
      "ERR_COLLATERAL_MISMATCH",
    );
  });
});

describe("Microsoft Azure Attestation recording (maa-sgx-2022)", () => {
  const token = vectorText(maaVector.token).trim();
  const recorded = decodeJwtPart(token, 1);

  test("claims are computed exactly as MAA computed them", () => {
    const evidence = verifyQuote(vectorBytes(maaVector.quote), { skipTcb: true, now: maaVector.at });
    for (const name of [
      "x-ms-attestation-type",
      "x-ms-ver",
      "x-ms-sgx-is-debuggable",
      "x-ms-sgx-mrenclave",
      "x-ms-sgx-mrsigner",
      "x-ms-sgx-product-id",
      "x-ms-sgx-svn",
      "x-ms-sgx-report-data",
    ]) {
      assert.deepEqual(evidence.claims[name], recorded[name], name);
    }
    const collateralClaims = evidence.claims["x-ms-sgx-collateral"] as Record<string, string>;
    assert.equal(
      collateralClaims.quotehash,
      (recorded["x-ms-sgx-collateral"] as Record<string, string>).quotehash,
    );
  });

  test("the runtime data binds to the quote and yields MAA's x-ms-runtime claim", () => {
    const evidence = verifyQuote(vectorBytes(maaVector.quote), { skipTcb: true, now: maaVector.at });
    const runtimeData = vectorBytes(maaVector.runtimeData);
    verifyRuntimeDataBinding(runtimeData, evidence.reportData);
    assert.deepEqual(runtimeDataClaims(runtimeData, "JSON")["x-ms-runtime"], recorded["x-ms-runtime"]);
  });

  test("other runtime data does not bind", async () => {
    const evidence = verifyQuote(vectorBytes(maaVector.quote), { skipTcb: true, now: maaVector.at });
    await assertAttestationError(() => {
      verifyRuntimeDataBinding(new TextEncoder().encode('{"jwk":{}}'), evidence.reportData);
    }, "ERR_RUNTIME_DATA_BINDING");
  });

  test("the OpenEnclave report is the 16-byte header and the same quote", () => {
    const report = vectorBytes(maaVector.openEnclaveReport);
    const view = new DataView(report.buffer, report.byteOffset);
    assert.equal(view.getUint32(0, true), 1);
    assert.equal(view.getUint32(4, true), 2);
    assert.equal(Number(view.getBigUint64(8, true)), report.length - 16);
    assert.deepEqual(report.subarray(16), vectorBytes(maaVector.quote));
  });

  test("MAA's default SGX policy yields the recorded issued claims and x-ms-policy-hash", () => {
    const evidence = verifyQuote(vectorBytes(maaVector.quote), { skipTcb: true, now: maaVector.at });
    const result = evaluatePolicy(vectorText(maaVector.policy), evidence.claims);
    assert.deepEqual(result.issuedClaims, recorded["x-ms-policy"]);
    assert.equal(result.policyHash, recorded["x-ms-policy-hash"]);
    for (const [name, value] of Object.entries(result.issuedClaims)) {
      assert.deepEqual(recorded[name], value, `top-level ${name}`);
    }
  });

  test("the recorded MAA token verifies against MAA's x5c key with a fixed clock", async () => {
    const der = vectorBytes(maaVector.signingCertificate);
    // Wrap DER as PEM: OpenSSL would otherwise find the PEM embedded in the certificate's OE extension.
    const pem = `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64").replace(/.{64}/g, "$&\n")}\n-----END CERTIFICATE-----`;
    const kid = decodeJwtPart(token, 0).kid as string;
    const jwk = { ...(await exportJWK(await importX509(pem, "RS256"))), kid, alg: "RS256" };
    const issuer = "https://sharedwus.wus.attest.azure.net";
    const claims = await verifyAttestationToken(token, { jwks: { keys: [jwk] }, issuer, now: maaVector.at });
    assert.equal(claims["x-ms-sgx-mrenclave"], recorded["x-ms-sgx-mrenclave"]);
    // MAA's kid is base64(SHA-256(certificate public key PEM + NUL)).
    const publicKeyPem = new X509Certificate(pem).publicKey
      .export({ type: "spki", format: "pem" })
      .toString();
    assert.equal(createHash("sha256").update(`${publicKeyPem}\0`).digest("base64"), kid);
    await assertAttestationError(
      () =>
        verifyAttestationToken(token, { jwks: { keys: [jwk] }, issuer, now: new Date(1643442277 * 1000) }),
      "ERR_TOKEN_EXPIRED",
    );
    await assertAttestationError(
      () =>
        verifyAttestationToken(token, {
          jwks: { keys: [jwk] },
          issuer: "https://attacker.example",
          now: maaVector.at,
        }),
      "ERR_TOKEN_CLAIM",
    );
  });
});

describe("AMD SEV-SNP vector (go-sev-guest)", () => {
  const options = {
    vcek: vectorBytes(snpVector.vcek),
    chain: vectorText(snpVector.milanChain),
    now: snpVector.at,
  };

  test("the report parses: version 2, report data 0102030405…", () => {
    const report = parseSnpReport(vectorBytes(snpVector.report));
    assert.equal(report.version, 2);
    assert.deepEqual([...report.reportData.subarray(0, 6)], [1, 2, 3, 4, 5, 0]);
    assert.equal(report.reportedTcb.snp, 5);
    assert.equal(report.reportedTcb.microcode, 0x44);
  });

  test("verifies against its VCEK and the pinned Milan ARK", () => {
    const evidence = verifySnpReport(vectorBytes(snpVector.report), options);
    assert.equal(evidence.tee, "sevsnp");
    assert.equal(evidence.trustAnchor.commonName, "ARK-Milan");
    assert.equal(evidence.claims["x-ms-attestation-type"], "sevsnpvm");
    assert.equal(evidence.claims["x-ms-sevsnpvm-bootloader-svn"], 2);
    assert.equal(evidence.claims["x-ms-sevsnpvm-snpfw-svn"], 5);
    assert.equal(evidence.claims["x-ms-sevsnpvm-is-debuggable"], true);
    assert.equal((evidence.claims["x-ms-sevsnpvm-launchmeasurement"] as string).length, 96);
  });

  test("with another product's chain or product expectation it is rejected", async () => {
    await assertAttestationError(
      () =>
        verifySnpReport(vectorBytes(snpVector.report), {
          ...options,
          chain: vectorText(snpVector.genoaChain),
        }),
      "ERR_CERT_CHAIN",
    );
    await assertAttestationError(
      () => verifySnpReport(vectorBytes(snpVector.report), { ...options, product: "Genoa" }),
      "ERR_CERT_CHAIN",
    );
  });

  test("after the VCEK expires (2029-09-24) it is rejected", async () => {
    await assertAttestationError(
      () =>
        verifySnpReport(vectorBytes(snpVector.report), { ...options, now: new Date("2029-10-01T00:00:00Z") }),
      "ERR_CERT_EXPIRED",
    );
  });
});
