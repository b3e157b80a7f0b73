// `cloister keys rotate | reencrypt`: rotates a tenant's data key (or with --system the platform's own key) at
// the key broker and has the platform re-encrypt the records under the new version, batch by batch, while it
// keeps serving. With --retire, the older versions are destroyed at the broker once nothing is sealed under them.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { requestJson } from "@cloister/enclave";
import { ExitCode, type CliIo, parseCommandLine } from "./cli-io.js";
import { adminPassword, readRunningStack, signInAtPlatform } from "./platform-admin.js";

export const keysUsage = `Usage: cloister keys rotate|reencrypt [--system] [--data-dir DIR] [--email EMAIL] [--batch N] [--retire [--approvals FILE]] [--json]

rotate      adds a new version of the signed-in admin's tenant data key (tenant-<id>) at the key broker, then
            re-encrypts every record of the tenant under it; refused while an earlier rotation is unfinished
reencrypt   re-encrypts what is still sealed under older versions (to finish an interrupted rotation)
--system    the platform's own key (platform-system: accounts, the system audit trail, the job queue)
            instead of the tenant's; restart the platform replicas before --retire (docs/runbook.md)
--retire    afterwards, destroys the older versions at the key broker (only when nothing is left under them)
--approvals FILE  approvals to send with each destruction, one per line, when the key broker has policy
            approvers (\`cloister approvals approve --key NAME --destroy-version N\`, by a quorum of them)
--batch N   records per request to the platform (default 200; tenant keys)

The stack is read from DIR/stack.json (default .cloister). The admin's password comes from
CLOISTER_ADMIN_PASSWORD, or for the demo admin from DIR/demo-credentials.json; the key broker's admin token
from CLOISTER_KEY_BROKER_ADMIN_TOKEN, or DIR/key-broker-admin-token.
Exit codes: 0 done, 1 refused or failed (re-run: every step can be repeated), 2 usage.`;

interface Progress {
  readonly tenant: string;
  readonly generation: number;
  readonly resealed: number;
  readonly remaining: number;
}

export async function runKeys(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      "data-dir": { type: "string", default: ".cloister" },
      email: { type: "string", default: "admin@demo.hospital" },
      batch: { type: "string", default: "200" },
      retire: { type: "boolean" },
      approvals: { type: "string" },
      system: { type: "boolean" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    keysUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  const action = positionals[0];
  const batch = Number(values.batch);
  if (
    (action !== "rotate" && action !== "reencrypt") ||
    positionals.length !== 1 ||
    !Number.isInteger(batch) ||
    batch < 1 ||
    batch > 1000
  ) {
    io.stderr(`${keysUsage}\n`);
    return ExitCode.usage;
  }
  const dataDirectory = resolve(values["data-dir"]);
  let stack;
  let password;
  let brokerToken = process.env.CLOISTER_KEY_BROKER_ADMIN_TOKEN;
  try {
    stack = readRunningStack(dataDirectory, "keys");
    password = adminPassword(dataDirectory, values.email, "CLOISTER_ADMIN_PASSWORD");
    const tokenFile = join(dataDirectory, "key-broker-admin-token");
    brokerToken ??= existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : undefined;
    if (brokerToken === undefined) {
      throw new Error("set CLOISTER_KEY_BROKER_ADMIN_TOKEN to the key broker's admin token");
    }
  } catch (error) {
    io.stderr(`cloister keys: ${(error as Error).message}\n`);
    return ExitCode.usage;
  }
  const say = (text: string): void => {
    if (values.json !== true) {
      io.stdout(`${text}\n`);
    }
  };
  try {
    const session = await signInAtPlatform(stack, values.email, password);
    if ("refused" in session) {
      io.stderr(`cloister keys: sign-in refused (HTTP ${session.refused})\n`);
      return ExitCode.rejected;
    }
    const system = values.system === true;
    const reencryptTenant = async (limit: number): Promise<Progress> => {
      const answer = await requestJson(
        "POST",
        new URL("/admin/reencrypt", stack.platform),
        { limit },
        session,
      );
      const body = answer.body as Partial<Progress> & { code?: string };
      if (answer.status !== 200 || body.tenant === undefined) {
        throw new Error(
          `the platform refused to re-encrypt (HTTP ${answer.status}, ${body.code ?? "no code"})`,
        );
      }
      return body as Progress;
    };
    // The platform's own records: one call moves every batch this replica can; what another replica is
    // moving meanwhile is waited for, a second at a time, for up to a minute.
    let waitedForOthers = 0;
    const reencryptSystem = async (): Promise<Progress> => {
      const answer = await requestJson(
        "POST",
        new URL("/admin/system/reencrypt", stack.platform),
        {},
        session,
      );
      const body = answer.body as Partial<Progress> & { code?: string };
      if (answer.status !== 200 || body.generation === undefined) {
        throw new Error(
          `the platform refused to re-encrypt its own records (HTTP ${answer.status}, ${body.code ?? "no code"})`,
        );
      }
      if ((body.remaining ?? 0) > 0 && body.resealed === 0) {
        if (++waitedForOthers > 60) {
          throw new Error(`${body.remaining} system records are still being re-encrypted by another replica`);
        }
        await new Promise((resolveWait) => setTimeout(resolveWait, 1000));
      }
      return { tenant: "_system", ...body } as Progress;
    };
    const reencrypt = (limit: number): Promise<Progress> =>
      system ? reencryptSystem() : reencryptTenant(limit);
    const broker = { ca: session.ca, headers: { authorization: `Bearer ${brokerToken}` } };
    // Every approval given is sent with each destruction; the broker counts those naming that version.
    const approvals =
      values.approvals === undefined
        ? []
        : readFileSync(values.approvals, "utf8")
            .split("\n")
            .map((line) => line.trim())
            .filter((line) => line.length > 0 && !line.startsWith("#"));
    // The first batch also says which tenant this admin's is, and whether an earlier rotation is unfinished.
    let progress = await reencrypt(batch);
    const keyName = system ? "platform-system" : `tenant-${progress.tenant}`;
    const owner = system ? "the platform's own records" : `tenant ${progress.tenant}`;
    let resealed = progress.resealed;
    if (action === "rotate") {
      if (progress.remaining > 0) {
        io.stderr(
          `cloister keys: ${progress.remaining} records of ${owner} are still sealed under an ` +
            `older key version; finish that first with \`cloister keys reencrypt${system ? " --system" : ""}\`\n`,
        );
        return ExitCode.rejected;
      }
      const rotated = await requestJson(
        "POST",
        new URL(`/keys/${keyName}/rotate`, stack.keyBroker),
        {},
        broker,
      );
      if (rotated.status !== 201) {
        throw new Error(`the key broker refused to rotate ${keyName} (HTTP ${rotated.status})`);
      }
      say(`${keyName}: version ${(rotated.body as { version: number }).version} created at the key broker`);
      progress = await reencrypt(batch);
      resealed = progress.resealed;
    }
    while (progress.remaining > 0) {
      say(`  re-encrypted ${resealed} records, ${progress.remaining} to go`);
      progress = await reencrypt(batch);
      resealed += progress.resealed;
    }
    say(
      `${owner}: every record is sealed under key version ${progress.generation} ` +
        `(${resealed} re-encrypted by this run)`,
    );
    if (system && action === "rotate" && values.retire !== true) {
      say(
        "  restart the platform replicas (roll the Deployment) so the job queue and sign-in limits use the new " +
          "version too, then run `cloister keys reencrypt --system --retire`",
      );
    }
    const retired: number[] = [];
    if (values.retire === true) {
      const shown = await requestJson("GET", new URL(`/keys/${keyName}`, stack.keyBroker), undefined, broker);
      const versions = ((shown.body as { versions?: { version: number }[] }).versions ?? []).map(
        (entry) => entry.version,
      );
      for (const version of versions.filter((entry) => entry < progress.generation)) {
        const destroyed = await requestJson(
          "DELETE",
          new URL(`/keys/${keyName}/${version}`, stack.keyBroker),
          undefined,
          approvals.length === 0
            ? broker
            : { ...broker, headers: { ...broker.headers, "cloister-approvals": approvals.join(",") } },
        );
        if (destroyed.status !== 200) {
          const code = (destroyed.body as { error?: { code?: string } } | undefined)?.error?.code;
          throw new Error(
            `the key broker refused to destroy ${keyName} version ${version} (HTTP ${destroyed.status}${code === undefined ? "" : `, ${code}`})` +
              (code === "ERR_APPROVAL_REQUIRED"
                ? `: have a quorum of policy approvers approve it (cloister approvals approve --key ${keyName} --destroy-version ${version}) and give --approvals FILE`
                : ""),
          );
        }
        retired.push(version);
        say(`${keyName}: version ${version} destroyed at the key broker`);
      }
    }
    if (values.json === true) {
      io.stdout(
        `${JSON.stringify({ tenant: progress.tenant, key: keyName, generation: progress.generation, resealed, retired })}\n`,
      );
    }
    return ExitCode.ok;
  } catch (error) {
    io.stderr(`cloister keys: ${(error as Error).message}\n`);
    return ExitCode.rejected;
  }
}
