// Attestation token verification (RFC 7519, RFC 8725 best practice). Browser-safe: jose and our error
// type only, so the portal verifies tokens with the same code as the services.
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
} from "jose";
import { AttestationError } from "../errors.js";

/** Only asymmetric algorithms: an HS* token "signed" with a public key, or `alg: none`, never verifies. */
export const attestationTokenAlgorithms = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
];

export interface VerifyAttestationTokenOptions {
  /** The issuer's key set; or `jwksUri` to fetch it. The token's own `jku`/`x5u` headers are never used. */
  readonly jwks?: JSONWebKeySet;
  readonly jwksUri?: string | URL;
  /** Required `iss`. */
  readonly issuer: string;
  /** Verification time; defaults to now. */
  readonly now?: Date;
  readonly audience?: string;
  /** Allowed clock skew in seconds (default 0). */
  readonly clockToleranceSeconds?: number;
  /** Claims that must be present with exactly these values (JSON equality). */
  readonly expect?: Readonly<Record<string, unknown>>;
}

export type AttestationTokenClaims = JWTPayload & Record<string, unknown>;

const remoteKeySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

function keySetFor(options: VerifyAttestationTokenOptions): Parameters<typeof jwtVerify>[1] {
  if (options.jwks !== undefined) {
    return createLocalJWKSet(options.jwks);
  }
  if (options.jwksUri !== undefined) {
    const uri = String(options.jwksUri);
    let keySet = remoteKeySets.get(uri);
    if (keySet === undefined) {
      keySet = createRemoteJWKSet(new URL(uri));
      remoteKeySets.set(uri, keySet);
    }
    const remote = keySet;
    return async (header, token) => {
      try {
        return await remote(header, token);
      } catch (error) {
        if (
          error instanceof joseErrors.JWKSNoMatchingKey ||
          error instanceof joseErrors.JWKSMultipleMatchingKeys
        ) {
          throw error;
        }
        // Unreachable, non-200 or malformed key sets: the token's key cannot be known.
        throw new AttestationError("ERR_TOKEN_KEY_UNKNOWN", "the issuer's key set could not be loaded", {
          cause: error,
        });
      }
    };
  }
  throw new AttestationError("ERR_TOKEN_KEY_UNKNOWN", "no jwks or jwksUri to verify the token with");
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(stableJson).join(",")}]`;
  }
  if (typeof value === "object" && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function translate(error: unknown): AttestationError {
  if (error instanceof AttestationError) {
    return error;
  }
  if (error instanceof joseErrors.JWTExpired) {
    return new AttestationError("ERR_TOKEN_EXPIRED", "the token has expired");
  }
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    return error.claim === "nbf" || error.claim === "iat"
      ? new AttestationError("ERR_TOKEN_EXPIRED", `the token is not valid yet (${error.claim})`)
      : new AttestationError("ERR_TOKEN_CLAIM", `the token's "${error.claim}" claim is not acceptable`);
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new AttestationError("ERR_TOKEN_SIGNATURE", "the token signature does not verify");
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey || error instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return new AttestationError(
      "ERR_TOKEN_KEY_UNKNOWN",
      "no single key of the issuer's key set matches the token",
    );
  }
  if (error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JWKSInvalid) {
    return new AttestationError("ERR_TOKEN_KEY_UNKNOWN", "the issuer's key set could not be loaded");
  }
  return new AttestationError("ERR_TOKEN_INVALID", "the token is malformed or uses a disallowed algorithm");
}

/**
 * Verifies an attestation token: signature with a key from the issuer's JWKS (by `kid`), an asymmetric
 * algorithm, `iss`, `exp`/`nbf` against `now`, and any expected claims. Every failure is an
 * AttestationError (`ERR_TOKEN_*`).
 *
 * @example
 * ```ts
 * const claims = await verifyAttestationToken(token, {
 *   jwksUri: "https://attest.example/certs",
 *   issuer: "https://attest.example",
 *   expect: { "x-ms-sgx-is-debuggable": false },
 * });
 * ```
 */
export async function verifyAttestationToken(
  jwt: string,
  options: VerifyAttestationTokenOptions,
): Promise<AttestationTokenClaims> {
  try {
    if (typeof jwt !== "string" || jwt.split(".").length !== 3) {
      throw new AttestationError("ERR_TOKEN_INVALID", "a token is three base64url parts separated by dots");
    }
    const header = decodeProtectedHeader(jwt);
    if (typeof header.alg !== "string" || !attestationTokenAlgorithms.includes(header.alg)) {
      throw new AttestationError("ERR_TOKEN_INVALID", `token algorithm ${String(header.alg)} is not allowed`);
    }
    if (typeof header.kid !== "string" || header.kid.length === 0) {
      throw new AttestationError("ERR_TOKEN_KEY_UNKNOWN", "the token names no key (kid)");
    }
    const { payload } = await jwtVerify(jwt, keySetFor(options), {
      algorithms: attestationTokenAlgorithms,
      issuer: options.issuer,
      currentDate: options.now ?? new Date(),
      clockTolerance: options.clockToleranceSeconds ?? 0,
      requiredClaims: ["exp", "iat"],
      ...(options.audience === undefined ? {} : { audience: options.audience }),
    });
    for (const [name, expected] of Object.entries(options.expect ?? {})) {
      if (stableJson(payload[name]) !== stableJson(expected)) {
        throw new AttestationError(
          "ERR_TOKEN_CLAIM",
          `the token's "${name}" claim is not the expected value`,
        );
      }
    }
    return payload;
  } catch (error) {
    throw translate(error);
  }
}

export { simulationClaim } from "../claim-names.js";
