// `cloister audit verify`: has the platform walk the tenant's audit chain inside its TEE (only it holds the
// tenant's keys) from the head this command recorded last time, and records the new head outside the
// platform. An edit, a deletion or a reordering of events breaks the chain; deleting the newest events
// together with the platform's own head record no longer goes unnoticed, because the checkpoint is kept here.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { requestJson } from "@cloister/enclave";
import { ExitCode, type CliIo, parseCommandLine } from "./cli-io.js";
import { adminPassword, readRunningStack, signInAtPlatform } from "./platform-admin.js";

export const auditUsage = `Usage: cloister audit verify [--data-dir DIR] [--email EMAIL] [--checkpoint FILE] [--json]

Verifies the audit chain of the signed-in admin's tenant on the running platform (from DIR/stack.json,
default .cloister) and checks it still holds the head recorded at the last run (the checkpoint file,
default DIR/audit-checkpoint.json), then records the new head there.
The admin's password is read from CLOISTER_AUDIT_PASSWORD, or for the demo admin from DIR/demo-credentials.json.
Exit codes: 0 the chain verifies, 1 it does not (or the platform refused), 2 usage.`;

interface Checkpoint {
  readonly sequence: number;
  readonly hash: string;
  readonly tenant: string;
  readonly recordedAt: string;
}

export async function runAudit(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      "data-dir": { type: "string", default: ".cloister" },
      email: { type: "string", default: "admin@demo.hospital" },
      checkpoint: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    auditUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  if (positionals[0] !== "verify" || positionals.length !== 1) {
    io.stderr(`${auditUsage}\n`);
    return ExitCode.usage;
  }
  const dataDirectory = resolve(values["data-dir"]);
  const email = values.email;
  let stack;
  let password;
  try {
    stack = readRunningStack(dataDirectory, "audit");
    password = adminPassword(dataDirectory, email, "CLOISTER_AUDIT_PASSWORD");
  } catch (error) {
    io.stderr(`cloister audit: ${(error as Error).message}\n`);
    return ExitCode.usage;
  }
  const checkpointFile = resolve(values.checkpoint ?? join(dataDirectory, "audit-checkpoint.json"));
  const previous = existsSync(checkpointFile)
    ? (JSON.parse(readFileSync(checkpointFile, "utf8")) as Checkpoint)
    : undefined;
  try {
    const session = await signInAtPlatform(stack, email, password);
    if ("refused" in session) {
      io.stderr(`cloister audit: sign-in refused (HTTP ${session.refused})\n`);
      return ExitCode.rejected;
    }
    const answer = await requestJson(
      "POST",
      new URL("/audit/verify", stack.platform),
      previous === undefined ? {} : { checkpoint: { sequence: previous.sequence, hash: previous.hash } },
      session,
    );
    const result = answer.body as {
      ok?: boolean;
      tenant?: string;
      length?: number;
      headHash?: string;
      code?: string;
      reason?: string;
    };
    if (answer.status !== 200) {
      io.stderr(
        `cloister audit: the platform refused (HTTP ${answer.status}, ${result.code ?? "no code"})\n`,
      );
      return ExitCode.rejected;
    }
    if (values.json === true) {
      io.stdout(`${JSON.stringify({ ...result, checkpoint: previous ?? null })}\n`);
    }
    if (result.ok !== true || result.length === undefined || result.headHash === undefined) {
      if (values.json !== true) {
        io.stdout(
          `audit chain BROKEN for tenant ${result.tenant ?? "?"}: ${result.reason ?? result.code ?? "?"}\n`,
        );
      }
      return ExitCode.rejected;
    }
    const next: Checkpoint = {
      sequence: result.length,
      hash: result.headHash,
      tenant: result.tenant ?? "",
      recordedAt: new Date().toISOString(),
    };
    writeFileSync(checkpointFile, `${JSON.stringify(next, null, 2)}\n`, { mode: 0o600 });
    if (values.json !== true) {
      io.stdout(
        `audit chain verifies for tenant ${next.tenant}: ${next.sequence} events, head ${next.hash.slice(0, 16)}…` +
          `${previous === undefined ? " (first checkpoint)" : `, still holds the checkpoint at event ${previous.sequence}`}\n` +
          `checkpoint recorded in ${checkpointFile}\n`,
      );
    }
    return ExitCode.ok;
  } catch (error) {
    io.stderr(`cloister audit: ${(error as Error).message}\n`);
    return ExitCode.rejected;
  }
}
