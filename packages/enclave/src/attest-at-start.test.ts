import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { attestRequestBody, backoffMs, refreshDelayMs } from "./index.js";

describe("attest-at-start helpers", () => {
  test("refresh happens at 75% of the remaining lifetime, minus at most 10% jitter, never under 1 s", () => {
    for (let i = 0; i < 200; i++) {
      const delay = refreshDelayMs(0, 3_600_000, 0.75);
      assert.ok(delay <= 2_700_000 && delay >= 2_700_000 - 360_000, String(delay));
    }
    assert.equal(refreshDelayMs(10_000, 5_000, 0.75), 1000);
  });

  test("backoff grows exponentially with jitter and caps at about a minute", () => {
    for (let attempt = 1; attempt < 20; attempt++) {
      const delay = backoffMs(attempt);
      assert.ok(
        delay >= 500 && delay <= 500 + Math.min(60_000, 1000 * 2 ** Math.min(attempt, 6)),
        `${attempt}: ${delay}`,
      );
    }
  });

  test("request bodies follow MAA: quote or report, runtime data as base64url JSON", () => {
    const runtimeData = new TextEncoder().encode("{}");
    assert.deepEqual(attestRequestBody({ type: "sgx", quote: Uint8Array.of(1, 2) }, runtimeData), {
      quote: "AQI",
      runtimeData: { data: "e30", dataType: "JSON" },
    });
    const snp = attestRequestBody(
      { type: "sevsnp", report: Uint8Array.of(3), vcek: Uint8Array.of(4) },
      runtimeData,
    );
    const decoded = JSON.parse(Buffer.from(snp.report as string, "base64url").toString()) as Record<
      string,
      string
    >;
    assert.deepEqual(decoded, { SnpReport: "Aw", VcekCertChain: "BA" });
  });
});
