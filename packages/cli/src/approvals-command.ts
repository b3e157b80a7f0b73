// `cloister approvals approver-key | approve`: the two-person rule for key broker changes. Each policy approver
// makes a key pair once (the public key goes into the key broker's measured approvers file), then, on their own
// machine, approves a change they have read: a key's creation with its release policy, a policy's replacement,
// or a version's destruction. The admin sends the approvals with the change (`Cloister-Approvals`).
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { approveKeyChange, approverId, policyDigest, type KeyChange } from "@cloister/enclave";
import {
  ExitCode,
  parseCommandLine,
  requiredOption,
  UsageError,
  writeNewKeyPair,
  type CliIo,
} from "./cli-io.js";

type Jwk = Parameters<typeof approverId>[0];

export const approvalsUsage = `Usage: cloister approvals <approver-key|approve> [options]

approver-key --out FILE     makes a policy approver's key pair (EC P-384): the private key to FILE (mode 600,
                            keep it on the approver's machine), the public key to standard output, for the key
                            broker's approvers file (CLOISTER_POLICY_APPROVERS_FILE)
approve --approver FILE --key NAME (--create --policy FILE | --set-policy --policy FILE | --destroy-version N)
        [--valid-hours H]   prints this approver's approval of that one change (valid H hours, default 24, at
                            most 168); it names the policy's SHA-256 (canonical JSON), printed to standard error
                            so the approver can compare it with what they were asked to approve

The admin sends the approvals of a quorum of approvers with the change, comma-separated in the
Cloister-Approvals header; \`cloister keys rotate --retire --approvals FILE\` sends those in FILE (one per line).
Exit codes: 0 done, 1 refused or failed, 2 usage.`;

export async function runApprovals(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      out: { type: "string" },
      approver: { type: "string" },
      key: { type: "string" },
      create: { type: "boolean" },
      "set-policy": { type: "boolean" },
      "destroy-version": { type: "string" },
      policy: { type: "string" },
      "valid-hours": { type: "string", default: "24" },
      help: { type: "boolean", short: "h" },
    },
    approvalsUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  try {
    if (positionals.length !== 1) {
      throw new UsageError(approvalsUsage);
    }
    switch (positionals[0]) {
      case "approver-key": {
        const publicJwk = writeNewKeyPair(resolve(requiredOption(values, "out")), "an approver key") as Jwk;
        io.stdout(`${JSON.stringify({ ...publicJwk, kid: await approverId(publicJwk) })}\n`);
        return ExitCode.ok;
      }
      case "approve": {
        const key = requiredOption(values, "key");
        const chosen = [
          values.create === true,
          values["set-policy"] === true,
          values["destroy-version"] !== undefined,
        ];
        if (chosen.filter(Boolean).length !== 1) {
          throw new UsageError("give one of --create, --set-policy or --destroy-version N");
        }
        let change: KeyChange;
        if (values["destroy-version"] === undefined) {
          const policy = JSON.parse(readFileSync(requiredOption(values, "policy"), "utf8")) as unknown;
          change = { action: values.create === true ? "create" : "set-policy", key, policy };
          io.stderr(`policy SHA-256 (canonical JSON): ${policyDigest(policy)}\n`);
        } else {
          const version = Number(values["destroy-version"]);
          if (!Number.isInteger(version) || version < 1) {
            throw new UsageError("--destroy-version is a version number");
          }
          change = { action: "destroy-version", key, version };
        }
        const hours = Number(values["valid-hours"]);
        if (!Number.isFinite(hours) || hours <= 0 || hours > 168) {
          throw new UsageError("--valid-hours is more than 0 and at most 168");
        }
        const approverKey = JSON.parse(readFileSync(requiredOption(values, "approver"), "utf8")) as Jwk;
        io.stdout(
          `${await approveKeyChange(change, approverKey, { validSeconds: Math.round(hours * 3600) })}\n`,
        );
        return ExitCode.ok;
      }
      default:
        throw new UsageError(approvalsUsage);
    }
  } catch (error) {
    io.stderr(`cloister approvals: ${(error as Error).message}\n`);
    return error instanceof UsageError || error instanceof SyntaxError ? ExitCode.usage : ExitCode.rejected;
  }
}
