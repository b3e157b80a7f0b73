// Diagnosis orders submitted at increasing concurrency (autocannon, a fixed number of orders per point),
// against bench/workflow-server.ts in its own process; then every accepted order is followed to its report:
// overload may refuse an order (503 with Retry-After), but an accepted one is never lost.
import { spawn } from "node:child_process";
import type { IncomingHttpHeaders } from "node:http";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { requestJson } from "@cloister/enclave";

const here = dirname(fileURLToPath(import.meta.url));

export interface SubmissionPoint {
  readonly connections: number;
  readonly accepted: number;
  readonly refused: number;
  readonly refusedWithRetryAfter: number;
  readonly ordersPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

export async function runOrderSubmissionCurve(
  ordersPerPoint: number,
  connectionCounts: readonly number[],
): Promise<{ points: SubmissionPoint[]; accepted: number; reported: number; drainSeconds: number }> {
  const child = spawn(
    process.execPath,
    ["--conditions=@cloister/source", "--import", "tsx", join(here, "workflow-server.ts")],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  try {
    const line = await new Promise<string>((resolveLine, reject) => {
      createInterface({ input: child.stdout }).once("line", resolveLine);
      child.once("exit", (code) => {
        reject(new Error(`workflow server exited with ${String(code)}`));
      });
    });
    const { url, ca, clerk, clinician, order } = JSON.parse(line) as {
      url: string;
      ca: string;
      clerk: string;
      clinician: string;
      order: string;
    };
    const points: SubmissionPoint[] = [];
    for (const connections of connectionCounts) {
      let accepted = 0;
      let refused = 0;
      let refusedWithRetryAfter = 0;
      const result = await autocannon({
        url: `${url}/fhir/ServiceRequest`,
        method: "POST",
        connections,
        amount: Math.max(ordersPerPoint, connections),
        headers: { authorization: `Bearer ${clerk}`, "content-type": "application/fhir+json" },
        body: order,
        setupClient: (client) => {
          // At run time the event carries the parsed status line and raw header list (autocannon's types
          // say only the headers).
          const onHeaders = (response: { statusCode: number; headers: string[] }): void => {
            if (response.statusCode === 201) {
              accepted++;
            } else {
              refused++;
              const names = response.headers.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
              refusedWithRetryAfter += response.statusCode === 503 && names.includes("retry-after") ? 1 : 0;
            }
          };
          client.on("headers", onHeaders as unknown as (headers: IncomingHttpHeaders) => void);
        },
      });
      points.push({
        connections,
        accepted,
        refused,
        refusedWithRetryAfter,
        ordersPerSecond: result.requests.average,
        p50: result.latency.p50,
        p99: result.latency.p99,
        errors: result.errors + result.timeouts,
      });
    }
    // Every accepted order ends in a report: none active, one report each.
    const accepted = points.reduce((sum, point) => sum + point.accepted, 0);
    const started = Date.now();
    const count = async (query: string): Promise<number> => {
      const response = await requestJson("GET", new URL(`/fhir/${query}`, url), undefined, {
        ca,
        headers: { authorization: `Bearer ${clinician}` },
      });
      return (response.body as { total: number }).total;
    };
    let active = Number.POSITIVE_INFINITY;
    while (active > 0 && Date.now() - started < 300_000) {
      await new Promise((resolveWait) => setTimeout(resolveWait, 1000));
      active = await count("ServiceRequest?status=active&_count=500");
    }
    const reported = await count("DiagnosticReport?_count=500");
    return { points, accepted, reported, drainSeconds: (Date.now() - started) / 1000 };
  } finally {
    child.kill();
  }
}
