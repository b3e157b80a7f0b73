export { runCli, usage } from "./run-cli.js";
export { runVerifyQuote, detectEvidence, verifyQuoteUsage } from "./verify-quote-command.js";
export { runUp, upUsage, type StackDescription } from "./up-command.js";
export { ExitCode, type CliIo } from "./cli-io.js";
export { runAudit, auditUsage } from "./audit-command.js";
export { runMeasure, measureUsage } from "./measure-command.js";
