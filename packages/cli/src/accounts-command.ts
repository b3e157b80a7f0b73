// `cloister accounts`: a tenant admin's staff accounts from a terminal, through the platform's admin API (the
// same rules, the same audit events as the portal's "Staff accounts"): list them for an access review, disable
// the accounts of leavers (a script fed by the hospital's HR system, or after a restore, see docs/runbook.md),
// enable, unlock, or change a role. Passwords are never set here: a reset goes through the portal, which
// shows the temporary password once to the admin who hands it over.
import { resolve } from "node:path";
import { requestJson } from "@cloister/enclave";
import { ExitCode, type CliIo, parseCommandLine } from "./cli-io.js";
import { adminPassword, readRunningStack, signInAtPlatform } from "./platform-admin.js";

export const accountsUsage = `Usage: cloister accounts list [--data-dir DIR] [--email ADMIN] [--json]
       cloister accounts disable|enable|unlock STAFF_EMAIL... [--data-dir DIR] [--email ADMIN] [--json]
       cloister accounts role STAFF_EMAIL clerk|clinician|admin [--data-dir DIR] [--email ADMIN] [--json]

Staff accounts of the signed-in admin's tenant on the running platform (DIR/stack.json, default .cloister):
list        every account: email, role, status, last sign-in (an access review)
disable     ends the accounts' sessions at once and refuses their sign-ins (someone who left)
enable      lets disabled accounts sign in again
unlock      ends a lockout after failed sign-ins
role        gives an account another role (its sessions end)
Each change is the platform's own, with its rules (an admin keeps their own account; a tenant keeps an
active admin) and its audit event. Several emails are changed one by one; each line says what happened.
The admin's password is read from CLOISTER_ADMIN_PASSWORD, or for the demo admin from DIR/demo-credentials.json.
Exit codes: 0 done, 1 the platform refused a change or the sign-in (each refusal's code is printed), 2 usage.`;

/** What the platform's admin API answers for an account (GET /admin/accounts). */
interface AccountSummary {
  readonly id: string;
  readonly email: string;
  readonly role: string;
  readonly active: boolean;
  readonly locked: boolean;
  readonly passwordChangeRequired: boolean;
  readonly lastSignInAt: string | null;
  /** Wrong passwords since the last successful sign-in or lockout. */
  readonly failedSignIns?: number;
}

const roles = new Set(["clerk", "clinician", "admin"]);

/** The change each action asks the platform for (PATCH /admin/accounts/{id}). */
function changeFor(action: string, role: string | undefined): Record<string, unknown> | undefined {
  switch (action) {
    case "disable":
      return { active: false };
    case "enable":
      return { active: true };
    case "unlock":
      return { unlock: true };
    case "role":
      return role !== undefined && roles.has(role) ? { role } : undefined;
    default:
      return undefined;
  }
}

function statusOf(account: AccountSummary): string {
  return [
    account.active ? "active" : "disabled",
    ...(account.locked ? ["locked"] : []),
    ...(account.passwordChangeRequired ? ["temporary password"] : []),
    ...((account.failedSignIns ?? 0) > 0 ? [`${String(account.failedSignIns)} wrong passwords`] : []),
  ].join(", ");
}

export async function runAccounts(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      "data-dir": { type: "string", default: ".cloister" },
      email: { type: "string", default: "admin@demo.hospital" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    accountsUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  const [action = "", ...rest] = positionals;
  const staff = action === "role" ? rest.slice(0, 1) : rest;
  const change = changeFor(action, action === "role" ? rest[1] : undefined);
  const valid =
    action === "list"
      ? rest.length === 0
      : change !== undefined && staff.length > 0 && (action !== "role" || rest.length === 2);
  if (!valid) {
    io.stderr(`${accountsUsage}\n`);
    return ExitCode.usage;
  }
  const dataDirectory = resolve(values["data-dir"]);
  let stack;
  let password;
  try {
    stack = readRunningStack(dataDirectory, "accounts");
    password = adminPassword(dataDirectory, values.email, "CLOISTER_ADMIN_PASSWORD");
  } catch (error) {
    io.stderr(`cloister accounts: ${(error as Error).message}\n`);
    return ExitCode.usage;
  }
  try {
    const session = await signInAtPlatform(stack, values.email, password);
    if ("refused" in session) {
      io.stderr(`cloister accounts: sign-in refused (HTTP ${String(session.refused)})\n`);
      return ExitCode.rejected;
    }
    const listed = await requestJson("GET", new URL("/admin/accounts", stack.platform), undefined, session);
    const accounts = (listed.body as { accounts?: AccountSummary[] } | undefined)?.accounts;
    if (listed.status !== 200 || accounts === undefined) {
      const code = (listed.body as { code?: string } | undefined)?.code ?? "no code";
      io.stderr(`cloister accounts: the platform refused (HTTP ${String(listed.status)}, ${code})\n`);
      return ExitCode.rejected;
    }
    if (action === "list") {
      if (values.json === true) {
        io.stdout(`${JSON.stringify(accounts)}\n`);
      } else {
        for (const account of accounts) {
          io.stdout(
            `${account.email}\t${account.role}\t${statusOf(account)}\t` +
              `last sign-in ${account.lastSignInAt ?? "never"}\n`,
          );
        }
      }
      return ExitCode.ok;
    }
    // One by one, so a refusal (an unknown email, the last admin) stops nothing else; each is reported.
    const results: { email: string; ok: boolean; code?: string; account?: AccountSummary }[] = [];
    for (const email of staff) {
      const account = accounts.find((entry) => entry.email === email.trim().toLowerCase());
      if (account === undefined) {
        results.push({ email, ok: false, code: "ERR_NOT_FOUND" });
        continue;
      }
      const answer = await requestJson(
        "PATCH",
        new URL(`/admin/accounts/${encodeURIComponent(account.id)}`, stack.platform),
        change,
        session,
      );
      results.push(
        answer.status === 200
          ? { email, ok: true, account: answer.body as AccountSummary }
          : { email, ok: false, code: (answer.body as { code?: string } | undefined)?.code ?? "no code" },
      );
    }
    if (values.json === true) {
      io.stdout(`${JSON.stringify(results)}\n`);
    } else {
      for (const result of results) {
        io.stdout(
          result.account !== undefined
            ? `${result.email}: ${result.account.role}, ${statusOf(result.account)}\n`
            : `${result.email}: refused (${result.code ?? "no code"})\n`,
        );
      }
    }
    return results.every((result) => result.ok) ? ExitCode.ok : ExitCode.rejected;
  } catch (error) {
    io.stderr(`cloister accounts: ${(error as Error).message}\n`);
    return ExitCode.rejected;
  }
}
