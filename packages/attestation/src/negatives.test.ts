// The negative cases of ../shared/attestation-vectors/README.md: each tampering is rejected with an
// error that names what failed.
import assert from "node:assert/strict";
import { generateKeyPairSync, sign } from "node:crypto";
import { describe, test } from "node:test";
import {
  createSimulationPlatform,
  parseQuote,
  verifyQuote,
  verifySnpReport,
  type CollateralBundle,
} from "./index.js";
import { assertAttestationError } from "./test-support/assert-error.js";
import {
  intelVectors,
  snpVector,
  vectorBytes,
  vectorCollateral,
  vectorText,
} from "./test-support/vectors.js";

const { quote: sgxQuotePath, collateral: sgxCollateralPath, at } = intelVectors.sgx;
const original = vectorBytes(sgxQuotePath);
const collateral = vectorCollateral(sgxCollateralPath);
const layout = parseQuote(original);
const signatureDataStart = layout.signedBytes.length + 4;
const offsets = {
  body: 48 + 64, // MRENCLAVE
  signature: signatureDataStart,
  attestationKey: signatureDataStart + 64,
  qeReport: signatureDataStart + 128 + 64, // QE MRENCLAVE
  qeReportSignature: signatureDataStart + 128 + 384,
  qeAuthData: signatureDataStart + 128 + 384 + 64 + 2,
  pckLeaf: signatureDataStart + 128 + 384 + 64 + 2 + 32 + 6 + 200,
};

function flipped(bytes: Uint8Array, offset: number, mask = 0x01): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[offset] = (copy[offset] as number) ^ mask;
  return copy;
}

function verifySgx(bytes: Uint8Array, bundle: CollateralBundle = collateral): unknown {
  return verifyQuote(bytes, { collateral: bundle, now: at });
}

describe("tampered SGX quote", () => {
  test("flipped enclave body byte → ERR_QUOTE_SIGNATURE", async () => {
    await assertAttestationError(() => verifySgx(flipped(original, offsets.body)), "ERR_QUOTE_SIGNATURE");
  });
  test("flipped header byte (QE SVN) → ERR_QUOTE_SIGNATURE", async () => {
    await assertAttestationError(() => verifySgx(flipped(original, 8)), "ERR_QUOTE_SIGNATURE");
  });
  test("flipped quote signature → ERR_QUOTE_SIGNATURE", async () => {
    await assertAttestationError(
      () => verifySgx(flipped(original, offsets.signature + 5)),
      "ERR_QUOTE_SIGNATURE",
    );
  });
  test("flipped attestation key → ERR_QE_BINDING", async () => {
    await assertAttestationError(
      () => verifySgx(flipped(original, offsets.attestationKey + 3)),
      "ERR_QE_BINDING",
    );
  });
  test("flipped QE report → ERR_QE_REPORT_SIGNATURE", async () => {
    await assertAttestationError(
      () => verifySgx(flipped(original, offsets.qeReport)),
      "ERR_QE_REPORT_SIGNATURE",
    );
  });
  test("flipped QE report signature → ERR_QE_REPORT_SIGNATURE", async () => {
    await assertAttestationError(
      () => verifySgx(flipped(original, offsets.qeReportSignature + 1)),
      "ERR_QE_REPORT_SIGNATURE",
    );
  });
  test("flipped QE authentication data → ERR_QE_BINDING", async () => {
    await assertAttestationError(() => verifySgx(flipped(original, offsets.qeAuthData)), "ERR_QE_BINDING");
  });
  test("flipped PCK certificate byte → rejected in the certificate chain", async () => {
    const error = await assertAttestationError(
      () => verifySgx(flipped(original, offsets.pckLeaf, 0x02)),
      ["ERR_CERT_FORMAT", "ERR_CERT_CHAIN"],
    );
    assert.match(error.message, /certificate/i);
  });
  test("truncated by one byte → ERR_QUOTE_FORMAT", async () => {
    await assertAttestationError(
      () => verifySgx(original.subarray(0, original.length - 1)),
      "ERR_QUOTE_FORMAT",
    );
  });
  test("cut to the header → ERR_QUOTE_FORMAT", async () => {
    await assertAttestationError(() => verifySgx(original.subarray(0, 48)), "ERR_QUOTE_FORMAT", /truncated/);
  });
  test("trailing junk beyond the declared lengths → ERR_QUOTE_FORMAT", async () => {
    const extended = new Uint8Array(original.length + 3);
    extended.set(original);
    extended.set([0xde, 0xad, 0x01], original.length);
    await assertAttestationError(() => verifySgx(extended), "ERR_QUOTE_FORMAT", /trailing/);
  });
  test("not a quote at all → ERR_QUOTE_UNSUPPORTED or ERR_QUOTE_FORMAT", async () => {
    await assertAttestationError(() => verifySgx(new TextEncoder().encode("hello")), "ERR_QUOTE_FORMAT");
    await assertAttestationError(() => verifySgx(new Uint8Array(2000)), "ERR_QUOTE_UNSUPPORTED");
  });

  test("a quote whose QE report data does not bind its attestation key → ERR_QE_BINDING", async () => {
    // Swap in our own attestation key and re-sign the quote with it: the quote signature is valid and the
    // QE report still carries Intel's PCK signature, but it vouches for the original key.
    const forged = Uint8Array.from(original);
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const jwk = publicKey.export({ format: "jwk" });
    forged.set(Buffer.from(jwk.x ?? "", "base64url"), offsets.attestationKey);
    forged.set(Buffer.from(jwk.y ?? "", "base64url"), offsets.attestationKey + 32);
    const signature = sign("sha256", forged.subarray(0, layout.signedBytes.length), {
      key: privateKey,
      dsaEncoding: "ieee-p1363",
    });
    forged.set(signature, offsets.signature);
    await assertAttestationError(() => verifySgx(forged), "ERR_QE_BINDING", /bind the attestation key/);
  });
});

describe("tampered collateral", () => {
  const variants: [string, (bundle: CollateralBundle) => CollateralBundle, string][] = [
    [
      "TCB info text",
      (b) => ({ ...b, tcb_info: b.tcb_info.replace('"OutOfDate"', '"UpToDate"') }),
      "ERR_COLLATERAL_SIGNATURE",
    ],
    [
      "TCB info signature",
      (b) => ({ ...b, tcb_info_signature: `00${b.tcb_info_signature.slice(2)}` }),
      "ERR_COLLATERAL_SIGNATURE",
    ],
    [
      "QE identity text",
      (b) => ({ ...b, qe_identity: b.qe_identity.replace('"isvprodid":1', '"isvprodid":2') }),
      "ERR_COLLATERAL_SIGNATURE",
    ],
    [
      "QE identity signature",
      (b) => ({ ...b, qe_identity_signature: `ff${b.qe_identity_signature.slice(2)}` }),
      "ERR_COLLATERAL_SIGNATURE",
    ],
    [
      "root CA CRL signature",
      (b) => ({ ...b, root_ca_crl: `${b.root_ca_crl.slice(0, -4)}0000` }),
      "ERR_COLLATERAL_SIGNATURE",
    ],
    ["PCK CRL", (b) => ({ ...b, pck_crl: `${b.pck_crl.slice(0, -2)}ff` }), "ERR_COLLATERAL_SIGNATURE"],
    [
      "TCB info not JSON-typed",
      (b) => ({ ...b, tcb_info: 42 as unknown as string }),
      "ERR_COLLATERAL_FORMAT",
    ],
  ];
  for (const [name, mutate, code] of variants) {
    test(`${name} altered → ${code}`, async () => {
      await assertAttestationError(
        () => verifySgx(original, mutate(collateral)),
        code as "ERR_COLLATERAL_SIGNATURE",
      );
    });
  }

  test("issuer chains not rooted in the pinned root → ERR_CERT_CHAIN", async () => {
    const foreign = createSimulationPlatform().collateral({ now: at });
    await assertAttestationError(
      () => verifySgx(original, { ...collateral, tcb_info_issuer_chain: foreign.tcb_info_issuer_chain }),
      "ERR_CERT_CHAIN",
      /not a pinned root/,
    );
    await assertAttestationError(
      () => verifySgx(original, { ...collateral, pck_crl_issuer_chain: foreign.pck_crl_issuer_chain }),
      "ERR_CERT_CHAIN",
    );
  });
});

describe("simulation PKI: revocation, FMSPC and TCB status", () => {
  const platform = createSimulationPlatform();
  const now = new Date();
  const quote = platform.quote({
    mrenclave: "11".repeat(32),
    mrsigner: "22".repeat(32),
    productId: 3,
    svn: 4,
    reportData: new Uint8Array(64),
  });
  const trustedRoots = [platform.rootSpkiSha256];

  test("a PCK revoked in a CRL signed by the test root → ERR_CERT_REVOKED", async () => {
    const revoked = platform.collateral({ now, revokedPckSerials: [platform.pckSerialHex] });
    await assertAttestationError(
      () => verifyQuote(quote, { collateral: revoked, now, trustedRoots }),
      "ERR_CERT_REVOKED",
      /revoked/,
    );
  });
  test("collateral for another FMSPC → ERR_COLLATERAL_MISMATCH", async () => {
    const other = platform.collateral({ now, fmspc: "00906ea10000" });
    await assertAttestationError(
      () => verifyQuote(quote, { collateral: other, now, trustedRoots }),
      "ERR_COLLATERAL_MISMATCH",
      /FMSPC/,
    );
  });
  test("a revoked TCB level → ERR_TCB_REVOKED", async () => {
    const revoked = platform.collateral({ now, tcbStatus: "Revoked" });
    await assertAttestationError(
      () => verifyQuote(quote, { collateral: revoked, now, trustedRoots }),
      "ERR_TCB_REVOKED",
    );
  });
  test("an out-of-date TCB level is reported, not rejected (acceptable statuses are policy)", () => {
    const outOfDate = platform.collateral({ now, tcbStatus: "OutOfDate" });
    assert.equal(verifyQuote(quote, { collateral: outOfDate, now, trustedRoots }).tcbStatus, "OutOfDate");
  });
});

describe("tampered SEV-SNP evidence", () => {
  const report = vectorBytes(snpVector.report);
  const options = {
    vcek: vectorBytes(snpVector.vcek),
    chain: vectorText(snpVector.milanChain),
    now: snpVector.at,
  };

  test("flipped measurement → ERR_SNP_SIGNATURE", async () => {
    await assertAttestationError(() => verifySnpReport(flipped(report, 0x90), options), "ERR_SNP_SIGNATURE");
  });
  test("flipped signature r → ERR_SNP_SIGNATURE", async () => {
    await assertAttestationError(() => verifySnpReport(flipped(report, 0x2a0), options), "ERR_SNP_SIGNATURE");
  });
  test("flipped reported_tcb → ERR_SNP_TCB_MISMATCH", async () => {
    await assertAttestationError(
      () => verifySnpReport(flipped(report, 0x186), options),
      "ERR_SNP_TCB_MISMATCH",
    );
  });
  test("flipped chip id → ERR_SNP_TCB_MISMATCH", async () => {
    await assertAttestationError(
      () => verifySnpReport(flipped(report, 0x1a0), options),
      "ERR_SNP_TCB_MISMATCH",
    );
  });
  test("flipped reserved byte after the signature → ERR_SNP_FORMAT", async () => {
    await assertAttestationError(() => verifySnpReport(flipped(report, 0x400), options), "ERR_SNP_FORMAT");
  });
  test("truncated report → ERR_SNP_FORMAT", async () => {
    await assertAttestationError(() => verifySnpReport(report.subarray(0, 1000), options), "ERR_SNP_FORMAT");
  });
  test("flipped VCEK byte → rejected", async () => {
    const vcek = flipped(options.vcek, 400);
    await assertAttestationError(
      () => verifySnpReport(report, { ...options, vcek }),
      ["ERR_CERT_FORMAT", "ERR_CERT_CHAIN"],
    );
  });
});
