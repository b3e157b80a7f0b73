// `cloister backup`: an online backup of the embedded record store (SQLite, DIR/records.db) while the platform
// runs, consistent as of one moment and checked before the command ends. With PostgreSQL the database's own
// tools back it up (docs/runbook.md, "Backing up and restoring the records"). The copy holds sealed records only;
// it opens with the tenants' keys, which the key broker's recovery backup keeps (`cloister recovery backup`).
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { ExitCode, parseCommandLine, type CliIo } from "./cli-io.js";

export const backupUsage = `Usage: cloister backup --out FILE [--data-dir DIR] [--json]

Backs up the embedded record store (DIR/records.db, default .cloister) into FILE, a new file, while the
platform goes on running; the copy is consistent as of one moment and passes SQLite's integrity check.
To restore: stop the platform, put FILE in place of DIR/records.db (remove records.db-wal and records.db-shm),
and start it again. The copy opens only with the key broker's keys: keep its recovery backup too.
Exit codes: 0 backed up, 1 it failed (nothing is left at FILE), 2 usage.`;

export async function runBackup(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      "data-dir": { type: "string", default: ".cloister" },
      out: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    backupUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  if (values.out === undefined || positionals.length > 0) {
    io.stderr(`${backupUsage}\n`);
    return ExitCode.usage;
  }
  const source = join(resolve(values["data-dir"]), "records.db");
  const destination = resolve(values.out);
  if (!existsSync(source)) {
    io.stderr(
      `cloister backup: no embedded record store at ${source} (a platform on PostgreSQL is backed up with PostgreSQL's own tools)\n`,
    );
    return ExitCode.rejected;
  }
  const { backupSqliteDatabase } = await import("@cloister/platform-api/sqlite-store");
  try {
    const { pages } = await backupSqliteDatabase(source, destination);
    io.stdout(
      values.json === true
        ? `${JSON.stringify({ source, backup: destination, pages, integrity: "ok" })}\n`
        : `backed up ${source} to ${destination} (${pages} pages, integrity checked)\n`,
    );
    return ExitCode.ok;
  } catch (error) {
    io.stderr(`cloister backup: ${(error as Error).message}\n`);
    return ExitCode.rejected;
  }
}
