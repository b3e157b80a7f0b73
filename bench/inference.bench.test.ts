// Keeps the inference benchmark runnable: both paths answer for both images. No timing is asserted here;
// the figures come from `npm run bench`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runInferenceBenchmark } from "./inference.bench.js";

test("the confidential inference benchmark runs both paths on both images", async () => {
  const rows = await runInferenceBenchmark({ iterations: 3, warmup: 1 });
  assert.deepEqual(
    rows.map((row) => row.input),
    ["28×28 PNG", "512×512 DICOM"],
  );
  for (const row of rows) {
    assert.ok(row.baseline.p50 > 0 && row.confidential.p50 > 0 && row.cryptoFloorMs > 0);
    assert.ok((row.stages["server infer"] ?? 0) > 0, "the server reports its stages inside the encryption");
    // Three iterations make three rounds of one pair each: one ratio per round, sorted.
    assert.equal(row.roundRatios.length, 3);
    assert.ok(row.roundRatios.every((ratio, i) => ratio > 0 && ratio >= (row.roundRatios[i - 1] ?? 0)));
  }
});
