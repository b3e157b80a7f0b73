// SEV-SNP report verification: VCEK ← ASK ← ARK (ARK pinned per product), the VCEK's TCB and hwID
// extensions against the report (AMD "VCEK Certificate and KDS Interface Specification" §3), and the
// report's ECDSA P-384 signature.
import { AttestationError, guard } from "../errors.js";
import { bytesEqual, concatBytes } from "../lib/bytes.js";
import { verifyChain } from "../lib/chain.js";
import { DerReader, Tag } from "../lib/der.js";
import {
  parseCertificate,
  pemBlocks,
  publicKeyOf,
  spkiSha256,
  verifyP1363,
  type Certificate,
} from "../lib/x509.js";
import { amdArkSpkiSha256, type AmdProduct } from "../trusted-roots.js";
import { snpClaims } from "../claims.js";
import type { VerifiedEvidence } from "../sgx/verify-quote.js";
import { parseSnpReport, type SnpReport } from "./report.js";

const kdsOid = "1.3.6.1.4.1.3704.1";
const tcbExtensions = {
  bootloader: `${kdsOid}.3.1`,
  tee: `${kdsOid}.3.2`,
  snp: `${kdsOid}.3.3`,
  microcode: `${kdsOid}.3.8`,
  fmc: `${kdsOid}.3.9`,
} as const;

export interface VerifySnpReportOptions {
  /** The VCEK certificate, DER bytes or PEM text. */
  readonly vcek: Uint8Array | string;
  /** The ASK and ARK certificates (PEM, AMD's `cert_chain` format). */
  readonly chain: string;
  readonly now?: Date;
  /** Require this product line (otherwise any pinned ARK is accepted). */
  readonly product?: AmdProduct;
}

function certificateFrom(input: Uint8Array | string, what: string): Certificate {
  if (typeof input === "string") {
    const [der] = pemBlocks(input);
    if (der === undefined) {
      throw new AttestationError("ERR_CERT_FORMAT", `${what} is not a PEM certificate`);
    }
    return parseCertificate(der);
  }
  return parseCertificate(input);
}

function extensionInteger(vcek: Certificate, oid: string, what: string): number | undefined {
  const extension = vcek.extensions.get(oid);
  if (extension === undefined) {
    return undefined;
  }
  return new DerReader("ERR_CERT_FORMAT", "VCEK").smallInteger(
    new DerReader("ERR_CERT_FORMAT", "VCEK").single(extension.value),
    what,
  );
}

function checkVcekMatchesReport(vcek: Certificate, report: SnpReport, product: AmdProduct): void {
  const reader = new DerReader("ERR_CERT_FORMAT", "VCEK");
  const productName = vcek.extensions.get(`${kdsOid}.2`);
  if (productName !== undefined) {
    const element = reader.single(productName.value);
    const name = element.tag === Tag.ia5String ? reader.string(element, "product name") : "";
    if (!name.startsWith(product)) {
      throw new AttestationError(
        "ERR_SNP_TCB_MISMATCH",
        `VCEK is for product "${name}", its ARK is ${product}`,
      );
    }
  }
  const expected: [keyof typeof tcbExtensions, number | undefined][] = [
    ["bootloader", report.reportedTcb.bootloader],
    ["tee", report.reportedTcb.tee],
    ["snp", report.reportedTcb.snp],
    ["microcode", report.reportedTcb.microcode],
    ["fmc", report.reportedTcb.fmc],
  ];
  for (const [name, value] of expected) {
    if (value === undefined) {
      continue;
    }
    const certified = extensionInteger(vcek, tcbExtensions[name], `${name} SPL`);
    if (certified === undefined) {
      throw new AttestationError("ERR_SNP_TCB_MISMATCH", `VCEK has no ${name} SPL extension`);
    }
    if (certified !== value) {
      throw new AttestationError(
        "ERR_SNP_TCB_MISMATCH",
        `report's reported_tcb ${name} SPL ${value} differs from the VCEK's ${certified}`,
      );
    }
  }
  const hwid = vcek.extensions.get(`${kdsOid}.4`);
  if (hwid === undefined) {
    throw new AttestationError("ERR_SNP_TCB_MISMATCH", "VCEK has no hwID extension");
  }
  const chipIdMasked = (report.keyFlags & 0b10) !== 0;
  if (!chipIdMasked) {
    // KDS writes the hwID as raw bytes (64, or 8 on Turin); accept a DER OCTET STRING as well.
    const id =
      hwid.value.length === 64 || hwid.value.length === 8
        ? hwid.value
        : reader.octetString(reader.single(hwid.value), "hwID");
    // Turin's hwID is 8 bytes: the first 8 of the report's CHIP_ID.
    const reportChipId = id.length === 8 ? report.chipId.subarray(0, 8) : report.chipId;
    if (!bytesEqual(id, reportChipId)) {
      throw new AttestationError("ERR_SNP_TCB_MISMATCH", "the report's CHIP_ID is not the VCEK's hwID");
    }
  }
}

/**
 * Verifies an AMD SEV-SNP attestation report against its VCEK and AMD's ASK/ARK chain.
 *
 * @example
 * ```ts
 * const evidence = verifySnpReport(report, { vcek, chain: askArkPem, now: new Date() });
 * evidence.claims["x-ms-sevsnpvm-launchmeasurement"];
 * ```
 */
export function verifySnpReport(bytes: Uint8Array, options: VerifySnpReportOptions): VerifiedEvidence {
  return guard("ERR_SNP_FORMAT", "the SNP evidence could not be processed", () =>
    verifySnpReportUnguarded(bytes, options),
  );
}

function verifySnpReportUnguarded(bytes: Uint8Array, options: VerifySnpReportOptions): VerifiedEvidence {
  const report = parseSnpReport(bytes);
  const now = options.now ?? new Date();
  const vcek = certificateFrom(options.vcek, "VCEK");
  const signers = pemBlocks(typeof options.chain === "string" ? options.chain : "").map((der) =>
    parseCertificate(der),
  );
  const ark = signers.find((certificate) => bytesEqual(certificate.issuer, certificate.subject));
  const ask = signers.find(
    (certificate) => certificate !== ark && bytesEqual(vcek.issuer, certificate.subject),
  );
  if (ark === undefined || ask === undefined) {
    throw new AttestationError(
      "ERR_CERT_CHAIN",
      "the chain must hold the ASK that issued the VCEK and the ARK",
    );
  }
  const arkHash = spkiSha256(ark);
  const product = (Object.keys(amdArkSpkiSha256) as AmdProduct[]).find(
    (name) => amdArkSpkiSha256[name] === arkHash,
  );
  if (product === undefined || (options.product !== undefined && options.product !== product)) {
    throw new AttestationError(
      "ERR_CERT_CHAIN",
      `ARK "${ark.subjectCommonName}" is not the pinned ARK of ${options.product ?? "any AMD product"}`,
    );
  }
  verifyChain([vcek, ask, ark], { now, trustedRoots: new Set([arkHash]), what: "VCEK certificate chain" });
  checkVcekMatchesReport(vcek, report, product);
  const signature = concatBytes(report.signature.r, report.signature.s);
  if (!verifyP1363("sha384", report.signedBytes, signature, publicKeyOf(vcek))) {
    throw new AttestationError("ERR_SNP_SIGNATURE", "the report signature does not verify with the VCEK");
  }
  return {
    tee: "sevsnp",
    // AMD publishes no TCB status list: policies compare the SVN claims against minimums instead.
    tcbStatus: "NotEvaluated",
    advisoryIds: [],
    reportData: report.reportData,
    claims: snpClaims(report),
    trustAnchor: { spkiSha256: arkHash, commonName: ark.subjectCommonName },
  };
}
