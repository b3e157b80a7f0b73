// Certificate path validation against roots pinned by the SHA-256 of their SubjectPublicKeyInfo.
import { AttestationError } from "../errors.js";
import { bytesEqual } from "./bytes.js";
import { publicKeyOf, spkiSha256, verifySignature, type Certificate, type RevocationList } from "./x509.js";

/**
 * Remembers which (certificate, issuer) pairs one verification run already checked, so a chain shared by
 * several collateral items (Intel's TCB-signing chain signs both TCB info and QE identity) is verified once
 * per run. A memo never outlives the run that made it.
 */
export type SignatureMemo = Map<Certificate, Certificate>;

export interface ChainOptions {
  readonly now: Date;
  readonly trustedRoots: ReadonlySet<string>;
  /** CRLs already verified with {@link verifyRevocationList}; each applies to certificates of its issuer. */
  readonly revocationLists?: readonly RevocationList[];
  /** Used in error messages: "PCK certificate chain", "TCB info issuer chain", … */
  readonly what: string;
  readonly memo?: SignatureMemo;
}

/**
 * Pinned roots whose self-signature has been checked. A pinned root's trust comes from the pin, not from its
 * self-signature; the check only guards the integrity of its own fields, so like a trust store we do it once
 * per root certificate (parsed certificates are cached by their exact bytes) instead of on every call.
 */
const validatedAnchors = new WeakSet<Certificate>();

export function isSignedBy(subject: Certificate, issuer: Certificate, memo?: SignatureMemo): boolean {
  if (memo?.get(subject) === issuer) {
    return true;
  }
  if (!bytesEqual(subject.issuer, issuer.subject)) {
    return false;
  }
  const ok = verifySignature(subject.signatureAlgorithm, subject.tbs, subject.signature, publicKeyOf(issuer));
  if (ok) {
    memo?.set(subject, issuer);
  }
  return ok;
}

/**
 * Validates `chain` (leaf first, root last): each certificate is signed by the next, every issuer is a CA,
 * the root is self-signed and pinned, every certificate is valid at `now`, and none is revoked by a CRL of
 * its issuer. Returns the root.
 */
export function verifyChain(chain: readonly Certificate[], options: ChainOptions): Certificate {
  const { what, now } = options;
  const root = chain[chain.length - 1];
  if (root === undefined || chain.length < 2) {
    throw new AttestationError("ERR_CERT_CHAIN", `${what}: needs at least a leaf and a root`);
  }
  if (!options.trustedRoots.has(spkiSha256(root))) {
    throw new AttestationError(
      "ERR_CERT_CHAIN",
      `${what}: root "${root.subjectCommonName}" is not a pinned root`,
    );
  }
  if (!validatedAnchors.has(root)) {
    if (!isSignedBy(root, root, options.memo)) {
      throw new AttestationError(
        "ERR_CERT_CHAIN",
        `${what}: root "${root.subjectCommonName}" is not self-signed`,
      );
    }
    validatedAnchors.add(root);
  }
  for (let i = 0; i < chain.length; i++) {
    const certificate = chain[i] as Certificate;
    if (now < certificate.notBefore || now > certificate.notAfter) {
      throw new AttestationError(
        "ERR_CERT_EXPIRED",
        `${what}: "${certificate.subjectCommonName}" is not valid at ${now.toISOString()}`,
      );
    }
    if (i === chain.length - 1) {
      break;
    }
    const issuer = chain[i + 1] as Certificate;
    if (!issuer.isCa) {
      throw new AttestationError("ERR_CERT_CHAIN", `${what}: "${issuer.subjectCommonName}" is not a CA`);
    }
    if (!isSignedBy(certificate, issuer, options.memo)) {
      throw new AttestationError(
        "ERR_CERT_CHAIN",
        `${what}: "${certificate.subjectCommonName}" is not signed by "${issuer.subjectCommonName}"`,
      );
    }
    for (const crl of options.revocationLists ?? []) {
      if (bytesEqual(crl.issuer, certificate.issuer) && crl.revokedSerials.has(certificate.serialHex)) {
        throw new AttestationError(
          "ERR_CERT_REVOKED",
          `${what}: "${certificate.subjectCommonName}" (serial ${certificate.serialHex}) is revoked`,
        );
      }
    }
  }
  return root;
}

/** Checks a CRL's issuer, signature and validity window against the certificate that issued it. */
export function verifyRevocationList(
  crl: RevocationList,
  issuer: Certificate,
  now: Date,
  what: string,
): RevocationList {
  if (!bytesEqual(crl.issuer, issuer.subject)) {
    throw new AttestationError(
      "ERR_CRL_INVALID",
      `${what}: issued by someone other than "${issuer.subjectCommonName}"`,
    );
  }
  if (!verifySignature(crl.signatureAlgorithm, crl.tbs, crl.signature, publicKeyOf(issuer))) {
    throw new AttestationError("ERR_COLLATERAL_SIGNATURE", `${what}: signature does not verify`);
  }
  if (now < crl.thisUpdate || (crl.nextUpdate !== undefined && now > crl.nextUpdate)) {
    throw new AttestationError("ERR_COLLATERAL_EXPIRED", `${what}: not valid at ${now.toISOString()}`);
  }
  return crl;
}
