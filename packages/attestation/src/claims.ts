// MAA claim sets, computed as Microsoft Azure Attestation computes them (checked against the recorded
// MAA token in ../shared/attestation-vectors/maa-sgx-2022). Hex is lowercase, SVNs are numbers.
import { createHash } from "node:crypto";
import { AttestationError } from "./errors.js";
import { bytesEqual, isAllZero, toHex } from "./lib/bytes.js";
import type { EnclaveReport, TdReport } from "./sgx/quote.js";
import type { SnpReport } from "./snp/report.js";

export type ClaimValue = string | number | boolean | null | ClaimValue[] | { [key: string]: ClaimValue };
export type Claims = Record<string, ClaimValue>;

/** SGX enclave claims (`x-ms-sgx-*`) for `POST /attest/SgxEnclave`. */
export function sgxClaims(report: EnclaveReport, collateralHashes: Record<string, string>): Claims {
  return {
    "x-ms-attestation-type": "sgx",
    "x-ms-ver": "1.0",
    "x-ms-sgx-is-debuggable": ((report.attributes[0] ?? 0) & 0x02) !== 0,
    "x-ms-sgx-mrenclave": toHex(report.mrEnclave),
    "x-ms-sgx-mrsigner": toHex(report.mrSigner),
    "x-ms-sgx-product-id": report.isvProdId,
    "x-ms-sgx-svn": report.isvSvn,
    "x-ms-sgx-report-data": toHex(report.reportData),
    "x-ms-sgx-collateral": { ...collateralHashes },
  };
}

function bit(bytes: Uint8Array, index: number): boolean {
  return (((bytes[index >> 3] ?? 0) >> (index & 7)) & 1) === 1;
}

/** TDX claims after MAA's TDX EAT profile (`https://aka.ms/maa-eat-profile-tdxvm`). */
export function tdxClaims(report: TdReport, tcbStatus: string, advisoryIds: readonly string[]): Claims {
  const debug = bit(report.tdAttributes, 0);
  return {
    "x-ms-attestation-type": "tdxvm",
    "x-ms-ver": "1.0",
    attester_type: "TDX",
    eat_profile: "https://aka.ms/maa-eat-profile-tdxvm",
    intuse: "generic",
    dbgstat: debug ? "enabled" : "disabled",
    attester_tcb_status: tcbStatus,
    attester_advisory_ids: [...advisoryIds],
    tdx_mrseam: toHex(report.mrSeam),
    tdx_mrsignerseam: toHex(report.mrSignerSeam),
    tdx_mrtd: toHex(report.mrTd),
    tdx_mrconfigid: toHex(report.mrConfigId),
    tdx_mrowner: toHex(report.mrOwner),
    tdx_mrownerconfig: toHex(report.mrOwnerConfig),
    tdx_rtmr0: toHex(report.rtmrs[0]),
    tdx_rtmr1: toHex(report.rtmrs[1]),
    tdx_rtmr2: toHex(report.rtmrs[2]),
    tdx_rtmr3: toHex(report.rtmrs[3]),
    tdx_report_data: toHex(report.reportData),
    tdx_seam_attributes: toHex(report.seamAttributes),
    tdx_td_attributes: toHex(report.tdAttributes),
    tdx_td_attributes_debug: debug,
    tdx_td_attributes_septve_disable: bit(report.tdAttributes, 28),
    tdx_td_attributes_protection_keys: bit(report.tdAttributes, 30),
    tdx_td_attributes_key_locker: bit(report.tdAttributes, 31),
    tdx_td_attributes_perfmon: bit(report.tdAttributes, 63),
    tdx_tee_tcb_svn: toHex(report.teeTcbSvn),
    tdx_seamsvn: (report.teeTcbSvn[0] ?? 0) | ((report.teeTcbSvn[1] ?? 0) << 8),
    tdx_xfam: toHex(report.xfam),
    ...(report.mrServiceTd === undefined ? {} : { tdx_mrservicetd: toHex(report.mrServiceTd) }),
  };
}

/** SEV-SNP claims (`x-ms-sevsnpvm-*`) for `POST /attest/SevSnpVm`. */
export function snpClaims(report: SnpReport): Claims {
  return {
    "x-ms-attestation-type": "sevsnpvm",
    "x-ms-ver": "1.0",
    "x-ms-sevsnpvm-authorkeydigest": toHex(report.authorKeyDigest),
    "x-ms-sevsnpvm-bootloader-svn": report.reportedTcb.bootloader,
    "x-ms-sevsnpvm-familyId": toHex(report.familyId),
    "x-ms-sevsnpvm-guestsvn": report.guestSvn,
    "x-ms-sevsnpvm-hostdata": toHex(report.hostData),
    "x-ms-sevsnpvm-idkeydigest": toHex(report.idKeyDigest),
    "x-ms-sevsnpvm-imageId": toHex(report.imageId),
    "x-ms-sevsnpvm-is-debuggable": report.policy.debugAllowed,
    "x-ms-sevsnpvm-launchmeasurement": toHex(report.measurement),
    "x-ms-sevsnpvm-microcode-svn": report.reportedTcb.microcode,
    "x-ms-sevsnpvm-migration-allowed": report.policy.migrateMaAllowed,
    "x-ms-sevsnpvm-reportdata": toHex(report.reportData),
    "x-ms-sevsnpvm-reportid": toHex(report.reportId),
    "x-ms-sevsnpvm-smt-allowed": report.policy.smtAllowed,
    "x-ms-sevsnpvm-snpfw-svn": report.reportedTcb.snp,
    "x-ms-sevsnpvm-tee-svn": report.reportedTcb.tee,
    "x-ms-sevsnpvm-vmpl": report.vmpl,
  };
}

/**
 * Checks MAA's runtime-data binding: SHA-256(runtimeData) = reportData[0:32] and the rest is zero, or for
 * SEV-SNP (`wholeReportData`) SHA-256 fills the first 32 bytes and the other 32 are zero as well; MAA
 * accepts the same for both. Throws ERR_RUNTIME_DATA_BINDING otherwise.
 */
export function verifyRuntimeDataBinding(runtimeData: Uint8Array, reportData: Uint8Array): void {
  const digest = createHash("sha256").update(runtimeData).digest();
  if (
    reportData.length !== 64 ||
    !bytesEqual(reportData.subarray(0, 32), digest) ||
    !isAllZero(reportData.subarray(32))
  ) {
    throw new AttestationError(
      "ERR_RUNTIME_DATA_BINDING",
      "the evidence's report data does not bind the runtime data",
    );
  }
}

/**
 * The runtime-data claims MAA adds: `x-ms-runtime` (parsed JSON) for `dataType: "JSON"`, `x-ms-sgx-ehd`
 * (base64url) for `dataType: "Binary"`.
 */
export function runtimeDataClaims(runtimeData: Uint8Array, dataType: "JSON" | "Binary"): Claims {
  if (dataType === "Binary") {
    return { "x-ms-sgx-ehd": Buffer.from(runtimeData).toString("base64url") };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(runtimeData));
  } catch (cause) {
    throw new AttestationError("ERR_RUNTIME_DATA_BINDING", "runtime data of type JSON is not valid JSON", {
      cause,
    });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new AttestationError("ERR_RUNTIME_DATA_BINDING", "runtime data of type JSON must be a JSON object");
  }
  return { "x-ms-runtime": parsed as ClaimValue };
}
