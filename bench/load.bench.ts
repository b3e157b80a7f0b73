// `npm run bench:load`: each service at increasing concurrency on this machine, to find the knee (where more
// connections stop buying throughput and only add latency) and to see overload answered with 503 and
// Retry-After (in-flight limits, and event-loop delay shedding) rather than a crash or a lost job:
//   1. the platform's FHIR reads (each point also measures GET /healthz, the transport ceiling);
//   2. the attestation service's token issuance (with its /healthz ceiling);
//   3. diagnosis orders submitted, then followed to their reports: an accepted order is never lost.
import { runAttestationLoadCurve } from "./attestation-service.bench.js";
import { runFhirLoadCurve } from "./platform.bench.js";
import { runOrderSubmissionCurve } from "./workflow-load.js";

const seconds = Number.parseInt(process.env.CLOISTER_BENCH_SECONDS ?? "5", 10);
const counts = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** The knee: the smallest concurrency within 5% of the best throughput. */
function knee<T extends { connections: number; rate: number }>(points: readonly T[]): T | undefined {
  const best = Math.max(...points.map((point) => point.rate));
  return points.find((point) => point.rate >= best * 0.95);
}

console.log(`1. Platform FHIR Patient reads, HTTPS, ${seconds} s per point\n`);
console.log(
  "connections   served/s   p50 ms   p99 ms   shed (503 + Retry-After)   other non-2xx   errors   healthz/s   served ÷ healthz",
);
const reads = await runFhirLoadCurve(seconds, counts);
for (const { fhir, baseline } of reads) {
  console.log(
    [
      String(fhir.connections).padStart(11),
      fhir.servedPerSecond.toFixed(0).padStart(10),
      String(fhir.p50).padStart(8),
      String(fhir.p99).padStart(8),
      String(fhir.shedWithRetryAfter).padStart(26),
      String(fhir.non2xx - fhir.shedWithRetryAfter).padStart(15),
      String(fhir.errors).padStart(8),
      baseline.requestsPerSecond.toFixed(0).padStart(11),
      `${(fhir.servedPerSecond / baseline.requestsPerSecond).toFixed(3)}×`.padStart(18),
    ].join(" "),
  );
}
const readKnee = knee(reads.map(({ fhir }) => ({ ...fhir, rate: fhir.servedPerSecond })));
console.log(
  `knee: ${String(readKnee?.connections)} connections (${readKnee?.servedPerSecond.toFixed(0) ?? "?"} reads/s, p99 ${String(readKnee?.p99)} ms); connection errors or timeouts: ${reads.some(({ fhir }) => fhir.errors > 0) ? "yes" : "none"}`,
);

console.log(
  `\n2. Attestation service, POST /attest/SgxEnclave (simulated quote), HTTPS, ${seconds} s per point\n`,
);
console.log(
  "connections  tokens/s   p50 ms   p99 ms   503 shed   other errors   healthz/s   tokens ÷ healthz",
);
const tokens = await runAttestationLoadCurve(seconds, counts);
for (const point of tokens) {
  console.log(
    [
      String(point.connections).padStart(11),
      point.tokens.servedPerSecond.toFixed(0).padStart(9),
      String(point.tokens.p50).padStart(8),
      String(point.tokens.p99).padStart(8),
      String(point.shed).padStart(10),
      String(point.tokens.errors + point.tokens.non2xx - point.shed).padStart(14),
      point.baseline.requestsPerSecond.toFixed(0).padStart(11),
      `${(point.tokens.servedPerSecond / point.baseline.requestsPerSecond).toFixed(3)}×`.padStart(18),
    ].join(" "),
  );
}
const tokenKnee = knee(tokens.map((point) => ({ ...point, rate: point.tokens.servedPerSecond })));
console.log(
  `knee: ${String(tokenKnee?.connections)} connections (${tokenKnee?.tokens.servedPerSecond.toFixed(0) ?? "?"} tokens/s, p99 ${String(tokenKnee?.tokens.p99)} ms)`,
);

const ordersPerPoint = 60;
// At most 500 orders in all: the drain check reads them back in one page.
const orderCounts = [1, 4, 16, 64, 128];
console.log(
  `\n3. Diagnosis orders, POST /fhir/ServiceRequest, ${ordersPerPoint} orders per point (at least one per connection), then followed to their reports\n`,
);
console.log("connections  orders/s   p50 ms   p99 ms   accepted   refused (503 + Retry-After)   errors");
const orders = await runOrderSubmissionCurve(ordersPerPoint, orderCounts);
for (const point of orders.points) {
  console.log(
    [
      String(point.connections).padStart(11),
      point.ordersPerSecond.toFixed(0).padStart(9),
      String(point.p50).padStart(8),
      String(point.p99).padStart(8),
      String(point.accepted).padStart(10),
      `${point.refused} (${point.refusedWithRetryAfter})`.padStart(29),
      String(point.errors).padStart(8),
    ].join(" "),
  );
}
console.log(
  `${orders.accepted} orders accepted, ${orders.reported} reports after ${orders.drainSeconds.toFixed(0)} s: ${orders.reported === orders.accepted ? "none lost, none duplicated" : "MISMATCH"}`,
);
if (orders.reported !== orders.accepted) {
  process.exitCode = 1;
}
