// AMD SEV-SNP ATTESTATION_REPORT (SEV-SNP Firmware ABI spec, Table 22), versions 2 and 3.
// 0x4A0 bytes, little-endian; the signature covers bytes [0, 0x2A0).
import { AttestationError, guard } from "../errors.js";
import { ByteReader } from "../lib/byte-reader.js";
import { isAllZero } from "../lib/bytes.js";

export const snpReportLength = 0x4a0;
export const snpSignedLength = 0x2a0;

/** TCB_VERSION. Milan and Genoa: bootloader, TEE, 4 reserved, SNP, microcode; Turin adds FMC first. */
export interface SnpTcbVersion {
  readonly raw: bigint;
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
  /** Turin only. */
  readonly fmc?: number;
}

export interface SnpGuestPolicy {
  readonly raw: bigint;
  readonly abiMinor: number;
  readonly abiMajor: number;
  readonly smtAllowed: boolean;
  readonly migrateMaAllowed: boolean;
  readonly debugAllowed: boolean;
  readonly singleSocket: boolean;
}

export interface SnpReport {
  readonly raw: Uint8Array;
  readonly signedBytes: Uint8Array;
  readonly version: number;
  readonly guestSvn: number;
  readonly policy: SnpGuestPolicy;
  readonly familyId: Uint8Array;
  readonly imageId: Uint8Array;
  readonly vmpl: number;
  readonly signatureAlgorithm: number;
  readonly currentTcb: SnpTcbVersion;
  readonly platformInfo: bigint;
  /** Bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2–4 SIGNING_KEY (0 VCEK, 1 VLEK). */
  readonly keyFlags: number;
  readonly reportData: Uint8Array;
  readonly measurement: Uint8Array;
  readonly hostData: Uint8Array;
  readonly idKeyDigest: Uint8Array;
  readonly authorKeyDigest: Uint8Array;
  readonly reportId: Uint8Array;
  readonly reportIdMa: Uint8Array;
  readonly reportedTcb: SnpTcbVersion;
  /** Version 3: CPUID family, model and stepping of the chip. */
  readonly cpuid?: { readonly family: number; readonly model: number; readonly stepping: number };
  readonly chipId: Uint8Array;
  readonly committedTcb: SnpTcbVersion;
  readonly launchTcb: SnpTcbVersion;
  /** r and s, converted to big-endian, 48 bytes each (P-384). */
  readonly signature: { readonly r: Uint8Array; readonly s: Uint8Array };
}

/** Turin (CPUID family 0x1A) moved the fields of TCB_VERSION. */
export function decodeTcbVersion(raw: bigint, turin: boolean): SnpTcbVersion {
  const byte = (index: number): number => Number((raw >> BigInt(index * 8)) & 0xffn);
  return turin
    ? { raw, fmc: byte(0), bootloader: byte(1), tee: byte(2), snp: byte(3), microcode: byte(7) }
    : { raw, bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7) };
}

function littleEndianComponent(bytes: Uint8Array, what: string): Uint8Array {
  // 72-byte little-endian field holding a 48-byte P-384 scalar; the upper 24 bytes must be zero.
  if (!isAllZero(bytes.subarray(48))) {
    throw new AttestationError("ERR_SNP_SIGNATURE", `signature ${what} does not fit P-384`);
  }
  return Uint8Array.from(bytes.subarray(0, 48)).reverse();
}

/**
 * Parses an AMD SEV-SNP attestation report (version 2 or 3). Reserved fields outside the signed region
 * must be zero, so no unsigned byte can change without the report being rejected.
 *
 * @example
 * ```ts
 * const report = parseSnpReport(bytes);
 * toHex(report.measurement);
 * ```
 */
export function parseSnpReport(bytes: Uint8Array): SnpReport {
  return guard("ERR_SNP_FORMAT", "the SNP report could not be parsed", () => parseSnpReportUnguarded(bytes));
}

function parseSnpReportUnguarded(bytes: Uint8Array): SnpReport {
  if (!(bytes instanceof Uint8Array)) {
    throw new AttestationError("ERR_SNP_FORMAT", "SNP report must be a Uint8Array");
  }
  if (bytes.length !== snpReportLength) {
    throw new AttestationError(
      "ERR_SNP_FORMAT",
      `SNP report must be ${snpReportLength} bytes, got ${bytes.length}`,
    );
  }
  const reader = new ByteReader(bytes, "ERR_SNP_FORMAT", "SNP report");
  const version = reader.u32("version");
  if (version !== 2 && version !== 3) {
    throw new AttestationError("ERR_SNP_FORMAT", `SNP report version ${version} is not supported (2 or 3)`);
  }
  const guestSvn = reader.u32("guest SVN");
  const policyRaw = reader.u64("policy");
  const familyId = reader.bytesOf(16, "family id");
  const imageId = reader.bytesOf(16, "image id");
  const vmpl = reader.u32("VMPL");
  const signatureAlgorithm = reader.u32("signature algorithm");
  if (signatureAlgorithm !== 1) {
    throw new AttestationError(
      "ERR_SNP_FORMAT",
      `signature algorithm ${signatureAlgorithm} is not ECDSA P-384`,
    );
  }
  const currentTcbRaw = reader.u64("current TCB");
  const platformInfo = reader.u64("platform info");
  const keyFlags = reader.u32("key flags");
  reader.u32("reserved");
  const reportData = reader.bytesOf(64, "report data");
  const measurement = reader.bytesOf(48, "measurement");
  const hostData = reader.bytesOf(32, "host data");
  const idKeyDigest = reader.bytesOf(48, "id key digest");
  const authorKeyDigest = reader.bytesOf(48, "author key digest");
  const reportId = reader.bytesOf(32, "report id");
  const reportIdMa = reader.bytesOf(32, "report id MA");
  const reportedTcbRaw = reader.u64("reported TCB");
  const cpuidBytes = reader.bytesOf(24, "CPUID / reserved");
  const chipId = reader.bytesOf(64, "chip id");
  const committedTcbRaw = reader.u64("committed TCB");
  reader.bytesOf(8, "current and committed versions");
  const launchTcbRaw = reader.u64("launch TCB");
  reader.offset = snpSignedLength;
  const r = reader.bytesOf(72, "signature r");
  const s = reader.bytesOf(72, "signature s");
  if (!isAllZero(reader.bytesOf(snpReportLength - reader.offset, "signature reserved"))) {
    throw new AttestationError("ERR_SNP_FORMAT", "reserved bytes after the signature are not zero");
  }
  const cpuid =
    version >= 3
      ? { family: cpuidBytes[0] as number, model: cpuidBytes[1] as number, stepping: cpuidBytes[2] as number }
      : undefined;
  const turin = cpuid?.family === 0x1a;
  return {
    raw: bytes,
    signedBytes: bytes.subarray(0, snpSignedLength),
    version,
    guestSvn,
    policy: {
      raw: policyRaw,
      abiMinor: Number(policyRaw & 0xffn),
      abiMajor: Number((policyRaw >> 8n) & 0xffn),
      smtAllowed: ((policyRaw >> 16n) & 1n) === 1n,
      migrateMaAllowed: ((policyRaw >> 18n) & 1n) === 1n,
      debugAllowed: ((policyRaw >> 19n) & 1n) === 1n,
      singleSocket: ((policyRaw >> 20n) & 1n) === 1n,
    },
    familyId,
    imageId,
    vmpl,
    signatureAlgorithm,
    currentTcb: decodeTcbVersion(currentTcbRaw, turin),
    platformInfo,
    keyFlags,
    reportData,
    measurement,
    hostData,
    idKeyDigest,
    authorKeyDigest,
    reportId,
    reportIdMa,
    reportedTcb: decodeTcbVersion(reportedTcbRaw, turin),
    ...(cpuid === undefined ? {} : { cpuid }),
    chipId,
    committedTcb: decodeTcbVersion(committedTcbRaw, turin),
    launchTcb: decodeTcbVersion(launchTcbRaw, turin),
    signature: { r: littleEndianComponent(r, "r"), s: littleEndianComponent(s, "s") },
  };
}
