// `npm run bench`: full Intel DCAP verification, @cloister/attestation's verifyQuote against the reference
// implementation @phala/dcap-qvl (pure JS), on the same quotes and collateral, in one process.
// Prints time per verification and the ratio baseline / ours. "warm" keeps our parse cache of collateral
// (as a service reusing collateral for many quotes does); "cold" clears it before every verification.
// Every signature is verified on every call in both modes.
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import dcapQvl from "@phala/dcap-qvl";
import { verifyQuote, type CollateralBundle } from "@cloister/attestation";
import { clearParseCaches } from "../packages/attestation/src/lib/parse-cache.js";

const vectors = resolve(dirname(fileURLToPath(import.meta.url)), "../../shared/attestation-vectors/dcap-qvl");

interface Case {
  readonly name: string;
  readonly quote: Uint8Array;
  readonly collateral: CollateralBundle;
  readonly now: Date;
}

function loadCase(name: string, at: string): Case {
  return {
    name,
    quote: new Uint8Array(readFileSync(join(vectors, name))),
    collateral: JSON.parse(
      readFileSync(join(vectors, `${name}_collateral.json`), "utf8"),
    ) as CollateralBundle,
    now: new Date(at),
  };
}

export const benchmarkCases = (): Case[] => [
  loadCase("sgx_quote", "2025-07-04T10:28:44Z"),
  loadCase("tdx_quote", "2025-07-04T10:24:15Z"),
];

/** Mean milliseconds per call over at least `minimumMs` and `minimumIterations`, after a warm-up. */
function measure(run: () => unknown, minimumMs: number, minimumIterations: number): number {
  for (let i = 0; i < Math.min(20, minimumIterations); i++) {
    run();
  }
  let iterations = 0;
  const started = performance.now();
  let elapsed = 0;
  while (iterations < minimumIterations || elapsed < minimumMs) {
    run();
    iterations++;
    elapsed = performance.now() - started;
  }
  return elapsed / iterations;
}

/** The goal: at least this many times faster than @phala/dcap-qvl (warm and cold). */
export const verifyQuoteSpeedGoal = 10;

export interface BenchmarkRow {
  readonly quote: string;
  readonly statusOurs: string;
  readonly statusBaseline: string;
  readonly baselineMs: number;
  readonly warmMs: number;
  readonly coldMs: number;
}

export function runVerifyQuoteBenchmark(options: {
  minimumMs: number;
  minimumIterations: number;
}): BenchmarkRow[] {
  return benchmarkCases().map((benchmarkCase) => {
    const nowSeconds = Math.floor(benchmarkCase.now.getTime() / 1000);
    const ours = (): string =>
      verifyQuote(benchmarkCase.quote, { collateral: benchmarkCase.collateral, now: benchmarkCase.now })
        .tcbStatus;
    const baseline = (): string =>
      dcapQvl.verify(benchmarkCase.quote, benchmarkCase.collateral, nowSeconds).status;
    const statusOurs = ours();
    const statusBaseline = baseline();
    return {
      quote: benchmarkCase.name,
      statusOurs,
      statusBaseline,
      baselineMs: measure(baseline, options.minimumMs, options.minimumIterations),
      warmMs: measure(ours, options.minimumMs, options.minimumIterations),
      coldMs: measure(
        () => {
          clearParseCaches();
          return ours();
        },
        options.minimumMs,
        options.minimumIterations,
      ),
    };
  });
}

function main(): void {
  const goal = verifyQuoteSpeedGoal;
  console.log(
    "verifyQuote vs @phala/dcap-qvl 0.3.9 (baseline), full DCAP verification, same quotes and collateral\n",
  );
  console.log(
    "quote       status (ours / baseline)                                      baseline    ours warm   ours cold   ratio warm  ratio cold",
  );
  const rows = runVerifyQuoteBenchmark({ minimumMs: 2000, minimumIterations: 200 });
  for (const row of rows) {
    console.log(
      [
        row.quote.padEnd(11),
        `${row.statusOurs} / ${row.statusBaseline}`.padEnd(62),
        `${row.baselineMs.toFixed(3)} ms`.padEnd(11),
        `${row.warmMs.toFixed(3)} ms`.padEnd(11),
        `${row.coldMs.toFixed(3)} ms`.padEnd(11),
        `${(row.baselineMs / row.warmMs).toFixed(1)}×`.padEnd(11),
        `${(row.baselineMs / row.coldMs).toFixed(1)}×`,
      ].join(" "),
    );
  }
  const worstWarm = Math.min(...rows.map((row) => row.baselineMs / row.warmMs));
  const worstCold = Math.min(...rows.map((row) => row.baselineMs / row.coldMs));
  console.log(
    `\ngoal: ≥ ${goal}× faster than the baseline. Worst case warm ${worstWarm.toFixed(1)}× ` +
      `(${worstWarm >= goal ? "met" : "NOT met"}), cold ${worstCold.toFixed(1)}× (${worstCold >= goal ? "met" : "NOT met"}).`,
  );
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main();
}
