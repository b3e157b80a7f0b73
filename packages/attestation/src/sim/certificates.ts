// X.509 certificate and CRL construction (RFC 5280) for the simulation platform and for tests that need
// their own CAs. Node-only: keys are node:crypto KeyObjects.
import { createHash, createPublicKey, sign, type KeyObject } from "node:crypto";
import { der, derTlv, Tag } from "../lib/der.js";
import { Oid } from "../lib/x509.js";

export interface DistinguishedName {
  readonly commonName: string;
  readonly organization?: string;
  readonly country?: string;
}

export function encodeName(name: DistinguishedName): Uint8Array {
  const attribute = (oid: string, value: Uint8Array): Uint8Array =>
    der.set(der.sequence(der.oid(oid), value));
  const printable = (text: string): Uint8Array => derTlv(Tag.printableString, new TextEncoder().encode(text));
  return der.sequence(
    attribute(Oid.commonName, der.utf8String(name.commonName)),
    ...(name.organization === undefined ? [] : [attribute("2.5.4.10", der.utf8String(name.organization))]),
    ...(name.country === undefined ? [] : [attribute("2.5.4.6", printable(name.country))]),
  );
}

function signatureAlgorithmFor(key: KeyObject): Uint8Array {
  return key.asymmetricKeyType === "ec"
    ? der.sequence(der.oid(Oid.ecdsaWithSha256))
    : der.sequence(der.oid(Oid.sha256WithRsa), der.null());
}

function signDer(tbs: Uint8Array, key: KeyObject): Uint8Array {
  return der.sequence(
    tbs,
    signatureAlgorithmFor(key),
    der.bitString(new Uint8Array(sign("sha256", tbs, key))),
  );
}

export function extension(oid: string, critical: boolean, value: Uint8Array): Uint8Array {
  return der.sequence(der.oid(oid), ...(critical ? [der.boolean(true)] : []), der.octetString(value));
}

/** keyUsage bits, RFC 5280 §4.2.1.3 (bit 0 is the most significant bit of the first octet). */
export function keyUsageExtension(bits: readonly number[]): Uint8Array {
  let value = 0;
  for (const bit of bits) {
    value |= 0x80 >> bit;
  }
  const lowest = Math.max(...bits);
  return extension(Oid.keyUsage, true, derTlv(Tag.bitString, Uint8Array.of(7 - lowest, value)));
}

export function basicConstraintsExtension(isCa: boolean, pathLength?: number): Uint8Array {
  const fields = isCa
    ? [der.boolean(true), ...(pathLength === undefined ? [] : [der.integer(pathLength)])]
    : [];
  return extension(Oid.basicConstraints, true, der.sequence(...fields));
}

export function subjectKeyIdentifierExtension(spki: Uint8Array): Uint8Array {
  return extension(
    "2.5.29.14",
    false,
    der.octetString(createHash("sha1").update(spki).digest().subarray(0, 20)),
  );
}

export interface CertificateTemplate {
  readonly serial: Uint8Array;
  readonly issuer: DistinguishedName;
  readonly subject: DistinguishedName;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The subject's key; a private key is reduced to its public half. */
  readonly publicKey: KeyObject;
  readonly extensions: readonly Uint8Array[];
  readonly signingKey: KeyObject;
}

export function buildCertificate(template: CertificateTemplate): Uint8Array {
  const spki = new Uint8Array(createPublicKey(template.publicKey).export({ format: "der", type: "spki" }));
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)),
    der.unsignedInteger(template.serial),
    signatureAlgorithmFor(template.signingKey),
    encodeName(template.issuer),
    der.sequence(der.time(template.notBefore), der.time(template.notAfter)),
    encodeName(template.subject),
    spki,
    der.explicit(3, der.sequence(subjectKeyIdentifierExtension(spki), ...template.extensions)),
  );
  return signDer(tbs, template.signingKey);
}

export interface RevocationListTemplate {
  readonly issuer: DistinguishedName;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  /** Revoked serial numbers (hex). */
  readonly revokedSerials: readonly string[];
  readonly crlNumber: number;
  readonly signingKey: KeyObject;
}

export function buildRevocationList(template: RevocationListTemplate): Uint8Array {
  const revoked = template.revokedSerials.map((serialHex) =>
    der.sequence(der.unsignedInteger(Buffer.from(serialHex, "hex")), der.time(template.thisUpdate)),
  );
  const tbs = der.sequence(
    der.integer(1),
    signatureAlgorithmFor(template.signingKey),
    encodeName(template.issuer),
    der.time(template.thisUpdate),
    der.time(template.nextUpdate),
    ...(revoked.length === 0 ? [] : [der.sequence(...revoked)]),
    der.explicit(0, der.sequence(extension(Oid.crlNumber, false, der.integer(template.crlNumber)))),
  );
  return signDer(tbs, template.signingKey);
}

/** subjectAltName (RFC 5280 §4.2.1.6) with IPv4 addresses and DNS names, for TLS server certificates. */
export function subjectAltNameExtension(names: {
  ips?: readonly string[];
  dnsNames?: readonly string[];
}): Uint8Array {
  const entries = [
    ...(names.dnsNames ?? []).map((name) => derTlv(0x82, new TextEncoder().encode(name))),
    ...(names.ips ?? []).map((ip) => derTlv(0x87, Uint8Array.from(ip.split(".").map(Number)))),
  ];
  return extension("2.5.29.17", false, der.sequence(...entries));
}
