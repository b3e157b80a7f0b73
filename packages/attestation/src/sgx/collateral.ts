// Intel DCAP collateral: the JSON bundle (DESIGN.md §4) and the TCB info and QE identity documents it
// carries (Intel PCS API v4: TCB Info v2/v3, Enclave Identity v2).
import { AttestationError } from "../errors.js";
import { fromHex } from "../lib/bytes.js";

/** The collateral bundle, in the format of ../shared/attestation-vectors/dcap-qvl/*_collateral.json. */
export interface CollateralBundle {
  /** PEM: the PCK CA (Processor or Platform) and the root that issued the PCK CRL. */
  readonly pck_crl_issuer_chain: string;
  /** Intel root CA CRL: hex-encoded DER, or PEM. */
  readonly root_ca_crl: string;
  /** PCK CA CRL: hex-encoded DER, or PEM. */
  readonly pck_crl: string;
  readonly tcb_info_issuer_chain: string;
  /** The exact signed JSON text of the TCB info. */
  readonly tcb_info: string;
  /** Hex r‖s ECDSA P-256 signature over `tcb_info`. */
  readonly tcb_info_signature: string;
  readonly qe_identity_issuer_chain: string;
  readonly qe_identity: string;
  readonly qe_identity_signature: string;
}

export const tcbStatuses = [
  "UpToDate",
  "SWHardeningNeeded",
  "ConfigurationNeeded",
  "ConfigurationAndSWHardeningNeeded",
  "OutOfDate",
  "OutOfDateConfigurationNeeded",
  "Revoked",
] as const;

export type TcbStatus = (typeof tcbStatuses)[number];

export interface PlatformTcbLevel {
  readonly sgxComponents: readonly number[];
  readonly tdxComponents: readonly number[] | undefined;
  readonly pceSvn: number;
  readonly tcbDate: string;
  readonly tcbStatus: TcbStatus;
  readonly advisoryIds: readonly string[];
}

export interface ModuleTcbLevel {
  readonly isvSvn: number;
  readonly tcbDate: string;
  readonly tcbStatus: TcbStatus;
  readonly advisoryIds: readonly string[];
}

export interface TdxModuleIdentity {
  readonly id: string;
  readonly mrSigner: Uint8Array;
  readonly attributes: Uint8Array;
  readonly attributesMask: Uint8Array;
  readonly tcbLevels: readonly ModuleTcbLevel[];
}

export interface TcbInfo {
  readonly id: "SGX" | "TDX";
  readonly version: number;
  readonly issueDate: Date;
  readonly nextUpdate: Date;
  readonly fmspc: Uint8Array;
  readonly pceId: Uint8Array;
  readonly tcbEvaluationDataNumber: number;
  readonly tcbLevels: readonly PlatformTcbLevel[];
  readonly tdxModule: Omit<TdxModuleIdentity, "id" | "tcbLevels"> | undefined;
  readonly tdxModuleIdentities: readonly TdxModuleIdentity[];
}

export interface QeIdentity {
  readonly id: "QE" | "TD_QE" | "QVE";
  readonly version: number;
  readonly issueDate: Date;
  readonly nextUpdate: Date;
  readonly tcbEvaluationDataNumber: number;
  readonly miscSelect: Uint8Array;
  readonly miscSelectMask: Uint8Array;
  readonly attributes: Uint8Array;
  readonly attributesMask: Uint8Array;
  readonly mrSigner: Uint8Array;
  readonly isvProdId: number;
  readonly tcbLevels: readonly ModuleTcbLevel[];
}

type Json = Record<string, unknown>;

function fail(what: string, reason: string): never {
  throw new AttestationError("ERR_COLLATERAL_FORMAT", `${what}: ${reason}`);
}

function object(value: unknown, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(what, "expected an object");
  }
  return value as Json;
}

function array(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value)) {
    fail(what, "expected an array");
  }
  return value;
}

function integer(value: unknown, what: string, max = 0xffff): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > max) {
    fail(what, `expected an integer from 0 to ${max}`);
  }
  return value;
}

function string(value: unknown, what: string): string {
  if (typeof value !== "string") {
    fail(what, "expected a string");
  }
  return value;
}

function hexBytes(value: unknown, what: string, length: number): Uint8Array {
  const bytes = fromHex(string(value, what));
  if (bytes?.length !== length) {
    fail(what, `expected ${length} hex-encoded bytes`);
  }
  return bytes;
}

function date(value: unknown, what: string): Date {
  const text = string(value, what);
  const parsed = new Date(text);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(text) || Number.isNaN(parsed.getTime())) {
    fail(what, "expected an ISO 8601 UTC date");
  }
  return parsed;
}

function status(value: unknown, what: string): TcbStatus {
  if (!tcbStatuses.includes(value as TcbStatus)) {
    fail(what, `unknown TCB status ${JSON.stringify(value)}`);
  }
  return value as TcbStatus;
}

function advisories(value: unknown, what: string): string[] {
  return value === undefined ? [] : array(value, what).map((id, i) => string(id, `${what}[${i}]`));
}

export function parseJsonDocument(text: string, what: string): Json {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    fail(what, "not valid JSON");
  }
  return object(parsed, what);
}

function parseModuleLevels(value: unknown, what: string): ModuleTcbLevel[] {
  return array(value, what).map((raw, i) => {
    const level = object(raw, `${what}[${i}]`);
    return {
      isvSvn: integer(object(level.tcb, `${what}[${i}].tcb`).isvsvn, `${what}[${i}].tcb.isvsvn`),
      tcbDate: string(level.tcbDate, `${what}[${i}].tcbDate`),
      tcbStatus: status(level.tcbStatus, `${what}[${i}].tcbStatus`),
      advisoryIds: advisories(level.advisoryIDs, `${what}[${i}].advisoryIDs`),
    };
  });
}

function svnList(value: unknown, what: string): number[] {
  const list = array(value, what).map((component, i) =>
    integer(object(component, `${what}[${i}]`).svn, `${what}[${i}].svn`, 255),
  );
  if (list.length !== 16) {
    fail(what, "expected 16 components");
  }
  return list;
}

function parsePlatformLevel(raw: unknown, what: string, version: number): PlatformTcbLevel {
  const level = object(raw, what);
  const tcb = object(level.tcb, `${what}.tcb`);
  let sgxComponents: number[];
  if (version >= 3) {
    sgxComponents = svnList(tcb.sgxtcbcomponents, `${what}.tcb.sgxtcbcomponents`);
  } else {
    sgxComponents = [];
    for (let i = 1; i <= 16; i++) {
      const key = `sgxtcbcomp${String(i).padStart(2, "0")}svn`;
      sgxComponents.push(integer(tcb[key], `${what}.tcb.${key}`, 255));
    }
  }
  return {
    sgxComponents,
    tdxComponents:
      tcb.tdxtcbcomponents === undefined
        ? undefined
        : svnList(tcb.tdxtcbcomponents, `${what}.tcb.tdxtcbcomponents`),
    pceSvn: integer(tcb.pcesvn, `${what}.tcb.pcesvn`),
    tcbDate: string(level.tcbDate, `${what}.tcbDate`),
    tcbStatus: status(level.tcbStatus, `${what}.tcbStatus`),
    advisoryIds: advisories(level.advisoryIDs, `${what}.advisoryIDs`),
  };
}

function parseModuleIdentity(raw: unknown, what: string): Omit<TdxModuleIdentity, "id" | "tcbLevels"> {
  const module = object(raw, what);
  return {
    mrSigner: hexBytes(module.mrsigner, `${what}.mrsigner`, 48),
    attributes: hexBytes(module.attributes, `${what}.attributes`, 8),
    attributesMask: hexBytes(module.attributesMask, `${what}.attributesMask`, 8),
  };
}

/** Parses the signed TCB info text (`{"id":"SGX"|"TDX","version":2|3,…}`). */
export function parseTcbInfo(text: string): TcbInfo {
  const info = parseJsonDocument(text, "TCB info");
  const id = info.id ?? "SGX";
  if (id !== "SGX" && id !== "TDX") {
    fail("TCB info", `unknown id ${JSON.stringify(id)}`);
  }
  const version = integer(info.version, "TCB info version");
  if (version !== 2 && version !== 3) {
    fail("TCB info", `version ${version} is not supported`);
  }
  const tcbLevels = array(info.tcbLevels, "tcbLevels").map((level, i) =>
    parsePlatformLevel(level, `tcbLevels[${i}]`, version),
  );
  return {
    id,
    version,
    issueDate: date(info.issueDate, "TCB info issueDate"),
    nextUpdate: date(info.nextUpdate, "TCB info nextUpdate"),
    fmspc: hexBytes(info.fmspc, "TCB info fmspc", 6),
    pceId: hexBytes(info.pceId, "TCB info pceId", 2),
    tcbEvaluationDataNumber: integer(info.tcbEvaluationDataNumber, "tcbEvaluationDataNumber", 0xffffffff),
    tcbLevels,
    tdxModule: info.tdxModule === undefined ? undefined : parseModuleIdentity(info.tdxModule, "tdxModule"),
    tdxModuleIdentities:
      info.tdxModuleIdentities === undefined
        ? []
        : array(info.tdxModuleIdentities, "tdxModuleIdentities").map((raw, i) => {
            const what = `tdxModuleIdentities[${i}]`;
            const identity = object(raw, what);
            return {
              id: string(identity.id, `${what}.id`),
              ...parseModuleIdentity(identity, what),
              tcbLevels: parseModuleLevels(identity.tcbLevels, `${what}.tcbLevels`),
            };
          }),
  };
}

/** Parses the signed QE identity text (`{"id":"QE"|"TD_QE","version":2,…}`). */
export function parseQeIdentity(text: string): QeIdentity {
  const identity = parseJsonDocument(text, "QE identity");
  const id = identity.id;
  if (id !== "QE" && id !== "TD_QE" && id !== "QVE") {
    fail("QE identity", `unknown id ${JSON.stringify(id)}`);
  }
  const version = integer(identity.version, "QE identity version");
  if (version !== 2) {
    fail("QE identity", `version ${version} is not supported`);
  }
  return {
    id,
    version,
    issueDate: date(identity.issueDate, "QE identity issueDate"),
    nextUpdate: date(identity.nextUpdate, "QE identity nextUpdate"),
    tcbEvaluationDataNumber: integer(identity.tcbEvaluationDataNumber, "tcbEvaluationDataNumber", 0xffffffff),
    miscSelect: hexBytes(identity.miscselect, "miscselect", 4),
    miscSelectMask: hexBytes(identity.miscselectMask, "miscselectMask", 4),
    attributes: hexBytes(identity.attributes, "attributes", 16),
    attributesMask: hexBytes(identity.attributesMask, "attributesMask", 16),
    mrSigner: hexBytes(identity.mrsigner, "mrsigner", 32),
    isvProdId: integer(identity.isvprodid, "isvprodid"),
    tcbLevels: parseModuleLevels(identity.tcbLevels, "QE identity tcbLevels"),
  };
}
