// Intel SGX PCK certificate extension, OID 1.2.840.113741.1.13.1 (Intel "SGX PCK Certificate and CRL
// Profile", §1.5): PPID, TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX type.
import { AttestationError } from "../errors.js";
import { DerReader, Tag, type DerElement } from "../lib/der.js";
import type { Certificate } from "../lib/x509.js";

export const sgxExtensionOid = "1.2.840.113741.1.13.1";

export interface PckExtension {
  readonly ppid: Uint8Array;
  /** The 16 TCB component SVNs (CPUSVN). */
  readonly cpuSvn: Uint8Array;
  readonly pceSvn: number;
  readonly pceId: Uint8Array;
  readonly fmspc: Uint8Array;
  /** 0 standard, 1 scalable, 2 scalable with integrity. */
  readonly sgxType: number;
}

const parsed = new WeakMap<Certificate, PckExtension>();

/** The SGX extension of a PCK certificate (parsed once per certificate object). */
export function parsePckExtension(certificate: Certificate): PckExtension {
  let extension = parsed.get(certificate);
  if (extension === undefined) {
    extension = parseExtension(certificate);
    parsed.set(certificate, extension);
  }
  return extension;
}

function parseExtension(certificate: Certificate): PckExtension {
  const extension = certificate.extensions.get(sgxExtensionOid);
  if (extension === undefined) {
    throw new AttestationError("ERR_CERT_FORMAT", "PCK certificate has no Intel SGX extension");
  }
  const reader: DerReader = new DerReader("ERR_CERT_FORMAT", "PCK SGX extension");
  const fields = new Map<string, DerElement>();
  for (const entry of reader.sequence(reader.single(extension.value), "SGX extensions")) {
    const [oid, value] = reader.children(entry);
    if (value === undefined) {
      reader.fail("SGX extension entry without a value");
    }
    fields.set(reader.oid(oid, "SGX extension id"), value);
  }
  const field = (suffix: string): DerElement => {
    const value = fields.get(`${sgxExtensionOid}.${suffix}`);
    if (value === undefined) {
      reader.fail(`missing ${sgxExtensionOid}.${suffix}`);
    }
    return value;
  };
  const tcb = new Map<string, DerElement>();
  for (const entry of reader.sequence(field("2"), "TCB")) {
    const [oid, value] = reader.children(entry);
    if (value === undefined) {
      reader.fail("TCB entry without a value");
    }
    tcb.set(reader.oid(oid, "TCB component id"), value);
  }
  const cpuSvn = new Uint8Array(16);
  for (let i = 1; i <= 16; i++) {
    const svn = reader.smallInteger(tcb.get(`${sgxExtensionOid}.2.${i}`), `TCB component ${i}`);
    if (svn > 255) {
      reader.fail(`TCB component ${i} out of range`);
    }
    cpuSvn[i - 1] = svn;
  }
  const pceSvn = reader.smallInteger(tcb.get(`${sgxExtensionOid}.2.17`), "PCESVN");
  const pceId = reader.octetString(field("3"), "PCE-ID");
  const fmspc = reader.octetString(field("4"), "FMSPC");
  if (fmspc.length !== 6 || pceId.length !== 2) {
    reader.fail("FMSPC must be 6 bytes and PCE-ID 2 bytes");
  }
  return {
    ppid: reader.octetString(field("1"), "PPID"),
    cpuSvn,
    pceSvn,
    pceId,
    fmspc,
    sgxType: reader.smallInteger(field("5"), "SGX type", Tag.enumerated),
  };
}
