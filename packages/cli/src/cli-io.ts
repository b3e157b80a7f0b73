import { generateKeyPairSync } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";

type CommandOptions = NonNullable<ParseArgsConfig["options"]>;
type CommandLine<T extends CommandOptions> = ReturnType<
  typeof parseArgs<{ args: string[]; allowPositionals: true; options: T }>
>;

/** Where a command writes; tests capture it, the binary uses the process streams. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export const processIo: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Exit codes of every command: 0 accepted / done, 1 rejected, 2 usage error. */
export const ExitCode = { ok: 0, rejected: 1, usage: 2 } as const;

export class UsageError extends Error {
  override readonly name = "UsageError";
}

/**
 * parseArgs with the commands' shared conventions: a parse error prints it and the usage (exit 2), and
 * `--help` prints the usage (exit 0). Returns the parsed command line, or the exit code to stop with.
 */
export function parseCommandLine<const T extends CommandOptions>(
  argv: readonly string[],
  options: T,
  usage: string,
  io: CliIo,
): CommandLine<T> | number {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, options });
  } catch (error) {
    io.stderr(`${(error as Error).message}\n\n${usage}\n`);
    return ExitCode.usage;
  }
  if ((parsed.values as Record<string, unknown>).help === true) {
    io.stdout(`${usage}\n`);
    return ExitCode.ok;
  }
  return parsed;
}

/** The value of a required string option, or a usage error naming it. */
export function requiredOption(values: Record<string, string | boolean | undefined>, name: string): string {
  const value = values[name];
  if (typeof value !== "string") {
    throw new UsageError(`--${name} is required`);
  }
  return value;
}

/**
 * Makes a person's EC P-384 key pair (a recovery custodian's, a policy approver's): the private JWK to `out`
 * (mode 600, never over an existing file; it stays on that person's machine), and answers the public JWK.
 */
export function writeNewKeyPair(out: string, what: string): JsonWebKey {
  if (existsSync(out)) {
    throw new UsageError(`${out} exists already; ${what} is never overwritten`);
  }
  const pair = generateKeyPairSync("ec", { namedCurve: "P-384" });
  writeFileSync(out, `${JSON.stringify(pair.privateKey.export({ format: "jwk" }))}\n`, {
    mode: 0o600,
    flag: "wx",
  });
  return pair.publicKey.export({ format: "jwk" });
}
