// Keeps the benchmark runnable and honest: both verifiers run on the same inputs and agree. No timing is
// asserted here; the figures come from `npm run bench`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runVerifyQuoteBenchmark } from "./verify-quote.bench.js";

test("the verifyQuote benchmark runs, and ours and the baseline agree on every quote", () => {
  const rows = runVerifyQuoteBenchmark({ minimumMs: 0, minimumIterations: 3 });
  assert.equal(rows.length, 2);
  for (const row of rows) {
    assert.equal(row.statusOurs, row.statusBaseline, row.quote);
    assert.ok(row.baselineMs > 0 && row.warmMs > 0 && row.coldMs > 0);
  }
});
