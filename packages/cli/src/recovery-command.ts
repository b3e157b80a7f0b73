// `cloister recovery`: the key broker's keys across the loss of its node (see @cloister/enclave's
// key-recovery.ts). Custodians make their keys once; the operator keeps the backups off the node; after a loss
// the operator starts a restore into a fresh broker and each custodian, on their own machine, verifies that
// broker's evidence and hands it their share. No one holds more than their own share.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  parseRecoveryBackup,
  recoveryCustodianId,
  requestJson,
  submitRecoveryShare,
} from "@cloister/enclave";
import {
  ExitCode,
  parseCommandLine,
  requiredOption,
  UsageError,
  writeNewKeyPair,
  type CliIo,
} from "./cli-io.js";

/** A JWK, as the recovery functions take it. */
type Jwk = Parameters<typeof recoveryCustodianId>[0];

export const recoveryUsage = `Usage: cloister recovery <custodian-key|backup|begin|share> [options]

custodian-key --out FILE   makes a custodian's key pair (EC P-384): the private key to FILE (mode 600, keep it
                           offline), the public key to standard output, for the key broker's custodians file
backup --out FILE          saves the key broker's latest recovery backup (ciphertext only; keep copies off the node)
begin --backup FILE        starts restoring FILE into a key broker with an empty store (after a lost node)
share --backup FILE --key FILE [--measurement HEX,...] [--allow-simulation]
                           verifies the restoring key broker's evidence with the attestation service (its
                           measurement, not debuggable, the restore bound in it), then hands it this custodian's
                           share, sealed to the key the broker made in its TEE; the restore completes at the quorum

Where: --broker URL, --attestation URL (also the issuer unless --issuer URL), --ca FILE; by default those of
the local stack in DIR/stack.json (--data-dir, default .cloister), whose key broker's measurement is then the
expected one. --allow-simulation accepts a simulated (and so debuggable) TEE: the local stack only.
The admin token (backup, begin): CLOISTER_KEY_BROKER_ADMIN_TOKEN, or DIR/key-broker-admin-token.
Exit codes: 0 done, 1 refused or failed, 2 usage.`;

interface Endpoints {
  readonly broker: string;
  readonly attestation: string;
  readonly issuer: string;
  readonly ca: string | undefined;
  readonly measurements: readonly string[];
}

function endpoints(values: Record<string, string | boolean | undefined>, dataDirectory: string): Endpoints {
  const stackFile = join(dataDirectory, "stack.json");
  const stack = existsSync(stackFile)
    ? (JSON.parse(readFileSync(stackFile, "utf8")) as {
        keyBroker?: string;
        attestation?: string;
        caCert?: string;
        measurements?: Record<string, string>;
      })
    : {};
  const text = (name: string): string | undefined =>
    typeof values[name] === "string" ? values[name] : undefined;
  const broker = text("broker") ?? stack.keyBroker;
  const attestation = text("attestation") ?? stack.attestation;
  if (broker === undefined || attestation === undefined) {
    throw new UsageError(`give --broker and --attestation, or run it next to \`cloister up\` (${stackFile})`);
  }
  const caFile = text("ca") ?? stack.caCert;
  const measurement = text("measurement") ?? stack.measurements?.["key-broker"];
  return {
    broker,
    attestation,
    issuer: text("issuer") ?? attestation,
    ca: caFile === undefined ? undefined : readFileSync(caFile, "utf8"),
    measurements: measurement === undefined ? [] : measurement.split(","),
  };
}

function adminToken(dataDirectory: string): string {
  const tokenFile = join(dataDirectory, "key-broker-admin-token");
  const token =
    process.env.CLOISTER_KEY_BROKER_ADMIN_TOKEN ??
    (existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : undefined);
  if (token === undefined) {
    throw new UsageError("set CLOISTER_KEY_BROKER_ADMIN_TOKEN to the key broker's admin token");
  }
  return token;
}

export async function runRecovery(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      "data-dir": { type: "string", default: ".cloister" },
      out: { type: "string" },
      backup: { type: "string" },
      key: { type: "string" },
      measurement: { type: "string" },
      broker: { type: "string" },
      attestation: { type: "string" },
      issuer: { type: "string" },
      ca: { type: "string" },
      "allow-simulation": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    recoveryUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  const action = positionals[0];
  const dataDirectory = resolve(values["data-dir"]);
  try {
    if (positionals.length !== 1) {
      throw new UsageError(recoveryUsage);
    }
    switch (action) {
      case "custodian-key": {
        const publicJwk = writeNewKeyPair(resolve(requiredOption(values, "out")), "a custodian key") as Jwk;
        io.stdout(`${JSON.stringify({ ...publicJwk, kid: await recoveryCustodianId(publicJwk) })}\n`);
        return ExitCode.ok;
      }
      case "backup": {
        const out = resolve(requiredOption(values, "out"));
        const where = endpoints(values, dataDirectory);
        const answer = await requestJson("GET", new URL("/recovery/backup", where.broker), undefined, {
          ...(where.ca === undefined ? {} : { ca: where.ca }),
          headers: { authorization: `Bearer ${adminToken(dataDirectory)}` },
        });
        if (answer.status !== 200) {
          io.stderr(`cloister recovery: the key broker gave no backup (${problemCode(answer)})\n`);
          return ExitCode.rejected;
        }
        const backup = parseRecoveryBackup(answer.body);
        writeFileSync(out, `${JSON.stringify(backup)}\n`, { mode: 0o600 });
        io.stdout(
          `backup of ${backup.createdAt} written to ${out}: ${backup.quorum} of ${backup.shares.length} custodians restore it\n`,
        );
        return ExitCode.ok;
      }
      case "begin": {
        const backup = parseRecoveryBackup(
          JSON.parse(readFileSync(requiredOption(values, "backup"), "utf8")),
        );
        const where = endpoints(values, dataDirectory);
        const answer = await requestJson(
          "POST",
          new URL("/recovery", where.broker),
          { backup },
          {
            ...(where.ca === undefined ? {} : { ca: where.ca }),
            headers: { authorization: `Bearer ${adminToken(dataDirectory)}` },
          },
        );
        if (answer.status !== 200) {
          io.stderr(`cloister recovery: the key broker refused the restore (${problemCode(answer)})\n`);
          return ExitCode.rejected;
        }
        io.stdout(
          `restore started: ${backup.quorum} of ${backup.shares.length} custodians now run \`cloister recovery share\`\n`,
        );
        return ExitCode.ok;
      }
      case "share": {
        const backup = parseRecoveryBackup(
          JSON.parse(readFileSync(requiredOption(values, "backup"), "utf8")),
        );
        const custodianKey = JSON.parse(readFileSync(requiredOption(values, "key"), "utf8")) as Jwk;
        const where = endpoints(values, dataDirectory);
        if (where.measurements.length === 0) {
          throw new UsageError("--measurement: the key broker's expected measurement (hex)");
        }
        const tls = where.ca === undefined ? {} : { ca: where.ca };
        const simulation = values["allow-simulation"] === true;
        const result = await submitRecoveryShare({
          brokerUrl: where.broker,
          ...tls,
          attestationService: { url: where.attestation, ...tls },
          expectations: {
            issuer: where.issuer,
            measurements: where.measurements,
            allowSimulation: simulation,
            allowDebug: simulation,
          },
          backup,
          custodianKey,
        });
        io.stdout(
          result.restored
            ? `share accepted: the key broker restored ${result.keys ?? 0} keys\n`
            : `share accepted: ${result.received} of ${result.quorum} shares\n`,
        );
        return ExitCode.ok;
      }
      default:
        throw new UsageError(recoveryUsage);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`${error.message}\n`);
      return ExitCode.usage;
    }
    const code = (error as { code?: unknown }).code;
    io.stderr(
      `cloister recovery: ${(error as Error).message}${typeof code === "string" ? ` (${code})` : ""}\n`,
    );
    return ExitCode.rejected;
  }
}

function problemCode(answer: { status: number; body: unknown }): string {
  const code = (answer.body as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === "string" ? code : `HTTP ${answer.status}`;
}
