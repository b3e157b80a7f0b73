// Intel SGX ECDSA quote v3, TDX quote v4 and v5 (Intel DCAP "Quote Library API" appendix, and the
// TDX DCAP Quoting Library API §A.3 for v4/v5). All integers are little-endian.
import { AttestationError, guard } from "../errors.js";
import { ByteReader } from "../lib/byte-reader.js";
import { isAllZero } from "../lib/bytes.js";
import { memoizeParse } from "../lib/parse-cache.js";
import { pemBlocks, toPem } from "../lib/x509.js";

export const teeTypeSgx = 0x00000000;
export const teeTypeTdx = 0x00000081;
export const attestationKeyTypeEcdsaP256 = 2;
export const intelQeVendorIdHex = "939a7233f79c4ca9940a0db3957f0607";

const enclaveReportLength = 384;
const tdReport10Length = 584;
const tdReport15Length = 648;

export interface QuoteHeader {
  readonly version: number;
  readonly attestationKeyType: number;
  readonly teeType: number;
  readonly qeSvn: number;
  readonly pceSvn: number;
  readonly qeVendorId: Uint8Array;
  readonly userData: Uint8Array;
}

/** SGX REPORTBODY (384 bytes), used for the enclave in an SGX quote and for the QE report. */
export interface EnclaveReport {
  readonly raw: Uint8Array;
  readonly cpuSvn: Uint8Array;
  readonly miscSelect: number;
  readonly isvExtProdId: Uint8Array;
  readonly attributes: Uint8Array;
  readonly mrEnclave: Uint8Array;
  readonly mrSigner: Uint8Array;
  readonly configId: Uint8Array;
  readonly isvProdId: number;
  readonly isvSvn: number;
  readonly configSvn: number;
  readonly isvFamilyId: Uint8Array;
  readonly reportData: Uint8Array;
}

/** TDX TD report body: TD 1.0 (584 bytes) or TD 1.5 (648 bytes, adding TEE_TCB_SVN_2 and MRSERVICETD). */
export interface TdReport {
  readonly raw: Uint8Array;
  readonly teeTcbSvn: Uint8Array;
  readonly mrSeam: Uint8Array;
  readonly mrSignerSeam: Uint8Array;
  readonly seamAttributes: Uint8Array;
  readonly tdAttributes: Uint8Array;
  readonly xfam: Uint8Array;
  readonly mrTd: Uint8Array;
  readonly mrConfigId: Uint8Array;
  readonly mrOwner: Uint8Array;
  readonly mrOwnerConfig: Uint8Array;
  readonly rtmrs: readonly [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  readonly reportData: Uint8Array;
  readonly teeTcbSvn2?: Uint8Array;
  readonly mrServiceTd?: Uint8Array;
}

export interface QuoteSignatureData {
  readonly signature: Uint8Array;
  /** The attestation public key: raw P-256 x‖y, 64 bytes. */
  readonly attestationKey: Uint8Array;
  readonly qeReport: EnclaveReport;
  readonly qeReportSignature: Uint8Array;
  readonly qeAuthData: Uint8Array;
  /** Certification data type 5: the PEM PCK certificate chain (leaf, PCK CA, root). */
  readonly pckCertChainPem: string;
}

interface QuoteCommon {
  /** The quote's bytes up to its declared end (zero padding after it is dropped). */
  readonly raw: Uint8Array;
  readonly header: QuoteHeader;
  /** The bytes the attestation key signs: header and body. */
  readonly signedBytes: Uint8Array;
  readonly signatureData: QuoteSignatureData;
}

export interface SgxQuote extends QuoteCommon {
  readonly tee: "sgx";
  readonly body: EnclaveReport;
}

export interface TdxQuote extends QuoteCommon {
  readonly tee: "tdx";
  readonly bodyType: "td10" | "td15";
  readonly body: TdReport;
}

export type Quote = SgxQuote | TdxQuote;

export function parseEnclaveReport(raw: Uint8Array, what = "enclave report"): EnclaveReport {
  const reader = new ByteReader(raw, "ERR_QUOTE_FORMAT", what);
  const cpuSvn = reader.bytesOf(16, "CPUSVN");
  const miscSelect = reader.u32("MISCSELECT");
  reader.bytesOf(12, "reserved");
  const isvExtProdId = reader.bytesOf(16, "ISVEXTPRODID");
  const attributes = reader.bytesOf(16, "ATTRIBUTES");
  const mrEnclave = reader.bytesOf(32, "MRENCLAVE");
  reader.bytesOf(32, "reserved");
  const mrSigner = reader.bytesOf(32, "MRSIGNER");
  reader.bytesOf(32, "reserved");
  const configId = reader.bytesOf(64, "CONFIGID");
  const isvProdId = reader.u16("ISVPRODID");
  const isvSvn = reader.u16("ISVSVN");
  const configSvn = reader.u16("CONFIGSVN");
  reader.bytesOf(42, "reserved");
  const isvFamilyId = reader.bytesOf(16, "ISVFAMILYID");
  const reportData = reader.bytesOf(64, "REPORTDATA");
  reader.end();
  return {
    raw,
    cpuSvn,
    miscSelect,
    isvExtProdId,
    attributes,
    mrEnclave,
    mrSigner,
    configId,
    isvProdId,
    isvSvn,
    configSvn,
    isvFamilyId,
    reportData,
  };
}

function parseTdReport(raw: Uint8Array): TdReport {
  const reader = new ByteReader(raw, "ERR_QUOTE_FORMAT", "TD report");
  const field = (length: number, name: string): Uint8Array => reader.bytesOf(length, name);
  const report = {
    raw,
    teeTcbSvn: field(16, "TEE_TCB_SVN"),
    mrSeam: field(48, "MRSEAM"),
    mrSignerSeam: field(48, "MRSIGNERSEAM"),
    seamAttributes: field(8, "SEAMATTRIBUTES"),
    tdAttributes: field(8, "TDATTRIBUTES"),
    xfam: field(8, "XFAM"),
    mrTd: field(48, "MRTD"),
    mrConfigId: field(48, "MRCONFIGID"),
    mrOwner: field(48, "MROWNER"),
    mrOwnerConfig: field(48, "MROWNERCONFIG"),
    rtmrs: [field(48, "RTMR0"), field(48, "RTMR1"), field(48, "RTMR2"), field(48, "RTMR3")] as const,
    reportData: field(64, "REPORTDATA"),
  };
  if (raw.length === tdReport15Length) {
    const teeTcbSvn2 = field(16, "TEE_TCB_SVN_2");
    const mrServiceTd = field(48, "MRSERVICETD");
    reader.end();
    return { ...report, teeTcbSvn2, mrServiceTd };
  }
  reader.end();
  return report;
}

const isCanonicalPem = memoizeParse((text: string): boolean => {
  const canonical = pemBlocks(text)
    .map((der) => toPem(der))
    .join("");
  return canonical.length > 0 && canonical === text;
});

function parseQeReportCertificationData(
  reader: ByteReader,
): Omit<QuoteSignatureData, "signature" | "attestationKey"> {
  const qeReport = parseEnclaveReport(reader.bytesOf(enclaveReportLength, "QE report"), "QE report");
  const qeReportSignature = reader.bytesOf(64, "QE report signature");
  const qeAuthData = reader.bytesOf(reader.u16("QE authentication data size"), "QE authentication data");
  const certificationType = reader.u16("certification data type");
  const certificationData = reader.bytesOf(reader.u32("certification data size"), "certification data");
  if (certificationType !== 5) {
    throw new AttestationError(
      "ERR_QUOTE_UNSUPPORTED",
      `certification data type ${certificationType} is not supported (only 5, the PCK certificate chain)`,
    );
  }
  // The chain is PEM text, often NUL-terminated.
  let end = certificationData.length;
  while (end > 0 && certificationData[end - 1] === 0) {
    end--;
  }
  const pckCertChainPem = new TextDecoder("utf-8", { fatal: false }).decode(
    certificationData.subarray(0, end),
  );
  // Intel's QE writes canonical PEM (64-column base64, LF). Requiring exactly that leaves no byte of the
  // chain (whitespace, padding bits, text between blocks) that could change without being rejected.
  if (!isCanonicalPem(pckCertChainPem)) {
    throw new AttestationError("ERR_QUOTE_FORMAT", "the PCK certificate chain is not canonical PEM");
  }
  return { qeReport, qeReportSignature, qeAuthData, pckCertChainPem };
}

/**
 * Parses an Intel DCAP quote: SGX v3, or TDX v4 or v5 (TD 1.0 or TD 1.5 body). Parsing checks the
 * structure and every declared length; it verifies nothing. Use {@link verifyQuote} for that.
 *
 * @example
 * ```ts
 * const quote = parseQuote(bytes);
 * if (quote.tee === "sgx") console.log(toHex(quote.body.mrEnclave));
 * ```
 */
export function parseQuote(bytes: Uint8Array): Quote {
  return guard("ERR_QUOTE_FORMAT", "the quote could not be parsed", () => parseQuoteUnguarded(bytes));
}

function parseQuoteUnguarded(bytes: Uint8Array): Quote {
  if (!(bytes instanceof Uint8Array)) {
    throw new AttestationError("ERR_QUOTE_FORMAT", "quote must be a Uint8Array");
  }
  const reader = new ByteReader(bytes, "ERR_QUOTE_FORMAT", "quote");
  const header: QuoteHeader = {
    version: reader.u16("version"),
    attestationKeyType: reader.u16("attestation key type"),
    teeType: reader.u32("TEE type"),
    qeSvn: reader.u16("QE SVN"),
    pceSvn: reader.u16("PCE SVN"),
    qeVendorId: reader.bytesOf(16, "QE vendor id"),
    userData: reader.bytesOf(20, "user data"),
  };
  if (header.attestationKeyType !== attestationKeyTypeEcdsaP256) {
    throw new AttestationError(
      "ERR_QUOTE_UNSUPPORTED",
      `attestation key type ${header.attestationKeyType} is not supported (only 2, ECDSA P-256)`,
    );
  }
  let tee: "sgx" | "tdx";
  let bodyType: "sgx" | "td10" | "td15";
  let bodyLength: number;
  if (header.version === 3 && header.teeType === teeTypeSgx) {
    tee = "sgx";
    bodyType = "sgx";
    bodyLength = enclaveReportLength;
  } else if (header.version === 4 && header.teeType === teeTypeTdx) {
    tee = "tdx";
    bodyType = "td10";
    bodyLength = tdReport10Length;
  } else if (header.version === 5 && (header.teeType === teeTypeTdx || header.teeType === teeTypeSgx)) {
    const type = reader.u16("body type");
    bodyLength = reader.u32("body size");
    const expected: Record<number, ["sgx" | "td10" | "td15", number, number]> = {
      1: ["sgx", enclaveReportLength, teeTypeSgx],
      2: ["td10", tdReport10Length, teeTypeTdx],
      3: ["td15", tdReport15Length, teeTypeTdx],
    };
    const entry = expected[type];
    if (entry === undefined || entry[1] !== bodyLength || entry[2] !== header.teeType) {
      throw new AttestationError(
        "ERR_QUOTE_FORMAT",
        `quote v5 body type ${type} with size ${bodyLength} is invalid`,
      );
    }
    bodyType = entry[0];
    tee = bodyType === "sgx" ? "sgx" : "tdx";
  } else {
    throw new AttestationError(
      "ERR_QUOTE_UNSUPPORTED",
      `quote version ${header.version} with TEE type 0x${header.teeType.toString(16)} is not supported`,
    );
  }
  const bodyBytes = reader.bytesOf(bodyLength, "report body");
  const signedBytes = bytes.subarray(0, reader.offset);
  const signatureLength = reader.u32("signature data length");
  const signatureReader = new ByteReader(
    reader.bytesOf(signatureLength, "signature data"),
    "ERR_QUOTE_FORMAT",
    "quote signature data",
  );
  // Quote generation services hand out fixed-size buffers: zero padding after the declared signature
  // data is outside every signature and is dropped; any other trailing byte is junk and rejected.
  if (!isAllZero(bytes.subarray(reader.offset))) {
    reader.fail(`${reader.remaining} unexpected trailing bytes`);
  }
  const raw = bytes.subarray(0, reader.offset);
  const signature = signatureReader.bytesOf(64, "quote signature");
  const attestationKey = signatureReader.bytesOf(64, "attestation key");
  let rest: Omit<QuoteSignatureData, "signature" | "attestationKey">;
  if (header.version === 3) {
    rest = parseQeReportCertificationData(signatureReader);
  } else {
    const type = signatureReader.u16("certification data type");
    const outer = new ByteReader(
      signatureReader.bytesOf(signatureReader.u32("certification data size"), "certification data"),
      "ERR_QUOTE_FORMAT",
      "QE report certification data",
    );
    if (type !== 6) {
      throw new AttestationError(
        "ERR_QUOTE_UNSUPPORTED",
        `certification data type ${type} is not 6 (QE report)`,
      );
    }
    rest = parseQeReportCertificationData(outer);
    outer.end();
  }
  signatureReader.end();
  const signatureData: QuoteSignatureData = { signature, attestationKey, ...rest };
  if (tee === "sgx") {
    return { tee, raw, header, signedBytes, signatureData, body: parseEnclaveReport(bodyBytes) };
  }
  return {
    tee,
    bodyType: bodyType === "td15" ? "td15" : "td10",
    raw,
    header,
    signedBytes,
    signatureData,
    body: parseTdReport(bodyBytes),
  };
}
