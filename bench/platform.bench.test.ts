// Keeps the platform benchmark runnable: reads succeed under load and orders reach their AI report. No
// timing is asserted here; the figures come from `npm run bench`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runFhirReadBenchmark, runWorkflowLatencyBenchmark } from "./platform.bench.js";

test("the platform benchmark runs: FHIR reads under load and the diagnosis workflow", async () => {
  const { fhir, plain } = await runFhirReadBenchmark(1, 2);
  for (const reads of [fhir, plain]) {
    assert.ok(reads.requestsPerSecond > 0);
    assert.equal(reads.errors + reads.non2xx, 0, "every read of both servers answers 200");
  }
  const workflow = await runWorkflowLatencyBenchmark(2);
  assert.ok(workflow.p50 > 0);
});
