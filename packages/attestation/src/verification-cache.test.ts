import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createSimulationPlatform, createVerificationCache, verifyQuote } from "./index.js";
import { assertAttestationError } from "./test-support/assert-error.js";
import { intelVectors, vectorBytes, vectorCollateral } from "./test-support/vectors.js";

describe("verifyQuote with a verification cache", () => {
  const { quote: quotePath, collateral: collateralPath, at } = intelVectors.sgx;
  const quote = vectorBytes(quotePath);
  const collateral = vectorCollateral(collateralPath);

  test("gives exactly the uncached result, and fills the cache", () => {
    const cache = createVerificationCache();
    const uncached = verifyQuote(quote, { collateral, now: at });
    assert.deepEqual(verifyQuote(quote, { collateral, now: at, cache }), uncached);
    assert.equal(cache.size, 3, "collateral, PCK chain, QE report");
    assert.deepEqual(verifyQuote(quote, { collateral, now: at, cache }), uncached);
  });

  test("cached collateral still expires, and tampering is still caught", async () => {
    const cache = createVerificationCache();
    verifyQuote(quote, { collateral, now: at, cache });
    await assertAttestationError(
      () => verifyQuote(quote, { collateral, now: new Date("2025-09-01T00:00:00Z"), cache }),
      "ERR_COLLATERAL_EXPIRED",
    );
    const tamperedBody = Uint8Array.from(quote);
    tamperedBody[112] = (tamperedBody[112] ?? 0) ^ 1;
    await assertAttestationError(
      () => verifyQuote(tamperedBody, { collateral, now: at, cache }),
      "ERR_QUOTE_SIGNATURE",
    );
    const tamperedQeReport = Uint8Array.from(quote);
    tamperedQeReport[436 + 128 + 64] = (tamperedQeReport[436 + 128 + 64] ?? 0) ^ 1;
    await assertAttestationError(
      () => verifyQuote(tamperedQeReport, { collateral, now: at, cache }),
      "ERR_QE_REPORT_SIGNATURE",
    );
  });

  test("a revoked PCK is caught even after the platform's collateral was cached", async () => {
    const platform = createSimulationPlatform();
    const cache = createVerificationCache();
    const simulated = platform.quote({
      mrenclave: "11".repeat(32),
      mrsigner: "22".repeat(32),
      productId: 1,
      svn: 1,
      reportData: new Uint8Array(64),
    });
    const trustedRoots = [platform.rootSpkiSha256];
    verifyQuote(simulated, { collateral: platform.collateral(), trustedRoots, cache });
    const revoked = platform.collateral({ revokedPckSerials: [platform.pckSerialHex] });
    await assertAttestationError(
      () => verifyQuote(simulated, { collateral: revoked, trustedRoots, cache }),
      "ERR_CERT_REVOKED",
    );
  });
});
