// TCB level matching and status convergence, following Intel's Quote Verification Library
// (QVL: TcbLevelCheck, QE identity check, TDX module identity) for TCB info v2/v3.
import { AttestationError } from "../errors.js";
import { bytesEqual, toHex } from "../lib/bytes.js";
import type { ModuleTcbLevel, PlatformTcbLevel, QeIdentity, TcbInfo, TcbStatus } from "./collateral.js";
import type { EnclaveReport, TdReport } from "./quote.js";

export interface TcbResult {
  readonly status: TcbStatus;
  readonly advisoryIds: readonly string[];
}

function compareComponents(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) {
      return difference;
    }
  }
  return 0;
}

/** Intel lists levels newest first; we sort defensively in the same (descending) order. */
function sortedLevels(tcbInfo: TcbInfo): PlatformTcbLevel[] {
  return [...tcbInfo.tcbLevels].sort(
    (a, b) =>
      compareComponents(b.sgxComponents, a.sgxComponents) ||
      b.pceSvn - a.pceSvn ||
      compareComponents(b.tdxComponents ?? [], a.tdxComponents ?? []),
  );
}

function componentsAtLeast(actual: Uint8Array, required: readonly number[]): boolean {
  return required.every((svn, i) => (actual[i] ?? 0) >= svn);
}

/**
 * QVL's convergence of the platform status with the status of a component (the QE, or the TDX module):
 * an out-of-date component makes the platform out of date, a revoked one revokes it.
 */
export function convergeTcbStatus(platform: TcbResult, component: TcbResult): TcbResult {
  const advisoryIds = [...new Set([...platform.advisoryIds, ...component.advisoryIds])];
  let status = platform.status;
  if (component.status === "Revoked") {
    status = "Revoked";
  } else if (component.status === "OutOfDate" || component.status === "OutOfDateConfigurationNeeded") {
    if (platform.status === "UpToDate" || platform.status === "SWHardeningNeeded") {
      status = "OutOfDate";
    } else if (
      platform.status === "ConfigurationNeeded" ||
      platform.status === "ConfigurationAndSWHardeningNeeded"
    ) {
      status = "OutOfDateConfigurationNeeded";
    }
  }
  return { status, advisoryIds };
}

function matchModuleLevel(isvSvn: number, levels: readonly ModuleTcbLevel[], what: string): TcbResult {
  const level = [...levels]
    .sort((a, b) => b.isvSvn - a.isvSvn)
    .find((candidate) => isvSvn >= candidate.isvSvn);
  if (level === undefined) {
    throw new AttestationError("ERR_TCB_NO_MATCH", `${what} ISVSVN ${isvSvn} is below every TCB level`);
  }
  return { status: level.tcbStatus, advisoryIds: level.advisoryIds };
}

function maskedEqual(actual: Uint8Array, expected: Uint8Array, mask: Uint8Array): boolean {
  for (let i = 0; i < mask.length; i++) {
    if (((actual[i] ?? 0) & (mask[i] as number)) !== ((expected[i] ?? 0) & (mask[i] as number))) {
      return false;
    }
  }
  return true;
}

/** Checks the QE report against the QE identity and returns the QE's TCB status. */
export function evaluateQeIdentity(qeReport: EnclaveReport, identity: QeIdentity): TcbResult {
  const mismatch = (field: string): never => {
    throw new AttestationError(
      "ERR_QE_IDENTITY_MISMATCH",
      `QE report ${field} does not match the QE identity`,
    );
  };
  if (!bytesEqual(qeReport.mrSigner, identity.mrSigner)) {
    mismatch("MRSIGNER");
  }
  if (qeReport.isvProdId !== identity.isvProdId) {
    mismatch("ISVPRODID");
  }
  const miscSelect = new Uint8Array(4);
  new DataView(miscSelect.buffer).setUint32(0, qeReport.miscSelect, false);
  if (!maskedEqual(miscSelect, identity.miscSelect, identity.miscSelectMask)) {
    mismatch("MISCSELECT");
  }
  if (!maskedEqual(qeReport.attributes, identity.attributes, identity.attributesMask)) {
    mismatch("ATTRIBUTES");
  }
  return matchModuleLevel(qeReport.isvSvn, identity.tcbLevels, "QE");
}

function evaluateTdxModule(tcbInfo: TcbInfo, body: TdReport): TcbResult | undefined {
  const moduleSvn = body.teeTcbSvn[0] as number;
  const moduleVersion = body.teeTcbSvn[1] as number;
  let identity = tcbInfo.tdxModule;
  let levels: readonly ModuleTcbLevel[] | undefined;
  if (moduleVersion > 0 && tcbInfo.tdxModuleIdentities.length > 0) {
    const wanted = `TDX_${moduleVersion.toString(16).toUpperCase().padStart(2, "0")}`;
    const found = tcbInfo.tdxModuleIdentities.find((candidate) => candidate.id.toUpperCase() === wanted);
    if (found === undefined) {
      throw new AttestationError("ERR_TCB_NO_MATCH", `TCB info has no TDX module identity ${wanted}`);
    }
    identity = found;
    levels = found.tcbLevels;
  }
  if (identity === undefined) {
    throw new AttestationError("ERR_COLLATERAL_FORMAT", "TDX TCB info has no tdxModule");
  }
  if (!bytesEqual(body.mrSignerSeam, identity.mrSigner)) {
    throw new AttestationError(
      "ERR_TCB_NO_MATCH",
      `TDX module MRSIGNERSEAM ${toHex(body.mrSignerSeam)} does not match the TCB info`,
    );
  }
  if (!maskedEqual(body.seamAttributes, identity.attributes, identity.attributesMask)) {
    throw new AttestationError("ERR_TCB_NO_MATCH", "TDX module SEAMATTRIBUTES do not match the TCB info");
  }
  return levels === undefined ? undefined : matchModuleLevel(moduleSvn, levels, "TDX module");
}

export interface PlatformTcbInput {
  readonly cpuSvn: Uint8Array;
  readonly pceSvn: number;
  /** TDX only: the TD report, for TEE_TCB_SVN and the module identity. */
  readonly tdReport?: TdReport;
}

/** Finds the platform's TCB level (first level whose every component it meets) and its status. */
export function evaluatePlatformTcb(
  tcbInfo: TcbInfo,
  input: PlatformTcbInput,
): TcbResult & { tcbDate: string } {
  for (const level of sortedLevels(tcbInfo)) {
    if (input.pceSvn < level.pceSvn || !componentsAtLeast(input.cpuSvn, level.sgxComponents)) {
      continue;
    }
    if (input.tdReport !== undefined) {
      if (level.tdxComponents === undefined) {
        throw new AttestationError("ERR_COLLATERAL_FORMAT", "TDX TCB level without tdxtcbcomponents");
      }
      if (!componentsAtLeast(input.tdReport.teeTcbSvn, level.tdxComponents)) {
        continue;
      }
    }
    let result: TcbResult = { status: level.tcbStatus, advisoryIds: level.advisoryIds };
    if (input.tdReport !== undefined) {
      const moduleResult = evaluateTdxModule(tcbInfo, input.tdReport);
      if (moduleResult !== undefined) {
        result = convergeTcbStatus(result, moduleResult);
      }
    }
    return { ...result, tcbDate: level.tcbDate };
  }
  throw new AttestationError(
    "ERR_TCB_NO_MATCH",
    `no TCB level of FMSPC ${toHex(tcbInfo.fmspc)} matches the platform (CPUSVN ${toHex(input.cpuSvn)}, PCESVN ${input.pceSvn}` +
      (input.tdReport === undefined ? ")" : `, TEE_TCB_SVN ${toHex(input.tdReport.teeTcbSvn)})`),
  );
}
