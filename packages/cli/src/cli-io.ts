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
