// verifyPeer: what every service and the portal check before trusting another component. Browser-safe:
// jose and the token-verify entry of @cloister/attestation only.
import { calculateJwkThumbprint, type JWK, type JSONWebKeySet } from "jose";
import {
  simulationClaim,
  verifyAttestationToken,
  type AttestationTokenClaims,
} from "@cloister/attestation/token-verify";
import { EnclaveError } from "./errors.js";

export type PeerAttestationType = "sgx" | "tdxvm" | "sevsnpvm";

export interface PeerExpectations {
  readonly jwks?: JSONWebKeySet;
  readonly jwksUri?: string | URL;
  readonly issuer: string;
  readonly now?: Date;
  /** Accepted TEE types (default: all three). */
  readonly attestationTypes?: readonly PeerAttestationType[];
  /**
   * Allowed measurements (hex; MRENCLAVE for SGX, MRTD for TDX, the launch measurement for SEV-SNP), or
   * "any" to accept every measurement, which must be said explicitly.
   */
  readonly measurements: readonly string[] | "any";
  /** Allowed SGX MRSIGNERs (hex); unchecked when absent. */
  readonly signers?: readonly string[];
  /** Allowed SGX ISV product ids (`x-ms-sgx-product-id`); unchecked when absent. */
  readonly productIds?: readonly number[];
  /** Accept debuggable TEEs (default false). */
  readonly allowDebug?: boolean;
  /** Accept tokens for simulated evidence (default false). */
  readonly allowSimulation?: boolean;
  /** The key the peer actually uses: it must be one of the keys bound in its runtime data. */
  readonly boundKey?: JWK;
  /** The OHTTP key configuration (base64url) the peer actually uses: it must be the bound one. */
  readonly ohttpKeyConfig?: string;
}

export interface PeerIdentity {
  readonly attestationType: PeerAttestationType;
  readonly measurement: string;
  readonly debuggable: boolean;
  readonly simulated: boolean;
  /** The runtime data the peer bound into its evidence (`x-ms-runtime`). */
  readonly runtime: Readonly<Record<string, unknown>>;
  readonly claims: AttestationTokenClaims;
}

const measurementClaims: Record<PeerAttestationType, string> = {
  sgx: "x-ms-sgx-mrenclave",
  tdxvm: "tdx_mrtd",
  sevsnpvm: "x-ms-sevsnpvm-launchmeasurement",
};

const debugClaims: Record<PeerAttestationType, string> = {
  sgx: "x-ms-sgx-is-debuggable",
  tdxvm: "tdx_td_attributes_debug",
  sevsnpvm: "x-ms-sevsnpvm-is-debuggable",
};

async function thumbprint(jwk: unknown): Promise<string | undefined> {
  if (typeof jwk !== "object" || jwk === null) {
    return undefined;
  }
  try {
    return await calculateJwkThumbprint(jwk, "sha256");
  } catch {
    return undefined;
  }
}

/**
 * Verifies a peer's attestation token and what it proves: signature, issuer and expiry, the TEE type, an
 * allowed measurement (and signer), not debuggable and not simulated unless allowed, and that the key the
 * peer uses is the one bound into its evidence.
 *
 * @example
 * ```ts
 * const peer = await verifyPeer(token, {
 *   jwksUri: `${attestationUrl}/certs`, issuer: attestationUrl,
 *   measurements: [expectedMrenclave], boundKey: serverJwk,
 * });
 * ```
 */
export async function verifyPeer(token: string, expectations: PeerExpectations): Promise<PeerIdentity> {
  let claims: AttestationTokenClaims;
  try {
    claims = await verifyAttestationToken(token, {
      issuer: expectations.issuer,
      ...(expectations.jwks === undefined ? {} : { jwks: expectations.jwks }),
      ...(expectations.jwksUri === undefined ? {} : { jwksUri: expectations.jwksUri }),
      ...(expectations.now === undefined ? {} : { now: expectations.now }),
    });
  } catch (cause) {
    const code =
      typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : "unknown";
    throw new EnclaveError("ERR_PEER_TOKEN", `the peer's attestation token is not valid (${code})`, {
      cause,
    });
  }
  const type = claims["x-ms-attestation-type"];
  const allowedTypes = expectations.attestationTypes ?? ["sgx", "tdxvm", "sevsnpvm"];
  if (typeof type !== "string" || !allowedTypes.includes(type as PeerAttestationType)) {
    throw new EnclaveError("ERR_PEER_TEE", `the peer's TEE type ${JSON.stringify(type)} is not accepted`);
  }
  const attestationType = type as PeerAttestationType;
  const measurement = claims[measurementClaims[attestationType]];
  if (typeof measurement !== "string") {
    throw new EnclaveError("ERR_PEER_MEASUREMENT", "the peer's token carries no measurement");
  }
  if (
    expectations.measurements !== "any" &&
    !expectations.measurements.some((allowed) => allowed.toLowerCase() === measurement.toLowerCase())
  ) {
    throw new EnclaveError("ERR_PEER_MEASUREMENT", `measurement ${measurement} is not an allowed one`);
  }
  if (expectations.signers !== undefined) {
    const signer = claims["x-ms-sgx-mrsigner"];
    if (
      typeof signer !== "string" ||
      !expectations.signers.some((s) => s.toLowerCase() === signer.toLowerCase())
    ) {
      throw new EnclaveError("ERR_PEER_MEASUREMENT", "the peer's signer (MRSIGNER) is not an allowed one");
    }
  }
  if (expectations.productIds !== undefined) {
    const productId = claims["x-ms-sgx-product-id"];
    if (typeof productId !== "number" || !expectations.productIds.includes(productId)) {
      throw new EnclaveError("ERR_PEER_MEASUREMENT", "the peer's product id is not an allowed one");
    }
  }
  const debuggable = claims[debugClaims[attestationType]] !== false;
  if (debuggable && expectations.allowDebug !== true) {
    throw new EnclaveError("ERR_PEER_DEBUG", "the peer runs in a debuggable TEE");
  }
  const simulated = claims[simulationClaim] === true;
  if (simulated && expectations.allowSimulation !== true) {
    throw new EnclaveError("ERR_PEER_SIMULATION", "the peer's evidence is simulated");
  }
  const runtimeClaim = claims["x-ms-runtime"];
  const runtime =
    typeof runtimeClaim === "object" && runtimeClaim !== null && !Array.isArray(runtimeClaim)
      ? (runtimeClaim as Record<string, unknown>)
      : {};
  if (expectations.boundKey !== undefined) {
    const expected = await thumbprint(expectations.boundKey);
    const bound = Array.isArray(runtime.keys) ? await Promise.all(runtime.keys.map(thumbprint)) : [];
    if (expected === undefined || !bound.includes(expected)) {
      throw new EnclaveError("ERR_PEER_KEY_BINDING", "the key the peer uses is not bound into its evidence");
    }
  }
  if (expectations.ohttpKeyConfig !== undefined && runtime.ohttp !== expectations.ohttpKeyConfig) {
    throw new EnclaveError(
      "ERR_PEER_KEY_BINDING",
      "the peer's OHTTP key configuration is not bound into its evidence",
    );
  }
  return { attestationType, measurement: measurement.toLowerCase(), debuggable, simulated, runtime, claims };
}

export { EnclaveError, enclaveErrorCodes, type EnclaveErrorCode } from "./errors.js";
