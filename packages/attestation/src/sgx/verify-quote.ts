// Intel DCAP quote verification (SGX quote v3, TDX quote v4/v5), the steps of Intel's QVL:
// PCK chain and CRLs → QE report signature → QE report-data binding → quote signature →
// collateral signatures and validity → QE identity → TCB level → merged status.
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { AttestationError, guard } from "../errors.js";
import { bytesEqual, fromHex, isAllZero, toHex } from "../lib/bytes.js";
import { verifyChain, verifyRevocationList, type SignatureMemo } from "../lib/chain.js";
import { memoizeParse } from "../lib/parse-cache.js";
import { VerificationCache } from "../lib/verification-cache.js";
import {
  parseCertificate,
  parseRevocationList,
  pemBlocks,
  pemBodies,
  publicKeyOf,
  sha256Hex,
  spkiSha256,
  verifyP1363,
  type Certificate,
  type RevocationList,
} from "../lib/x509.js";
import { intelSgxRootCaSpkiSha256 } from "../trusted-roots.js";
import { sgxClaims, tdxClaims, type Claims } from "../claims.js";
import {
  parseQeIdentity,
  parseTcbInfo,
  type CollateralBundle,
  type QeIdentity,
  type TcbInfo,
  type TcbStatus,
} from "./collateral.js";
import { parsePckExtension, type PckExtension } from "./pck-extension.js";
import { intelQeVendorIdHex, parseQuote, type Quote } from "./quote.js";
import { convergeTcbStatus, evaluatePlatformTcb, evaluateQeIdentity, type TcbResult } from "./tcb.js";

/**
 * A root of trust: the hex SHA-256 of its SubjectPublicKeyInfo, or the root certificate itself (DER bytes
 * or PEM text), from which that hash is taken.
 */
export type TrustedRoot = string | Uint8Array;

export interface VerifyQuoteOptions {
  /** Intel collateral for the quote's FMSPC. Required unless `skipTcb`. */
  readonly collateral?: CollateralBundle;
  /** The verification time, for certificates, CRLs and collateral. Defaults to the current time. */
  readonly now?: Date;
  /** Verify signatures, the chain and the bindings only; report `tcbStatus: "NotEvaluated"`. */
  readonly skipTcb?: boolean;
  /** Roots to accept instead of Intel's SGX Root CA (the simulation platform passes its own). */
  readonly trustedRoots?: readonly TrustedRoot[];
  /**
   * Reuse verified collateral, PCK chains and QE report signatures, keyed by their exact bytes and kept
   * within their validity windows. The quote's own signature and binding are always checked.
   */
  readonly cache?: VerificationCache;
}

export type EvidenceTcbStatus = TcbStatus | "NotEvaluated";

/** What verified evidence proves. Shared by SGX, TDX and SEV-SNP verification. */
export interface VerifiedEvidence {
  readonly tee: "sgx" | "tdx" | "sevsnp";
  readonly tcbStatus: EvidenceTcbStatus;
  readonly advisoryIds: readonly string[];
  /** The 64 bytes of report data the TEE put in its evidence. */
  readonly reportData: Uint8Array;
  /** The MAA claim set for this TEE (`x-ms-sgx-*`, `tdx_*`, `x-ms-sevsnpvm-*`). */
  readonly claims: Claims;
  /** The root the evidence chains to. */
  readonly trustAnchor: { readonly spkiSha256: string; readonly commonName: string };
  /** The TCB level's date, when the TCB was evaluated. */
  readonly tcbDate?: string;
}

// Cached per certificate (by its base64 text), so the root and PCK CA that both the quote and the collateral
// carry are one object, and a signature checked once in a run is not checked again in that run.
const parseCertificateBase64 = memoizeParse((base64: string): Certificate =>
  parseCertificate(new Uint8Array(Buffer.from(base64, "base64"))),
);

function parseCertificateChainPem(pem: string): Certificate[] {
  return pemBodies(pem).map((body) => parseCertificateBase64(body.replace(/\s+/g, "")));
}

/** Collateral documents repeat across quotes; their hashes (for x-ms-sgx-collateral) are memoized. */
const collateralHash = memoizeParse(sha256Hex);

const parseCrlText = memoizeParse((text: string): RevocationList => {
  const trimmed = text.trim();
  const der = trimmed.startsWith("-----BEGIN") ? pemBlocks(trimmed, "X509 CRL")[0] : fromHex(trimmed);
  if (der === undefined) {
    throw new AttestationError("ERR_CRL_INVALID", "CRL is neither hex-encoded DER nor PEM");
  }
  return parseRevocationList(der);
});

const parseTcbInfoText = memoizeParse(parseTcbInfo);
const parseQeIdentityText = memoizeParse(parseQeIdentity);

/** Normalises trusted roots to a set of SPKI SHA-256 hex strings. */
export function trustedRootSet(roots: readonly TrustedRoot[] | undefined): ReadonlySet<string> {
  if (roots === undefined) {
    return new Set([intelSgxRootCaSpkiSha256]);
  }
  const out = new Set<string>();
  for (const root of roots) {
    if (typeof root === "string" && /^[0-9a-f]{64}$/i.test(root)) {
      out.add(root.toLowerCase());
    } else if (typeof root === "string") {
      for (const der of pemBlocks(root)) {
        out.add(spkiSha256(parseCertificate(der)));
      }
    } else {
      out.add(spkiSha256(parseCertificate(root)));
    }
  }
  return out;
}

function chainFromPem(pem: string, what: string): Certificate[] {
  const chain = parseCertificateChainPem(pem);
  if (chain.length < 2) {
    throw new AttestationError("ERR_CERT_CHAIN", `${what} must hold at least two certificates`);
  }
  return chain;
}

/** Importing a key is parsing (about 65 µs here); a platform's attestation key repeats across its quotes. */
const attestationKeyObject = memoizeParse((hex: string): KeyObject => {
  try {
    return createPublicKey({
      key: {
        kty: "EC",
        crv: "P-256",
        x: Buffer.from(hex.slice(0, 64), "hex").toString("base64url"),
        y: Buffer.from(hex.slice(64, 128), "hex").toString("base64url"),
      },
      format: "jwk",
    });
  } catch (cause) {
    throw new AttestationError("ERR_QUOTE_SIGNATURE", "attestation key is not a valid P-256 point", {
      cause,
    });
  }
});

const collateralFields = [
  "pck_crl_issuer_chain",
  "root_ca_crl",
  "pck_crl",
  "tcb_info_issuer_chain",
  "tcb_info",
  "tcb_info_signature",
  "qe_identity_issuer_chain",
  "qe_identity",
  "qe_identity_signature",
] as const;

interface VerifiedCollateral {
  readonly tcbInfo: TcbInfo;
  readonly qeIdentity: QeIdentity;
  readonly revocationLists: readonly RevocationList[];
  readonly hashes: Record<string, string>;
  /** When every certificate, CRL and document checked here is valid. */
  readonly validFrom: Date;
  readonly validUntil: Date;
}

function verifySignedDocument(
  text: string,
  signatureHex: string,
  issuerChainPem: string,
  what: string,
  context: {
    now: Date;
    trustedRoots: ReadonlySet<string>;
    revocationLists: readonly RevocationList[];
    memo: SignatureMemo;
  },
): void {
  const chain = chainFromPem(issuerChainPem, `${what} issuer chain`);
  verifyChain(chain, { ...context, what: `${what} issuer chain` });
  const signature = fromHex(signatureHex);
  if (signature?.length !== 64) {
    throw new AttestationError("ERR_COLLATERAL_FORMAT", `${what} signature must be 64 hex-encoded bytes`);
  }
  const signer = chain[0] as Certificate;
  if (!verifyP1363("sha256", new TextEncoder().encode(text), signature, publicKeyOf(signer))) {
    throw new AttestationError("ERR_COLLATERAL_SIGNATURE", `${what} signature does not verify`);
  }
}

function checkWindow(issueDate: Date, nextUpdate: Date, now: Date, what: string): void {
  if (now < issueDate || now > nextUpdate) {
    throw new AttestationError(
      "ERR_COLLATERAL_EXPIRED",
      `${what} is valid from ${issueDate.toISOString()} to ${nextUpdate.toISOString()}, not at ${now.toISOString()}`,
    );
  }
}

/** Fails with ERR_COLLATERAL_FORMAT unless every field of the bundle is a string. */
function checkCollateralShape(collateral: CollateralBundle): void {
  const untrusted: unknown = collateral;
  if (typeof untrusted !== "object" || untrusted === null) {
    throw new AttestationError("ERR_COLLATERAL_FORMAT", "collateral must be an object");
  }
  for (const field of collateralFields) {
    if (typeof collateral[field] !== "string") {
      throw new AttestationError("ERR_COLLATERAL_FORMAT", `collateral.${field} must be a string`);
    }
  }
}

/** Verifies collateral whose shape {@link checkCollateralShape} has checked. */
function verifyCollateral(
  collateral: CollateralBundle,
  root: Certificate,
  quote: Quote,
  now: Date,
  trustedRoots: ReadonlySet<string>,
  memo: SignatureMemo,
): VerifiedCollateral {
  const rootCrl = verifyRevocationList(parseCrlText(collateral.root_ca_crl), root, now, "root CA CRL");
  const pckCrlIssuerChain = chainFromPem(collateral.pck_crl_issuer_chain, "PCK CRL issuer chain");
  verifyChain(pckCrlIssuerChain, {
    now,
    trustedRoots,
    revocationLists: [rootCrl],
    what: "PCK CRL issuer chain",
    memo,
  });
  const pckCrl = verifyRevocationList(
    parseCrlText(collateral.pck_crl),
    pckCrlIssuerChain[0] as Certificate,
    now,
    "PCK CRL",
  );
  const revocationLists = [rootCrl, pckCrl];
  const context = { now, trustedRoots, revocationLists, memo };
  verifySignedDocument(
    collateral.tcb_info,
    collateral.tcb_info_signature,
    collateral.tcb_info_issuer_chain,
    "TCB info",
    context,
  );
  verifySignedDocument(
    collateral.qe_identity,
    collateral.qe_identity_signature,
    collateral.qe_identity_issuer_chain,
    "QE identity",
    context,
  );
  const tcbInfo = parseTcbInfoText(collateral.tcb_info);
  const qeIdentity = parseQeIdentityText(collateral.qe_identity);
  checkWindow(tcbInfo.issueDate, tcbInfo.nextUpdate, now, "TCB info");
  checkWindow(qeIdentity.issueDate, qeIdentity.nextUpdate, now, "QE identity");
  const expectedTcbId = quote.tee === "sgx" ? "SGX" : "TDX";
  const expectedQeId = quote.tee === "sgx" ? "QE" : "TD_QE";
  if (tcbInfo.id !== expectedTcbId || (quote.tee === "tdx" && tcbInfo.version < 3)) {
    throw new AttestationError(
      "ERR_COLLATERAL_MISMATCH",
      `a ${quote.tee.toUpperCase()} quote needs ${expectedTcbId} TCB info, got ${tcbInfo.id} v${tcbInfo.version}`,
    );
  }
  if (qeIdentity.id !== expectedQeId) {
    throw new AttestationError(
      "ERR_COLLATERAL_MISMATCH",
      `a ${quote.tee.toUpperCase()} quote needs ${expectedQeId} identity`,
    );
  }
  // Hash the CRL's DER, not its hex text: the same CRL in upper or lower case is the same collateral.
  const crlHash = sha256Hex(rootCrl.der);
  const certificates = [
    root,
    ...pckCrlIssuerChain,
    ...chainFromPem(collateral.tcb_info_issuer_chain, "TCB info issuer chain"),
    ...chainFromPem(collateral.qe_identity_issuer_chain, "QE identity issuer chain"),
  ];
  const starts = [
    ...certificates.map((certificate) => certificate.notBefore.getTime()),
    rootCrl.thisUpdate.getTime(),
    pckCrl.thisUpdate.getTime(),
    tcbInfo.issueDate.getTime(),
    qeIdentity.issueDate.getTime(),
  ];
  const ends = [
    ...certificates.map((certificate) => certificate.notAfter.getTime()),
    rootCrl.nextUpdate?.getTime() ?? Number.POSITIVE_INFINITY,
    pckCrl.nextUpdate?.getTime() ?? Number.POSITIVE_INFINITY,
    tcbInfo.nextUpdate.getTime(),
    qeIdentity.nextUpdate.getTime(),
  ];
  return {
    validFrom: new Date(Math.max(...starts)),
    validUntil: new Date(Math.min(...ends)),
    tcbInfo,
    qeIdentity,
    revocationLists,
    hashes: {
      qeidcertshash: collateralHash(collateral.qe_identity_issuer_chain),
      qeidcrlhash: crlHash,
      qeidhash: collateralHash(collateral.qe_identity),
      tcbinfocertshash: collateralHash(collateral.tcb_info_issuer_chain),
      tcbinfocrlhash: crlHash,
      tcbinfohash: collateralHash(collateral.tcb_info),
    },
  };
}

function verifyQuoteUnsafe(bytes: Uint8Array, options: VerifyQuoteOptions): VerifiedEvidence {
  const quote = parseQuote(bytes);
  if (toHex(quote.header.qeVendorId) !== intelQeVendorIdHex) {
    throw new AttestationError("ERR_QUOTE_UNSUPPORTED", "the quote was not made by Intel's quoting enclave");
  }
  const now = options.now ?? new Date();
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new AttestationError("ERR_COLLATERAL_FORMAT", "`now` must be a valid Date");
  }
  const trustedRoots = trustedRootSet(options.trustedRoots);
  const memo: SignatureMemo = new Map();
  const signatureData = quote.signatureData;
  const pckChain = chainFromPem(signatureData.pckCertChainPem, "PCK certificate chain");
  const pckLeaf = pckChain[0] as Certificate;
  const root = pckChain[pckChain.length - 1] as Certificate;

  let collateral: VerifiedCollateral | undefined;
  if (options.skipTcb === true) {
    verifyChain(pckChain, { now, trustedRoots, what: "PCK certificate chain", memo });
  } else {
    if (options.collateral === undefined) {
      throw new AttestationError("ERR_COLLATERAL_MISSING", "collateral is required unless skipTcb is set");
    }
    // The root must be pinned before its CRL is trusted.
    if (!trustedRoots.has(spkiSha256(root))) {
      throw new AttestationError(
        "ERR_CERT_CHAIN",
        `PCK certificate chain: root "${root.subjectCommonName}" is not a pinned root`,
      );
    }
    const bundle = options.collateral;
    checkCollateralShape(bundle);
    const cache = options.cache;
    const collateralKey =
      cache === undefined
        ? ""
        : VerificationCache.key(
            "collateral",
            quote.tee,
            spkiSha256(root),
            [...trustedRoots].sort().join(","),
            ...collateralFields.map((field) => bundle[field]),
          );
    collateral = cache?.get(collateralKey, now) as VerifiedCollateral | undefined;
    if (collateral === undefined) {
      collateral = verifyCollateral(bundle, root, quote, now, trustedRoots, memo);
      cache?.set(collateralKey, collateral, collateral.validFrom, collateral.validUntil);
    }
    const chainKey =
      cache === undefined
        ? ""
        : VerificationCache.key("pck-chain", collateralKey, signatureData.pckCertChainPem);
    if (cache?.get(chainKey, now) !== true) {
      verifyChain(pckChain, {
        now,
        trustedRoots,
        revocationLists: collateral.revocationLists,
        what: "PCK certificate chain",
        memo,
      });
      const from = Math.max(...pckChain.map((certificate) => certificate.notBefore.getTime()));
      const until = Math.min(...pckChain.map((certificate) => certificate.notAfter.getTime()));
      cache?.set(chainKey, true, new Date(from), new Date(Math.min(until, collateral.validUntil.getTime())));
    }
    // Revocation is only checked if the PCK CRL is the one of the CA that issued this PCK.
    if (!collateral.revocationLists.some((crl) => bytesEqual(crl.issuer, pckLeaf.issuer))) {
      throw new AttestationError(
        "ERR_COLLATERAL_MISMATCH",
        "the PCK CRL is not from the CA that issued the PCK",
      );
    }
  }

  // QE report: signed by the PCK key; its report data binds the attestation key (Intel DCAP, §QE report).
  const qeReportKey =
    options.cache === undefined
      ? ""
      : VerificationCache.key(
          "qe-report",
          signatureData.qeReport.raw,
          signatureData.qeReportSignature,
          pckLeaf.der,
        );
  if (options.cache?.get(qeReportKey, now) !== true) {
    if (
      !verifyP1363(
        "sha256",
        signatureData.qeReport.raw,
        signatureData.qeReportSignature,
        publicKeyOf(pckLeaf),
      )
    ) {
      throw new AttestationError(
        "ERR_QE_REPORT_SIGNATURE",
        "the QE report is not signed by the PCK certificate",
      );
    }
    options.cache?.set(qeReportKey, true, pckLeaf.notBefore, pckLeaf.notAfter);
  }
  const binding = createHash("sha256")
    .update(signatureData.attestationKey)
    .update(signatureData.qeAuthData)
    .digest();
  const qeReportData = signatureData.qeReport.reportData;
  if (!bytesEqual(qeReportData.subarray(0, 32), binding) || !isAllZero(qeReportData.subarray(32))) {
    throw new AttestationError("ERR_QE_BINDING", "the QE report data does not bind the attestation key");
  }
  if (
    !verifyP1363(
      "sha256",
      quote.signedBytes,
      signatureData.signature,
      attestationKeyObject(toHex(signatureData.attestationKey)),
    )
  ) {
    throw new AttestationError(
      "ERR_QUOTE_SIGNATURE",
      "the quote signature does not verify with its attestation key",
    );
  }

  const pck: PckExtension = parsePckExtension(pckLeaf);
  let tcb: (TcbResult & { tcbDate?: string }) | undefined;
  if (collateral !== undefined) {
    const { tcbInfo, qeIdentity } = collateral;
    if (!bytesEqual(tcbInfo.fmspc, pck.fmspc) || !bytesEqual(tcbInfo.pceId, pck.pceId)) {
      throw new AttestationError(
        "ERR_COLLATERAL_MISMATCH",
        `TCB info is for FMSPC ${toHex(tcbInfo.fmspc)}, the PCK certificate for FMSPC ${toHex(pck.fmspc)}`,
      );
    }
    const qeStatus = evaluateQeIdentity(signatureData.qeReport, qeIdentity);
    const platform = evaluatePlatformTcb(tcbInfo, {
      cpuSvn: pck.cpuSvn,
      pceSvn: pck.pceSvn,
      ...(quote.tee === "tdx" ? { tdReport: quote.body } : {}),
    });
    tcb = { ...convergeTcbStatus(platform, qeStatus), tcbDate: platform.tcbDate };
    if (tcb.status === "Revoked") {
      throw new AttestationError(
        "ERR_TCB_REVOKED",
        `the platform's TCB level (FMSPC ${toHex(pck.fmspc)}) is revoked`,
      );
    }
  }
  const tcbStatus: EvidenceTcbStatus = tcb?.status ?? "NotEvaluated";
  const advisoryIds = tcb?.advisoryIds ?? [];
  const trustAnchor = { spkiSha256: spkiSha256(root), commonName: root.subjectCommonName };
  const collateralHashes = { ...collateral?.hashes, quotehash: sha256Hex(quote.raw) };
  if (quote.tee === "sgx") {
    return {
      tee: "sgx",
      tcbStatus,
      advisoryIds,
      reportData: quote.body.reportData,
      claims: sgxClaims(quote.body, collateralHashes),
      trustAnchor,
      ...(tcb?.tcbDate === undefined ? {} : { tcbDate: tcb.tcbDate }),
    };
  }
  return {
    tee: "tdx",
    tcbStatus,
    advisoryIds,
    reportData: quote.body.reportData,
    claims: tdxClaims(quote.body, tcbStatus, advisoryIds),
    trustAnchor,
    ...(tcb?.tcbDate === undefined ? {} : { tcbDate: tcb.tcbDate }),
  };
}

/**
 * Fully verifies an Intel SGX (v3) or TDX (v4, v5) DCAP quote against a pinned root and Intel collateral,
 * and returns the MAA claim set. Any failure, however malformed the input, is an {@link AttestationError}.
 * Acceptable TCB statuses are a policy decision: this function reports the status, and rejects only
 * `Revoked` TCB levels and platforms that match no level.
 *
 * @example
 * ```ts
 * const evidence = verifyQuote(quote, { collateral, now: new Date("2025-07-04T10:28:44Z") });
 * evidence.tcbStatus; // "ConfigurationAndSWHardeningNeeded"
 * evidence.claims["x-ms-sgx-mrenclave"];
 * ```
 */
export function verifyQuote(quote: Uint8Array, options: VerifyQuoteOptions = {}): VerifiedEvidence {
  return guard("ERR_QUOTE_FORMAT", "the quote could not be processed", () =>
    verifyQuoteUnsafe(quote, options),
  );
}

/**
 * The FMSPC (hex) from a quote's PCK certificate, to look up its collateral before verification. The value
 * is unverified until {@link verifyQuote} has checked the chain.
 */
export function quoteFmspc(quote: Quote): string {
  return guard("ERR_CERT_FORMAT", "the quote's PCK certificate could not be read", () => {
    const [leaf] = chainFromPem(quote.signatureData.pckCertChainPem, "PCK certificate chain");
    if (leaf === undefined) {
      throw new AttestationError("ERR_CERT_CHAIN", "the quote has no PCK certificate");
    }
    return toHex(parsePckExtension(leaf).fmspc);
  });
}
