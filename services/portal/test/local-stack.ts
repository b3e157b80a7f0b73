// Runs `cloister up` as the newcomer does (the built CLI, its own processes, a fresh data directory) for the
// end-to-end tests, and gives them TLS requests trusted by the stack's dev CA.
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { StackDescription } from "@cloister/cli";
import {
  approveKeyChange,
  requestBytes,
  requestJson,
  type JsonResponse,
  type KeyChange,
} from "@cloister/enclave";

export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** DIR/stack.json, as `cloister up` writes it. */
export type StackJson = StackDescription;

export interface RunningStack {
  readonly process: ChildProcess;
  readonly dataDirectory: string;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly stack: () => StackJson;
  /** Seconds `cloister up` reported until ready. */
  readonly readySeconds: number;
  /** Ctrl-C: resolves with the exit code. */
  readonly stop: () => Promise<number | null>;
}

/** A base port whose five successors are free. */
export async function freePortBase(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const free = await Promise.all(
      [0, 1, 2, 3, 4].map(
        (offset) =>
          new Promise<boolean>((resolveFree) => {
            const server = createServer();
            server.once("error", () => {
              resolveFree(false);
            });
            server.listen(base + offset, "127.0.0.1", () =>
              server.close(() => {
                resolveFree(true);
              }),
            );
          }),
      ),
    );
    if (free.every(Boolean)) {
      return base;
    }
  }
  throw new Error("no five free ports in a row");
}

export async function startLocalStack(
  dataDirectory: string,
  portBase: number,
  env: Record<string, string> = {},
  timeoutMs = 60_000,
  extraArguments: readonly string[] = [],
): Promise<RunningStack> {
  const child = spawn(
    process.execPath,
    [
      join(repositoryRoot, "packages/cli/dist/bin.js"),
      "up",
      "--data-dir",
      dataDirectory,
      "--port-base",
      String(portBase),
      ...extraArguments,
    ],
    { cwd: repositoryRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolveExit) =>
    child.once("exit", (code) => {
      resolveExit(code);
    }),
  );
  const deadline = Date.now() + timeoutMs;
  while (!/Cloister is up/.test(stdout)) {
    if (child.exitCode !== null) {
      throw new Error(`cloister up exited ${child.exitCode}: ${stderr}`);
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`cloister up was not ready after ${timeoutMs} ms: ${stdout}${stderr}`);
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
  const readySeconds = Number(/simulation mode, ([\d.]+) s\)/.exec(stdout)?.[1] ?? Number.NaN);
  return {
    process: child,
    dataDirectory,
    stdout: () => stdout,
    stderr: () => stderr,
    stack: () => JSON.parse(readFileSync(join(dataDirectory, "stack.json"), "utf8")) as StackJson,
    readySeconds,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGINT");
      }
      return exited;
    },
  };
}

/**
 * What a test session handed out and got back, for the end-of-session secrets scan: every access token a
 * sign-in returned, and the body of every answer that was not a success (error bodies must not echo
 * secrets or PHI either).
 */
/**
 * Approvals of a key broker change by two of the local stack's three demo policy approvers (what two people
 * would each make with `cloister approvals approve`), comma-separated for the Cloister-Approvals header.
 */
export async function demoApprovals(dataDirectory: string, change: KeyChange): Promise<string> {
  const approvals = await Promise.all(
    [1, 2].map(async (approver) =>
      approveKeyChange(
        change,
        JSON.parse(
          readFileSync(join(dataDirectory, "approvers", `approver-${approver}.jwk`), "utf8"),
        ) as Parameters<typeof approveKeyChange>[1],
      ),
    ),
  );
  return approvals.join(",");
}

export const sessionLedger = { accessTokens: new Set<string>(), errorBodies: [] as string[] };

/** JSON over TLS to a stack service, trusting only its dev CA. */
export async function stackRequest(
  stack: StackJson,
  method: "GET" | "POST" | "PUT",
  url: string,
  body?: unknown,
  accessToken?: string,
): Promise<JsonResponse> {
  const response = await requestJson(method, url, body, {
    ca: readFileSync(stack.caCert, "utf8"),
    timeoutMs: 15_000,
    ...(accessToken === undefined ? {} : { headers: { authorization: `Bearer ${accessToken}` } }),
  });
  if (response.status >= 400) {
    sessionLedger.errorBodies.push(JSON.stringify(response.body));
  }
  return response;
}

export async function signIn(stack: StackJson, email: string, password: string): Promise<string> {
  const response = await stackRequest(stack, "POST", `${stack.platform}/auth/login`, { email, password });
  const token = (response.body as { accessToken?: string } | undefined)?.accessToken;
  if (response.status !== 200 || token === undefined) {
    throw new Error(`sign-in failed: HTTP ${response.status}`);
  }
  sessionLedger.accessTokens.add(token);
  return token;
}

/**
 * The secrets scan at the end of a stack session: every service log (restarts included), what `cloister up`
 * printed, every service's /metrics now, and every error body the session received, searched for each
 * secret and sentinel the session used. Returns "<where> holds <which>" findings (empty when clean).
 */
export async function scanStackSession(
  running: RunningStack,
  secrets: Readonly<Record<string, string>>,
  extraHaystacks: Readonly<Record<string, string>> = {},
): Promise<string[]> {
  const stack = running.stack();
  const logs = join(running.dataDirectory, "logs");
  const haystacks: Record<string, string> = {
    ...Object.fromEntries(
      readdirSync(logs).map((name) => [`logs/${name}`, readFileSync(join(logs, name), "utf8")]),
    ),
    "cloister up stdout": running.stdout(),
    "cloister up stderr": running.stderr(),
    "error bodies": sessionLedger.errorBodies.join("\n"),
    ...extraHaystacks,
  };
  for (const [name, url] of Object.entries({
    attestation: stack.attestation,
    keyBroker: stack.keyBroker,
    inference: stack.inference,
    platform: stack.platform,
  })) {
    const response = await requestBytes("GET", `${url}/metrics`, undefined, {
      ca: readFileSync(stack.caCert, "utf8"),
    });
    haystacks[`${name} /metrics`] = Buffer.from(response.body).toString("utf8");
  }
  const needles: Record<string, string> = {
    ...secrets,
    "the key broker's admin token": readFileSync(
      join(running.dataDirectory, "key-broker-admin-token"),
      "utf8",
    ).trim(),
  };
  [...sessionLedger.accessTokens].forEach((token, index) => {
    // A JWT's signature is what makes it a credential; its header alone is common to all of them.
    needles[`access token ${index + 1}`] = token.split(".")[2] ?? token;
  });
  const findings: string[] = [];
  for (const [where, text] of Object.entries(haystacks)) {
    for (const [which, needle] of Object.entries(needles)) {
      if (needle.length >= 8 && text.includes(needle)) {
        findings.push(`${where} holds ${which}`);
      }
    }
  }
  return findings;
}
