// `cloister verify-quote <file> [--collateral <bundle.json>] [--vcek <der|pem>] [--chain <pem>]
//  [--at <ISO-8601>] [--skip-tcb] [--json]`
import { readFileSync } from "node:fs";
import {
  AttestationError,
  verifyQuote,
  verifySnpReport,
  type CollateralBundle,
  type VerifiedEvidence,
} from "@cloister/attestation";
import { ExitCode, parseCommandLine, UsageError, type CliIo } from "./cli-io.js";

export const verifyQuoteUsage = `Usage: cloister verify-quote <file> [--collateral <bundle.json>] [--vcek <der|pem>] [--chain <pem>]
                             [--at <ISO-8601>] [--skip-tcb] [--json]

Verifies an Intel SGX or TDX quote (with Intel collateral) or an AMD SEV-SNP report (with its VCEK and
the ASK/ARK chain). The kind of evidence is detected from the bytes. Exit code 0: accepted, 1: rejected,
2: usage error.`;

export type EvidenceKind = "sgx-or-tdx" | "sevsnp";

/** Detects the evidence kind; an OpenEnclave report's 16-byte header is stripped. */
export function detectEvidence(bytes: Uint8Array): { kind: EvidenceKind; evidence: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (
    bytes.length > 16 &&
    view.getUint32(0, true) === 1 &&
    view.getUint32(4, true) === 2 &&
    view.getBigUint64(8, true) === BigInt(bytes.length - 16)
  ) {
    return detectEvidence(bytes.subarray(16));
  }
  const snpVersion = bytes.length === 0x4a0 ? view.getUint32(0, true) : 0;
  if ((snpVersion === 2 || snpVersion === 3) && view.getUint32(0x34, true) === 1) {
    return { kind: "sevsnp", evidence: bytes };
  }
  return { kind: "sgx-or-tdx", evidence: bytes };
}

/** The TEE named by an Intel quote header (offset 4, TEE type), for reporting rejected quotes. */
function teeOfQuoteHeader(bytes: Uint8Array | undefined): "sgx" | "tdx" | null {
  if (bytes === undefined || bytes.length < 8) {
    return null;
  }
  const teeType = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
  return teeType === 0 ? "sgx" : teeType === 0x81 ? "tdx" : null;
}

const teeNames = { sgx: "SGX", tdx: "TDX", sevsnp: "SEV-SNP" } as const;

interface JsonResult {
  readonly ok: boolean;
  readonly tee: VerifiedEvidence["tee"] | null;
  readonly tcbStatus: string | null;
  readonly advisoryIds: readonly string[];
  readonly claims: Record<string, unknown>;
  readonly error: { readonly code: string; readonly message: string } | null;
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    throw new UsageError(`cannot read ${what} ${JSON.stringify(path)}`);
  }
}

export function runVerifyQuote(argv: readonly string[], io: CliIo): number {
  const parsed = parseCommandLine(
    argv,
    {
      collateral: { type: "string" },
      vcek: { type: "string" },
      chain: { type: "string" },
      at: { type: "string" },
      "skip-tcb": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    verifyQuoteUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  let kind: EvidenceKind | undefined;
  let argvEvidence: Uint8Array | undefined;
  let result: JsonResult;
  try {
    if (positionals.length !== 1 || positionals[0] === undefined) {
      throw new UsageError("verify-quote takes exactly one evidence file");
    }
    const now = values.at === undefined ? new Date() : new Date(values.at);
    if (Number.isNaN(now.getTime())) {
      throw new UsageError(`--at ${JSON.stringify(values.at)} is not an ISO-8601 time`);
    }
    const detected = detectEvidence(new Uint8Array(readFile(positionals[0], "evidence file")));
    argvEvidence = detected.evidence;
    kind = values.vcek !== undefined ? "sevsnp" : detected.kind;
    let evidence: VerifiedEvidence;
    if (kind === "sevsnp") {
      if (values.vcek === undefined || values.chain === undefined) {
        throw new UsageError("an SEV-SNP report needs --vcek and --chain");
      }
      evidence = verifySnpReport(detected.evidence, {
        vcek: new Uint8Array(readFile(values.vcek, "VCEK")),
        chain: readFile(values.chain, "chain").toString("utf8"),
        now,
      });
    } else {
      let collateral: CollateralBundle | undefined;
      if (values.collateral !== undefined) {
        try {
          collateral = JSON.parse(
            readFile(values.collateral, "collateral").toString("utf8"),
          ) as CollateralBundle;
        } catch (error) {
          if (error instanceof UsageError) {
            throw error;
          }
          throw new UsageError(`collateral ${JSON.stringify(values.collateral)} is not JSON`);
        }
      } else if (!values["skip-tcb"]) {
        throw new UsageError("an Intel quote needs --collateral (or --skip-tcb)");
      }
      evidence = verifyQuote(detected.evidence, {
        ...(collateral === undefined ? {} : { collateral }),
        now,
        skipTcb: values["skip-tcb"],
      });
    }
    result = {
      ok: true,
      tee: evidence.tee,
      tcbStatus: evidence.tcbStatus,
      advisoryIds: evidence.advisoryIds,
      claims: evidence.claims,
      error: null,
    };
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`cloister verify-quote: ${error.message}\n\n${verifyQuoteUsage}\n`);
      return ExitCode.usage;
    }
    const typed =
      error instanceof AttestationError
        ? error
        : new AttestationError("ERR_QUOTE_FORMAT", "the evidence could not be processed");
    result = {
      ok: false,
      tee: kind === "sevsnp" ? "sevsnp" : teeOfQuoteHeader(argvEvidence),
      tcbStatus: null,
      advisoryIds: [],
      claims: {},
      error: { code: typed.code, message: typed.message },
    };
  }
  if (values.json) {
    io.stdout(`${JSON.stringify(result, null, 2)}\n`);
  } else if (result.ok) {
    io.stdout(
      `accepted: ${teeNames[result.tee ?? "sgx"]} evidence, TCB status ${String(result.tcbStatus)}` +
        (result.advisoryIds.length > 0 ? `, advisories ${result.advisoryIds.join(", ")}` : "") +
        "\n",
    );
  } else {
    io.stdout(`rejected: ${result.error?.code ?? ""}: ${result.error?.message ?? ""}\n`);
  }
  return result.ok ? ExitCode.ok : ExitCode.rejected;
}
