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
