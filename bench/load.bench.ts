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

/** Prints a table whose cells are right-aligned under their column titles. */
function printTable(columns: readonly string[], rows: readonly (readonly (string | number)[])[]): void {
  console.log(columns.join("   "));
  for (const row of rows) {
    console.log(row.map((cell, i) => String(cell).padStart((columns[i] ?? "").length)).join("   "));
  }
}

console.log(`1. Platform FHIR Patient reads, HTTPS, ${seconds} s per point\n`);
const reads = await runFhirLoadCurve(seconds, counts);
printTable(
  [
    "connections",
    "served/s",
    "p50 ms",
    "p99 ms",
    "shed (503 + Retry-After)",
    "other non-2xx",
    "errors",
    "healthz/s",
    "served ÷ healthz",
  ],
  reads.map(({ fhir, baseline }) => [
    fhir.connections,
    fhir.servedPerSecond.toFixed(0),
    fhir.p50,
    fhir.p99,
    fhir.shedWithRetryAfter,
    fhir.non2xx - fhir.shedWithRetryAfter,
    fhir.errors,
    baseline.requestsPerSecond.toFixed(0),
    `${(fhir.servedPerSecond / baseline.requestsPerSecond).toFixed(3)}×`,
  ]),
);
const readKnee = knee(reads.map(({ fhir }) => ({ ...fhir, rate: fhir.servedPerSecond })));
console.log(
  `knee: ${String(readKnee?.connections)} connections (${readKnee?.servedPerSecond.toFixed(0) ?? "?"} reads/s, p99 ${String(readKnee?.p99)} ms); connection errors or timeouts: ${reads.some(({ fhir }) => fhir.errors > 0) ? "yes" : "none"}`,
);

console.log(
  `\n2. Attestation service, POST /attest/SgxEnclave (simulated quote), HTTPS, ${seconds} s per point\n`,
);
const tokens = await runAttestationLoadCurve(seconds, counts);
printTable(
  [
    "connections",
    "tokens/s",
    "p50 ms",
    "p99 ms",
    "503 shed",
    "other errors",
    "healthz/s",
    "tokens ÷ healthz",
  ],
  tokens.map((point) => [
    point.connections,
    point.tokens.servedPerSecond.toFixed(0),
    point.tokens.p50,
    point.tokens.p99,
    point.shed,
    point.tokens.errors + point.tokens.non2xx - point.shed,
    point.baseline.requestsPerSecond.toFixed(0),
    `${(point.tokens.servedPerSecond / point.baseline.requestsPerSecond).toFixed(3)}×`,
  ]),
);
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
const orders = await runOrderSubmissionCurve(ordersPerPoint, orderCounts);
printTable(
  ["connections", "orders/s", "p50 ms", "p99 ms", "accepted", "refused (503 + Retry-After)", "errors"],
  orders.points.map((point) => [
    point.connections,
    point.ordersPerSecond.toFixed(0),
    point.p50,
    point.p99,
    point.accepted,
    `${point.refused} (${point.refusedWithRetryAfter})`,
    point.errors,
  ]),
);
console.log(
  `${orders.accepted} orders accepted, ${orders.reported} reports after ${orders.drainSeconds.toFixed(0)} s: ${orders.reported === orders.accepted ? "none lost, none duplicated" : "MISMATCH"}`,
);
if (orders.reported !== orders.accepted) {
  process.exitCode = 1;
}
