// `cloister up [--data-dir DIR]`: the local platform. Until it starts the services, it sets up
// the data directory's simulation platform, proves the simulated-TEE path end to end, and says which services
// exist but are not started yet (issue 6 makes it start them all).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  AttestationError,
  createSimulationPlatform,
  loadSimulationPlatform,
  simulateQuote,
  verifyQuote,
} from "@cloister/attestation";
import { ExitCode, type CliIo } from "./cli-io.js";

export const upUsage = `Usage: cloister up [--data-dir DIR]

Runs the local Cloister platform in simulation mode (default data directory: .cloister/).`;

export function runUp(argv: readonly string[], io: CliIo): number {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        "data-dir": { type: "string", default: ".cloister" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    io.stderr(`${(error as Error).message}\n\n${upUsage}\n`);
    return ExitCode.usage;
  }
  if (values.help === true) {
    io.stdout(`${upUsage}\n`);
    return ExitCode.ok;
  }
  const dataDirectory = resolve(values["data-dir"]);
  try {
    mkdirSync(dataDirectory, { recursive: true, mode: 0o700 });
    const existed = existsSync(join(dataDirectory, "sim-platform.json"));
    const platform = existed ? loadSimulationPlatform(dataDirectory) : createSimulationPlatform();
    if (!existed) {
      platform.save(dataDirectory);
    }
    // Measure this build of the command the way the simulated TEE will measure services: SHA-256 of code.
    const code = readFileSync(fileURLToPath(import.meta.url));
    const mrenclave = createHash("sha256").update(code).digest("hex");
    const started = performance.now();
    const quote = simulateQuote(platform, {
      mrenclave,
      mrsigner: createHash("sha256").update("cloister-dev-signer").digest("hex"),
      productId: 1,
      svn: 1,
      reportData: createHash("sha256").update("cloister up self-check").digest(),
    });
    const evidence = verifyQuote(quote, {
      collateral: platform.collateral(),
      trustedRoots: [platform.rootSpkiSha256],
    });
    const elapsed = (performance.now() - started).toFixed(1);
    io.stdout(
      [
        "Cloister: local platform, simulation mode",
        `  data directory     ${dataDirectory}`,
        `  simulation root    ${existed ? "loaded" : "created"}, SPKI SHA-256 ${platform.rootSpkiSha256}`,
        `  attestation core   simulated SGX quote v3 → verifyQuote: ${evidence.tcbStatus}, ` +
          `debuggable=${JSON.stringify(evidence.claims["x-ms-sgx-is-debuggable"])}, mrenclave ${mrenclave.slice(0, 16)}… (${elapsed} ms)`,
        "",
        "Built, not yet started by `cloister up`: the attestation service, key broker, inference server and",
        "platform API (each runs on its own: see services/*/README.md). Not built yet: the portal.",
        "",
      ].join("\n"),
    );
    return ExitCode.ok;
  } catch (error) {
    const message = error instanceof AttestationError ? `${error.code}: ${error.message}` : String(error);
    io.stderr(`cloister up: ${message}\n`);
    return ExitCode.rejected;
  }
}
