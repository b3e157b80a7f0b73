// `npm run bench` (part 2): attestation tokens per second for simulated SGX quotes, with autocannon over
// HTTPS on loopback. The service runs in its own process (one core), the load generator in this one (the
// other core). Baseline, in the same run and on the same connections: GET /healthz, the transport ceiling.
// Goal (issue 3): ≥ 1,000 tokens/s with p99 < 25 ms.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";

const here = dirname(fileURLToPath(import.meta.url));

export interface LoadResult {
  /** All answers per second, refusals included. */
  readonly requestsPerSecond: number;
  /** Successful (2xx) answers per second. */
  readonly servedPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
}

async function load(options: autocannon.Options): Promise<LoadResult> {
  const result = await autocannon(options);
  return {
    requestsPerSecond: result.requests.average,
    servedPerSecond: (result.requests.total - result.non2xx) / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

/**
 * Token issuance (POST /attest/SgxEnclave) and GET /healthz, the transport ceiling, at each connection count
 * in turn, against one attestation service process: one count for the report, several for the load curve.
 */
export async function runAttestationLoadCurve(
  seconds: number,
  connectionCounts: readonly number[],
): Promise<{ connections: number; baseline: LoadResult; tokens: LoadResult; shed: number }[]> {
  const server = spawn(
    process.execPath,
    ["--conditions=@cloister/source", "--import", "tsx", join(here, "attestation-service-server.ts")],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  try {
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout }).once("line", resolve);
      server.once("exit", (code) => {
        reject(new Error(`bench server exited with ${String(code)}`));
      });
    });
    const { url, body } = JSON.parse(line) as { url: string; body: string };
    const attest = {
      url: `${url}/attest/SgxEnclave?api-version=2022-08-01`,
      method: "POST" as const,
      headers: { "content-type": "application/json" },
      body,
    };
    await load({ url: `${url}/healthz`, connections: 8, duration: 1 }); // warm-up
    await load({ ...attest, connections: 8, duration: 1 });
    const points = [];
    for (const connections of connectionCounts) {
      const baseline = await load({ url: `${url}/healthz`, connections, duration: seconds });
      let shed = 0;
      const tokens = await load({
        ...attest,
        connections,
        duration: seconds,
        setupClient: (client) => {
          client.on("response", (statusCode: number) => {
            shed += statusCode === 503 ? 1 : 0;
          });
        },
      });
      points.push({ connections, baseline, tokens, shed });
    }
    return points;
  } finally {
    server.kill();
  }
}

export async function runAttestationServiceBenchmark(
  seconds: number,
  connections: number,
): Promise<{ baseline: LoadResult; tokens: LoadResult }> {
  const [point] = await runAttestationLoadCurve(seconds, [connections]);
  if (point === undefined) {
    throw new Error("no measurement");
  }
  return point;
}

async function main(): Promise<void> {
  const seconds = Number.parseInt(process.env.CLOISTER_BENCH_SECONDS ?? "10", 10);
  const connections = 8;
  console.log(
    `\nattestation service: POST /attest/SgxEnclave (simulated quote, JSON runtime data), HTTPS, ${connections} connections, ${seconds} s`,
  );
  const { baseline, tokens } = await runAttestationServiceBenchmark(seconds, connections);
  const row = (name: string, result: LoadResult): string =>
    `${name.padEnd(34)} ${result.requestsPerSecond.toFixed(0).padStart(7)} req/s   p50 ${String(result.p50).padStart(3)} ms   p99 ${String(result.p99).padStart(3)} ms   errors ${result.errors + result.non2xx}`;
  console.log(row("baseline: GET /healthz", baseline));
  console.log(row("tokens: POST /attest/SgxEnclave", tokens));
  console.log(
    `ratio tokens/s ÷ healthz/s: ${(tokens.requestsPerSecond / baseline.requestsPerSecond).toFixed(2)}×`,
  );
  const met = tokens.requestsPerSecond >= 1000 && tokens.p99 < 25 && tokens.errors + tokens.non2xx === 0;
  console.log(
    `goal: ≥ 1,000 tokens/s with p99 < 25 ms: ${met ? "met" : "NOT met"} (${(tokens.requestsPerSecond / 1000).toFixed(2)}× the goal rate).`,
  );
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
