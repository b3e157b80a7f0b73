// What the admin commands (`cloister audit`, `cloister keys`) share: the running stack's addresses from
// DIR/stack.json, and an admin's sign-in at the platform.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { requestJson } from "@cloister/enclave";
import { UsageError } from "./cli-io.js";

export interface RunningStack {
  readonly platform: string;
  readonly keyBroker: string;
  readonly caCert: string;
}

/** DIR/stack.json, written by `cloister up`; a UsageError when the stack is not running there. */
export function readRunningStack(dataDirectory: string, command: string): RunningStack {
  const stackFile = join(dataDirectory, "stack.json");
  if (!existsSync(stackFile)) {
    throw new UsageError(
      `cloister ${command}: ${stackFile} is missing; is \`cloister up\` running with this data directory?`,
    );
  }
  return JSON.parse(readFileSync(stackFile, "utf8")) as RunningStack;
}

/**
 * The admin's password: from the environment variable named, or for a demo account from
 * DIR/demo-credentials.json; a UsageError when neither has it.
 */
export function adminPassword(dataDirectory: string, email: string, variable: string): string {
  const given = process.env[variable];
  if (given !== undefined) {
    return given;
  }
  const credentials = join(dataDirectory, "demo-credentials.json");
  const accounts = existsSync(credentials)
    ? (JSON.parse(readFileSync(credentials, "utf8")) as { accounts: { email: string; password: string }[] })
        .accounts
    : [];
  const found = accounts.find((account) => account.email === email)?.password;
  if (found === undefined) {
    throw new UsageError(`set ${variable} to the admin's password`);
  }
  return found;
}

/** Signs in at the platform; returns the request options that carry the session, or undefined if refused. */
export async function signInAtPlatform(
  stack: RunningStack,
  email: string,
  password: string,
): Promise<{ ca: string; headers: Record<string, string> } | { refused: number }> {
  const ca = readFileSync(stack.caCert, "utf8");
  const login = await requestJson(
    "POST",
    new URL("/auth/login", stack.platform),
    { email, password },
    { ca },
  );
  const accessToken = (login.body as { accessToken?: string } | undefined)?.accessToken;
  if (login.status !== 200 || accessToken === undefined) {
    return { refused: login.status };
  }
  return { ca, headers: { authorization: `Bearer ${accessToken}` } };
}
