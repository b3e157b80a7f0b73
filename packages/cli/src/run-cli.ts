import { runAccounts } from "./accounts-command.js";
import { runApprovals } from "./approvals-command.js";
import { runAudit } from "./audit-command.js";
import { runBackup } from "./backup-command.js";
import { ExitCode, type CliIo } from "./cli-io.js";
import { runKeys } from "./keys-command.js";
import { runMeasure } from "./measure-command.js";
import { runModels } from "./models-command.js";
import { runPolicy } from "./policy-command.js";
import { runRecovery } from "./recovery-command.js";
import { runUp } from "./up-command.js";
import { runVerifyQuote } from "./verify-quote-command.js";

export const usage = `Usage: cloister <command> [options]

Commands:
  up              run the local platform in simulation mode
  verify-quote    verify an SGX or TDX quote, or an SEV-SNP report
  models          evaluate a committed diagnostics model on a MedMNIST .npz
  measure         print each service's measurement (SHA-256 of its built code)
  audit verify    verify the running platform's audit chain against the last recorded checkpoint
  keys rotate     rotate a tenant's data key and re-encrypt its records without downtime
  accounts        list staff accounts, disable leavers, enable, unlock or change a role
  backup          back up the embedded record store while the platform runs
  recovery        back up the key broker's keys to custodians, and restore them on another node
  approvals       approve a key broker change as one of its policy approvers (the two-person rule)
  policy sign     sign an attestation policy (MAA envelope) for the attestation service

Run "cloister <command> --help" for a command's options.`;

/** Runs one `cloister` command and returns its exit code (a promise for commands that run models). */
export function runCli(argv: readonly string[], io: CliIo): number | Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "verify-quote":
      return runVerifyQuote(rest, io);
    case "models":
      return runModels(rest, io);
    case "up":
      return runUp(rest, io);
    case "measure":
      return runMeasure(rest, io);
    case "audit":
      return runAudit(rest, io);
    case "keys":
      return runKeys(rest, io);
    case "accounts":
      return runAccounts(rest, io);
    case "backup":
      return runBackup(rest, io);
    case "recovery":
      return runRecovery(rest, io);
    case "approvals":
      return runApprovals(rest, io);
    case "policy":
      return runPolicy(rest, io);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      io.stdout(`${usage}\n`);
      return command === undefined ? ExitCode.usage : ExitCode.ok;
    default:
      io.stderr(`cloister: unknown command ${JSON.stringify(command)}\n\n${usage}\n`);
      return ExitCode.usage;
  }
}
