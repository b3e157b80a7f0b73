// Property-based tests: random byte flips, truncations and extensions of real evidence are never
// accepted, and never raise anything but an AttestationError. CLOISTER_PROPERTY_RUNS sets the total
// number of runs (default 10,000), shared across the properties below in fixed proportions.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  AttestationError,
  createSimulationPlatform,
  createVerificationCache,
  evaluatePolicy,
  parsePolicy,
  parseQuote,
  parseSnpReport,
  verifyQuote,
  verifySnpReport,
  type VerifiedEvidence,
} from "./index.js";
import {
  intelVectors,
  snpVector,
  vectorBytes,
  vectorCollateral,
  vectorText,
} from "./test-support/vectors.js";

const totalRuns = Number.parseInt(process.env.CLOISTER_PROPERTY_RUNS ?? "10000", 10);
if (!Number.isInteger(totalRuns) || totalRuns < 1) {
  throw new Error("CLOISTER_PROPERTY_RUNS must be a positive integer");
}
let runsCounted = 0;
function runs(share: number): number {
  const count = Math.max(1, Math.round(totalRuns * share));
  runsCounted += count;
  return count;
}

interface Subject {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly verify: (bytes: Uint8Array) => VerifiedEvidence;
}

const platform = createSimulationPlatform();
const simulatedQuote = platform.quote({
  mrenclave: "ab".repeat(32),
  mrsigner: "cd".repeat(32),
  productId: 1,
  svn: 1,
  reportData: new Uint8Array(64).fill(7),
});
const simulationCollateral = platform.collateral();
const verificationCache = createVerificationCache();

const subjects: Subject[] = [
  ...(["sgx", "tdx"] as const).map((name) => {
    const vector = intelVectors[name];
    const collateral = vectorCollateral(vector.collateral);
    return {
      name: `${name} quote (Intel)`,
      bytes: vectorBytes(vector.quote),
      verify: (bytes: Uint8Array) => verifyQuote(bytes, { collateral, now: vector.at }),
    };
  }),
  {
    name: "SEV-SNP report (AMD)",
    bytes: vectorBytes(snpVector.report),
    verify: (bytes: Uint8Array) =>
      verifySnpReport(bytes, {
        vcek: vectorBytes(snpVector.vcek),
        chain: vectorText(snpVector.milanChain),
        now: snpVector.at,
      }),
  },
  {
    name: "simulated SGX quote",
    bytes: simulatedQuote,
    verify: (bytes: Uint8Array) =>
      verifyQuote(bytes, { collateral: simulationCollateral, trustedRoots: [platform.rootSpkiSha256] }),
  },
  {
    // The same, with a warm verification cache: cached collateral must not let a mutation through.
    name: "simulated SGX quote (verification cache)",
    bytes: simulatedQuote,
    verify: (bytes: Uint8Array) =>
      verifyQuote(bytes, {
        collateral: simulationCollateral,
        trustedRoots: [platform.rootSpkiSha256],
        cache: verificationCache,
      }),
  },
];

/** Runs `verify` and reports whether it accepted; any non-AttestationError fails the property. */
function outcome(verify: () => VerifiedEvidence): VerifiedEvidence | AttestationError {
  try {
    return verify();
  } catch (error) {
    if (!(error instanceof AttestationError)) {
      throw new Error(`a non-AttestationError escaped: ${String(error)}`, { cause: error });
    }
    return error;
  }
}

describe("mutated evidence is never accepted", () => {
  for (const subject of subjects) {
    test(`${subject.name}: accepted as recorded`, () => {
      assert.ok(!(outcome(() => subject.verify(subject.bytes)) instanceof AttestationError));
    });

    test(`${subject.name}: random byte flips`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 0, max: subject.bytes.length - 1 }),
          fc.integer({ min: 1, max: 255 }),
          (offset, mask) => {
            const mutated = Uint8Array.from(subject.bytes);
            mutated[offset] = (mutated[offset] as number) ^ mask;
            assert.ok(
              outcome(() => subject.verify(mutated)) instanceof AttestationError,
              `flip at ${offset} accepted`,
            );
          },
        ),
        { numRuns: runs(0.15) },
      );
    });

    test(`${subject.name}: truncations`, () => {
      const accepted = outcome(() => subject.verify(subject.bytes));
      const declaredLength = subject.name.includes("quote")
        ? parseQuote(subject.bytes).raw.length
        : subject.bytes.length;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: subject.bytes.length - 1 }), (length) => {
          const result = outcome(() => subject.verify(subject.bytes.subarray(0, length)));
          if (length >= declaredLength) {
            // Only zero padding was cut (the TDX vector comes in a fixed-size buffer): same quote.
            assert.deepEqual(result, accepted);
          } else {
            assert.ok(result instanceof AttestationError, `truncation to ${length} accepted`);
          }
        }),
        { numRuns: runs(0.05) },
      );
    });

    test(`${subject.name}: extensions`, () => {
      const accepted = outcome(() => subject.verify(subject.bytes));
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 1, maxLength: 512 }), (tail) => {
          const extended = new Uint8Array(subject.bytes.length + tail.length);
          extended.set(subject.bytes);
          extended.set(tail, subject.bytes.length);
          const result = outcome(() => subject.verify(extended));
          if (tail.every((byte) => byte === 0) && subject.name.includes("quote")) {
            // Zero padding after a quote's declared end is outside every signature (quote buffers are
            // fixed-size): it is dropped, and the result is exactly the unpadded quote's.
            assert.deepEqual(result, accepted);
          } else {
            assert.ok(result instanceof AttestationError, "extension accepted");
          }
        }),
        { numRuns: runs(0.05) },
      );
    });
  }

  test("collateral text flips are never accepted", () => {
    const vector = intelVectors.sgx;
    const collateral = vectorCollateral(vector.collateral);
    const quote = vectorBytes(vector.quote);
    const fields = ["tcb_info", "qe_identity", "tcb_info_signature", "root_ca_crl", "pck_crl"] as const;
    const accepted = outcome(() => verifyQuote(quote, { collateral, now: vector.at }));
    fc.assert(
      fc.property(
        fc.constantFrom(...fields),
        fc.nat(),
        fc.integer({ min: 1, max: 127 }),
        (field, position, mask) => {
          const text = collateral[field];
          const index = position % text.length;
          const replaced = String.fromCharCode(text.charCodeAt(index) ^ mask);
          const mutatedText = text.slice(0, index) + replaced + text.slice(index + 1);
          const result = outcome(() =>
            verifyQuote(quote, { collateral: { ...collateral, [field]: mutatedText }, now: vector.at }),
          );
          const hexField = field === "tcb_info_signature" || field.endsWith("crl");
          if (hexField && mutatedText.toLowerCase() === text.toLowerCase()) {
            // Hex is case-insensitive: the same bytes, so the same result.
            assert.deepEqual(result, accepted);
          } else {
            assert.ok(result instanceof AttestationError, `${field} flip at ${index} accepted`);
          }
        },
      ),
      { numRuns: runs(0.05) },
    );
  });

  test("arbitrary bytes and text never escape as anything but an AttestationError", () => {
    const header = vectorBytes(intelVectors.sgx.quote).subarray(0, 48);
    const policyWords = [
      "version=1.0;",
      "authorizationrules",
      "issuancerules",
      "{",
      "}",
      ";",
      "=>",
      "permit()",
      "c:[",
      "type==",
      '"x"',
      "]",
      "&&",
      "issue(",
      "value=c.value",
      ")",
      ",",
      "deny()",
      "1",
      "true",
    ];
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2048 }),
        fc.array(fc.constantFrom(...policyWords), { maxLength: 30 }),
        fc.string(),
        (bytes, words, text) => {
          const withHeader = new Uint8Array(header.length + bytes.length);
          withHeader.set(header);
          withHeader.set(bytes, header.length);
          for (const action of [
            () => parseQuote(bytes),
            () => parseQuote(withHeader),
            () => verifyQuote(withHeader, { skipTcb: true }),
            () => parseSnpReport(bytes),
            () => parsePolicy(words.join(" ")),
            () => parsePolicy(text),
            () =>
              evaluatePolicy(
                `version=1.0; authorizationrules{ => permit(); }; issuancerules{ ${words.join(" ")} };`,
                { x: text },
              ),
          ]) {
            try {
              action();
            } catch (error) {
              assert.ok(error instanceof AttestationError, `escaped: ${String(error)}`);
            }
          }
        },
      ),
      { numRuns: runs(0.05) },
    );
  });

  test(`the runs add up to at least CLOISTER_PROPERTY_RUNS (${totalRuns})`, () => {
    assert.ok(runsCounted >= totalRuns, `${runsCounted} runs`);
    console.log(`# property runs: ${runsCounted}`);
  });
});
