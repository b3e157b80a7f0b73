// `cloister measure [service…] [--json]`: the measurement (simulated MRENCLAVE: SHA-256 over the built code)
// of each service, as the service computes it at start. The container build labels images with it, and
// operators put it into release and attestation policies before deploying.
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cloisterServices, measureService, type CloisterService } from "@cloister/enclave";
import { ExitCode, parseCommandLine, type CliIo } from "./cli-io.js";

export const measureUsage = `Usage: cloister measure [service…] [--root DIR] [--json]

Prints the measurement of each service's built code (default: all four): ${Object.keys(cloisterServices).join(", ")}.
With one service and no --json, prints the bare hex value (for scripts: docker build --build-arg …).`;

const defaultRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export function runMeasure(argv: readonly string[], io: CliIo): number {
  const parsed = parseCommandLine(
    argv,
    { root: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    measureUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const known = Object.keys(cloisterServices);
  const wanted = parsed.positionals.length === 0 ? known : parsed.positionals;
  const unknown = wanted.filter((service) => !known.includes(service));
  if (unknown.length > 0) {
    io.stderr(`cloister measure: unknown service ${unknown.join(", ")}\n\n${measureUsage}\n`);
    return ExitCode.usage;
  }
  const root = resolve(parsed.values.root ?? defaultRoot);
  let measurements: Record<string, string>;
  try {
    measurements = Object.fromEntries(
      wanted.map((service) => [service, measureService(root, service as CloisterService)]),
    );
  } catch (error) {
    io.stderr(`cloister measure: ${(error as Error).message} (run \`npm run build\` first)\n`);
    return ExitCode.rejected;
  }
  if (parsed.values.json === true) {
    io.stdout(`${JSON.stringify(measurements, null, 2)}\n`);
  } else if (wanted.length === 1) {
    io.stdout(`${Object.values(measurements)[0] ?? ""}\n`);
  } else {
    io.stdout(
      Object.entries(measurements)
        .map(([service, value]) => `${service.padEnd(20)} ${value}\n`)
        .join(""),
    );
  }
  return ExitCode.ok;
}
