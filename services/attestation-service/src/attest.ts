// POST /attest/{type}: evidence and runtime data in, a signed MAA-format token out.
import { createHash } from "node:crypto";
import {
  AttestationError,
  evaluatePolicy,
  intelSgxRootCaSpkiSha256,
  issueAttestationToken,
  parseCertificate,
  parseQuote,
  pemBlocks,
  parseSnpReport,
  quoteFmspc,
  runtimeDataClaims,
  simulationClaim,
  verifyQuote,
  verifyRuntimeDataBinding,
  verifySnpReport,
  type Claims,
  type Policy,
  type SimulationPlatform,
  type VerificationCache,
  type VerifiedEvidence,
} from "@cloister/attestation";
import type { CollateralStore } from "./collateral-store.js";
import { ServiceError } from "./errors.js";
import type { AttestationType } from "./policies.js";
import type { SigningKey } from "./signing-key.js";

interface DataField {
  readonly data: Uint8Array;
  readonly dataType: "Binary" | "JSON";
}

export interface AttestRequest {
  readonly evidence: Uint8Array;
  readonly runtimeData: DataField | undefined;
  readonly initTimeData: DataField | undefined;
  readonly nonce: string | undefined;
}

export interface AttestContext {
  readonly now: Date;
  readonly issuer: string;
  readonly signingKey: SigningKey;
  readonly tokenLifetimeSeconds: number;
  readonly policy: Policy;
  readonly collateral: CollateralStore;
  readonly simulationPlatform: SimulationPlatform | undefined;
  readonly amdChains: readonly string[];
  /** Verified collateral, PCK chains and QE reports, reused across requests (keyed by exact bytes). */
  readonly verificationCache: VerificationCache;
}

function base64urlBytes(value: unknown, field: string): Uint8Array {
  if (typeof value !== "string" || !/^[A-Za-z0-9_\-+/]*={0,2}$/.test(value) || value.length === 0) {
    throw new ServiceError("ERR_BAD_REQUEST", `${field} must be base64url`);
  }
  return new Uint8Array(Buffer.from(value, "base64url"));
}

function dataField(value: unknown, field: string): DataField | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  const record = value as { data?: unknown; dataType?: unknown };
  if (typeof value !== "object" || (record.dataType !== "Binary" && record.dataType !== "JSON")) {
    throw new ServiceError("ERR_BAD_REQUEST", `${field} must be {data, dataType: "Binary" | "JSON"}`);
  }
  return { data: base64urlBytes(record.data, `${field}.data`), dataType: record.dataType };
}

/** Reads an MAA request body: `quote` (SGX, TDX) or `report` (OpenEnclave, SEV-SNP), and the data fields. */
export function parseAttestRequest(type: AttestationType, body: unknown): AttestRequest {
  if (typeof body !== "object" || body === null) {
    throw new ServiceError("ERR_BAD_REQUEST", "the body must be a JSON object");
  }
  const record = body as Record<string, unknown>;
  const evidenceField = type === "OpenEnclave" || type === "SevSnpVm" ? "report" : "quote";
  const nonce = record.nonce;
  if (nonce !== undefined && typeof nonce !== "string") {
    throw new ServiceError("ERR_BAD_REQUEST", "nonce must be a string");
  }
  return {
    evidence: base64urlBytes(record[evidenceField], evidenceField),
    runtimeData: dataField(record.runtimeData, "runtimeData"),
    initTimeData: dataField(record.initTimeData, "initTimeData"),
    nonce,
  };
}

/** Strips the OpenEnclave report header: {u32 version=1, u32 type=2 (remote), u64 size}. */
function openEnclaveQuote(report: Uint8Array): Uint8Array {
  const view = new DataView(report.buffer, report.byteOffset, report.byteLength);
  if (
    report.length < 16 ||
    view.getUint32(0, true) !== 1 ||
    view.getUint32(4, true) !== 2 ||
    view.getBigUint64(8, true) !== BigInt(report.length - 16)
  ) {
    throw new ServiceError("ERR_BAD_REQUEST", "report is not an OpenEnclave remote report");
  }
  return report.subarray(16);
}

function asServiceError(error: unknown): never {
  if (error instanceof ServiceError) {
    throw error;
  }
  if (error instanceof AttestationError) {
    switch (error.code) {
      case "ERR_COLLATERAL_EXPIRED":
        throw new ServiceError("ERR_COLLATERAL_EXPIRED", error.message, error.code);
      case "ERR_RUNTIME_DATA_BINDING":
        throw new ServiceError("ERR_RUNTIME_DATA_BINDING", error.message, error.code);
      case "ERR_POLICY_DENIED":
        throw new ServiceError("ERR_POLICY_DENIED", error.message, error.code);
      default:
        throw new ServiceError("ERR_EVIDENCE_INVALID", `${error.code}: ${error.message}`, error.code);
    }
  }
  throw error;
}

interface VerifiedInput {
  readonly evidence: VerifiedEvidence;
  /** Where init-time data is bound: SGX CONFIGID, TDX MRCONFIGID, SNP HOST_DATA. */
  readonly initTimeBinding: Uint8Array;
}

async function verifyIntel(
  quoteBytes: Uint8Array,
  tee: "sgx" | "tdx",
  context: Pick<AttestContext, "now" | "collateral" | "simulationPlatform" | "verificationCache">,
): Promise<VerifiedInput> {
  const quote = parseQuote(quoteBytes);
  if (quote.tee !== tee) {
    throw new ServiceError("ERR_BAD_REQUEST", `this endpoint takes ${tee.toUpperCase()} quotes`);
  }
  const fmspc = quoteFmspc(quote);
  const [, pckCa] = pemBlocks(quote.signatureData.pckCertChainPem);
  const pckCaKind =
    pckCa !== undefined && parseCertificate(pckCa).subjectCommonName.includes("Platform")
      ? "platform"
      : "processor";
  const collateral = await context.collateral.resolve(fmspc, tee, pckCaKind, context.now);
  const trustedRoots = [
    intelSgxRootCaSpkiSha256,
    ...(context.simulationPlatform === undefined ? [] : [context.simulationPlatform.rootSpkiSha256]),
  ];
  const evidence = verifyQuote(quote.raw, {
    collateral,
    now: context.now,
    trustedRoots,
    cache: context.verificationCache,
  });
  return { evidence, initTimeBinding: quote.tee === "sgx" ? quote.body.configId : quote.body.mrConfigId };
}

function verifySnp(reportField: Uint8Array, context: AttestContext): VerifiedInput {
  let parsed: { SnpReport?: unknown; VcekCertChain?: unknown };
  try {
    parsed = JSON.parse(new TextDecoder().decode(reportField)) as typeof parsed;
  } catch {
    throw new ServiceError("ERR_BAD_REQUEST", "report must be base64url JSON {SnpReport, VcekCertChain}");
  }
  const report = base64urlBytes(parsed.SnpReport, "SnpReport");
  const chain = base64urlBytes(parsed.VcekCertChain, "VcekCertChain");
  const chainText = new TextDecoder().decode(chain);
  // VcekCertChain: the VCEK (DER), or PEM with the VCEK first and optionally the ASK and ARK.
  const vcek = chainText.includes("-----BEGIN CERTIFICATE-----") ? chainText : chain;
  const signers = chainText.includes("-----BEGIN CERTIFICATE-----")
    ? [chainText, ...context.amdChains]
    : context.amdChains;
  let lastError: unknown = new ServiceError("ERR_EVIDENCE_INVALID", "no AMD certificate chain is configured");
  for (const signerChain of signers) {
    try {
      const evidence = verifySnpReport(report, { vcek, chain: signerChain, now: context.now });
      return { evidence, initTimeBinding: parseSnpReport(report).hostData };
    } catch (error) {
      lastError = error;
    }
  }
  return asServiceError(lastError);
}

function checkInitTimeBinding(data: Uint8Array, binding: Uint8Array): void {
  const digest = createHash("sha256").update(data).digest();
  const matches = binding.length >= 32 && Buffer.compare(Buffer.from(binding.subarray(0, 32)), digest) === 0;
  if (!matches || binding.subarray(32).some((byte) => byte !== 0)) {
    throw new ServiceError("ERR_RUNTIME_DATA_BINDING", "the evidence does not bind the init-time data");
  }
}

/**
 * Verifies an SGX or TDX quote against the service's trust anchors and collateral, as `attest` does, with no
 * policy: for another replica's evidence (its signing key's certificate).
 */
export async function verifyIntelEvidence(
  quoteBytes: Uint8Array,
  context: Pick<AttestContext, "now" | "collateral" | "simulationPlatform" | "verificationCache">,
): Promise<VerifiedEvidence> {
  try {
    const tee = parseQuote(quoteBytes).tee;
    return (await verifyIntel(quoteBytes, tee, context)).evidence;
  } catch (error) {
    return asServiceError(error);
  }
}

/** Verifies the evidence, binds the data, applies the policy and signs the token. */
export async function attest(
  type: AttestationType,
  request: AttestRequest,
  context: AttestContext,
): Promise<string> {
  try {
    const verified =
      type === "SevSnpVm"
        ? verifySnp(request.evidence, context)
        : await verifyIntel(
            type === "OpenEnclave" ? openEnclaveQuote(request.evidence) : request.evidence,
            type === "TdxVm" ? "tdx" : "sgx",
            context,
          );
    const { evidence } = verified;
    const claims: Record<string, Claims[string]> = { ...evidence.claims };
    if (request.runtimeData !== undefined) {
      verifyRuntimeDataBinding(request.runtimeData.data, evidence.reportData);
      Object.assign(claims, runtimeDataClaims(request.runtimeData.data, request.runtimeData.dataType));
    }
    if (request.initTimeData !== undefined) {
      checkInitTimeBinding(request.initTimeData.data, verified.initTimeBinding);
      const init = runtimeDataClaims(request.initTimeData.data, request.initTimeData.dataType);
      claims["x-ms-inittime"] = init["x-ms-runtime"] ?? init["x-ms-sgx-ehd"] ?? null;
    }
    if (evidence.tee !== "sevsnp" && evidence.trustAnchor.spkiSha256 !== intelSgxRootCaSpkiSha256) {
      claims[simulationClaim] = true;
    }
    const policy = evaluatePolicy(context.policy, claims);
    return await issueAttestationToken(
      {
        ...claims,
        ...policy.issuedClaims,
        "x-ms-policy": policy.issuedClaims,
        "x-ms-policy-hash": policy.policyHash,
        "x-ms-ver": "1.0",
        ...(request.nonce === undefined ? {} : { nonce: request.nonce }),
      },
      {
        privateKey: context.signingKey.privateKey,
        kid: context.signingKey.kid,
        issuer: context.issuer,
        jku: `${context.issuer}/certs`,
        lifetimeSeconds: context.tokenLifetimeSeconds,
      },
      { now: context.now },
    );
  } catch (error) {
    return asServiceError(error);
  }
}
