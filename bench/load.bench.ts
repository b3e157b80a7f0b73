// `npm run bench:load`: the platform's FHIR reads at increasing concurrency on this machine, to find the knee
// (where more connections stop buying throughput and only add latency) and to see overload answered with
// 503 and Retry-After (maxInFlight, default 256) rather than a crash. Each point also measures GET /healthz,
// the transport ceiling, with the same connections.
import { runFhirLoadCurve } from "./platform.bench.js";

const seconds = Number.parseInt(process.env.CLOISTER_BENCH_SECONDS ?? "5", 10);
const counts = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
console.log(`Platform FHIR Patient reads, HTTPS, ${seconds} s per point\n`);
console.log("connections   reads/s   p50 ms   p99 ms   non-2xx   errors   healthz/s   reads ÷ healthz");
const points = await runFhirLoadCurve(seconds, counts);
for (const { fhir, baseline } of points) {
  console.log(
    [
      String(fhir.connections).padStart(11),
      fhir.requestsPerSecond.toFixed(0).padStart(9),
      String(fhir.p50).padStart(8),
      String(fhir.p99).padStart(8),
      String(fhir.non2xx).padStart(9),
      String(fhir.errors).padStart(8),
      baseline.requestsPerSecond.toFixed(0).padStart(11),
      `${(fhir.requestsPerSecond / baseline.requestsPerSecond).toFixed(3)}×`.padStart(17),
    ].join(" "),
  );
}
// The knee: the smallest concurrency within 5% of the best throughput.
const best = Math.max(...points.map((point) => point.fhir.requestsPerSecond));
const knee = points.find((point) => point.fhir.requestsPerSecond >= best * 0.95);
console.log(
  `\nknee: ${String(knee?.fhir.connections)} connections (${knee?.fhir.requestsPerSecond.toFixed(0) ?? "?"} reads/s, p99 ${String(knee?.fhir.p99)} ms); best ${best.toFixed(0)} reads/s`,
);
const crashed = points.some((point) => point.fhir.errors > 0);
console.log(`connection errors or timeouts at any point: ${crashed ? "yes" : "none"}`);
