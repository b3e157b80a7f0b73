// `npm run bench` (part 4), the platform API:
//   1. FHIR Patient reads per second with encryption on (each read opens an AES-256-GCM record and writes a
//      hash-chained, sealed AuditEvent), autocannon over HTTPS, the server in its own process. Baseline in
//      the same run and on the same connections: the same reads without encryption (plain-fhir-server.ts),
//      and GET /healthz, the transport ceiling.
//   2. Submit-to-report latency of the diagnosis workflow (ServiceRequest created → DiagnosticReport
//      announced over server-sent events), with the real inference server and attestation service on
//      loopback. Goal (issue 5): p50 under 1 s.
import { spawn } from "node:child_process";
import type { IncomingHttpHeaders } from "node:http";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { chestXrayPng, diagnosisOrder, startWorkflowPlatform } from "./workflow-platform.js";

const here = dirname(fileURLToPath(import.meta.url));

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

interface LoadSummary {
  readonly connections: number;
  /** All answers per second, refusals included. */
  readonly requestsPerSecond: number;
  /** Successful (2xx) answers per second. */
  readonly servedPerSecond: number;
  /** Answers that were 503 with Retry-After: load shed. */
  readonly shedWithRetryAfter: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
}

/**
 * FHIR Patient reads against the platform in its own process (and GET /healthz, the transport ceiling), at
 * each of `connectionCounts` in turn: one count for the report, several for the load curve.
 */
export async function runFhirLoadCurve(
  seconds: number,
  connectionCounts: readonly number[],
  server: "platform-server.ts" | "plain-fhir-server.ts" = "platform-server.ts",
): Promise<{ fhir: LoadSummary; baseline: LoadSummary }[]> {
  const child = spawn(
    process.execPath,
    ["--conditions=@cloister/source", "--import", "tsx", join(here, server)],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  try {
    const line = await new Promise<string>((resolveLine, reject) => {
      createInterface({ input: child.stdout }).once("line", resolveLine);
      child.once("exit", (code) => {
        reject(new Error(`bench server exited with ${String(code)}`));
      });
    });
    const { url, token, patientIds } = JSON.parse(line) as {
      url: string;
      token: string;
      patientIds: string[];
    };
    let next = 0;
    const summary = (connections: number, result: autocannon.Result, shed = 0): LoadSummary => ({
      connections,
      requestsPerSecond: result.requests.average,
      servedPerSecond: (result.requests.total - result.non2xx) / result.duration,
      shedWithRetryAfter: shed,
      p50: result.latency.p50,
      p99: result.latency.p99,
      errors: result.errors + result.timeouts,
      non2xx: result.non2xx,
    });
    const points: { fhir: LoadSummary; baseline: LoadSummary }[] = [];
    for (const connections of connectionCounts) {
      const reads = {
        url,
        connections,
        duration: seconds,
        headers: { authorization: `Bearer ${token}`, accept: "application/fhir+json" },
        requests: [
          {
            setupRequest: (request: autocannon.Request) => ({
              ...request,
              path: `/fhir/Patient/${patientIds[next++ % patientIds.length] ?? ""}`,
            }),
          },
        ],
      };
      await autocannon({ ...reads, duration: 1 });
      let shed = 0;
      const fhir = await autocannon({
        ...reads,
        setupClient: (client) => {
          // At run time the event carries the status and raw header list (the types say only the headers).
          const onHeaders = (response: { statusCode: number; headers: string[] }): void => {
            const names = response.headers.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
            shed += response.statusCode === 503 && names.includes("retry-after") ? 1 : 0;
          };
          client.on("headers", onHeaders as unknown as (headers: IncomingHttpHeaders) => void);
        },
      });
      const baseline = await autocannon({ url: `${url}/healthz`, connections, duration: seconds });
      points.push({ fhir: summary(connections, fhir, shed), baseline: summary(connections, baseline) });
    }
    return points;
  } finally {
    child.kill();
  }
}

/**
 * FHIR reads at one concurrency: the platform (sealed records, blind indexes, hash-chained sealed audit) and,
 * in the same run, the plain baseline (bench/plain-fhir-server.ts: same app, session check, SQLite and an
 * audit row per read, no encryption), each with its /healthz ceiling.
 */
export async function runFhirReadBenchmark(
  seconds: number,
  connections: number,
): Promise<{ fhir: LoadSummary; plain: LoadSummary; baseline: LoadSummary }> {
  const [point] = await runFhirLoadCurve(seconds, [connections]);
  const [plainPoint] = await runFhirLoadCurve(seconds, [connections], "plain-fhir-server.ts");
  if (point === undefined || plainPoint === undefined) {
    throw new Error("no measurement");
  }
  return { fhir: point.fhir, plain: plainPoint.fhir, baseline: point.baseline };
}

export async function runWorkflowLatencyBenchmark(orders: number) {
  const platform = await startWorkflowPlatform();
  const url = await platform.app.listen({ port: 0, host: "127.0.0.1" });
  try {
    const token = await platform.signIn("clerk");
    const headers = { authorization: `Bearer ${token}`, "content-type": "application/fhir+json" };
    const post = async (
      path: string,
      body: string | Uint8Array<ArrayBuffer>,
      contentType = "application/fhir+json",
      extraHeaders: Record<string, string> = {},
    ) =>
      (await (
        await fetch(`${url}${path}`, {
          method: "POST",
          headers: { ...headers, "content-type": contentType, ...extraHeaders },
          body,
        })
      ).json()) as {
        id: string;
      };
    const png = chestXrayPng();
    const patient = await post(
      "/fhir/Patient",
      JSON.stringify({ resourceType: "Patient", name: [{ family: "Bench" }] }),
    );
    const announced = new Map<string, number>();
    const events = await fetch(`${url}/events`, { headers: { authorization: `Bearer ${token}` } });
    const reader = events.body?.getReader();
    void (async () => {
      let buffer = "";
      for (;;) {
        const chunk = await reader?.read();
        if (chunk === undefined || chunk.done) {
          return;
        }
        buffer += new TextDecoder().decode(chunk.value);
        for (const match of buffer.matchAll(/"basedOn":"ServiceRequest\/([^"]+)"/g)) {
          if (match[1] !== undefined && !announced.has(match[1])) {
            announced.set(match[1], performance.now());
          }
        }
      }
    })();
    const latencies: number[] = [];
    for (let i = 0; i < orders; i++) {
      const binary = await post("/fhir/Binary", png, "image/png", {
        "x-security-context": `Patient/${patient.id}`,
      });
      const started = performance.now();
      const order = await post("/fhir/ServiceRequest", diagnosisOrder(patient.id, binary.id));
      while (!announced.has(order.id)) {
        await new Promise((wake) => setTimeout(wake, 1));
      }
      latencies.push((announced.get(order.id) ?? 0) - started);
    }
    await reader?.cancel();
    return { orders, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
  } finally {
    await platform.close();
  }
}

async function main(): Promise<void> {
  const { fhir, plain, baseline } = await runFhirReadBenchmark(10, 10);
  console.log(
    "Platform API: FHIR Patient reads (sealed records, blind indexes, an audited read each), HTTPS, 10 connections",
  );
  console.log(
    `  GET /healthz (transport ceiling)  ${baseline.requestsPerSecond.toFixed(0)} req/s, p50 ${baseline.p50} ms, p99 ${baseline.p99} ms`,
  );
  console.log(
    `  GET /fhir/Patient/{id}           ${fhir.requestsPerSecond.toFixed(0)} req/s, p50 ${fhir.p50} ms, p99 ${fhir.p99} ms, errors ${fhir.errors}, non-2xx ${fhir.non2xx}`,
  );
  console.log(
    `  the same reads unencrypted      ${plain.requestsPerSecond.toFixed(0)} req/s, p50 ${plain.p50} ms, p99 ${plain.p99} ms`,
  );
  console.log(`  ratio sealed/unencrypted: ${(fhir.requestsPerSecond / plain.requestsPerSecond).toFixed(2)}`);
  const workflow = await runWorkflowLatencyBenchmark(100);
  console.log(`\nDiagnosis workflow, submit to the AI report (SSE), ${workflow.orders} orders one at a time`);
  console.log(
    `  p50 ${workflow.p50.toFixed(1)} ms, p99 ${workflow.p99.toFixed(1)} ms (goal: p50 < 1000 ms: ${workflow.p50 < 1000 ? "met" : "NOT met"})`,
  );
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  await main();
}
