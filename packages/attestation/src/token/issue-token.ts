// Attestation token issuance in MAA's shape: RS256, `kid` and `jku` in the header, `iss`, `iat`, `nbf`,
// `exp`, `jti` and the claims in the payload.
import { randomBytes, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import type { Claims } from "../claims.js";
import { AttestationError, guardAsync } from "../errors.js";

export interface TokenSigner {
  /** RSA private key (2048 bits or more). */
  readonly privateKey: KeyObject | CryptoKey;
  readonly kid: string;
  /** `iss` of every token, e.g. `https://attest.example`. */
  readonly issuer: string;
  /** The JWKS URL put in the `jku` header (informational: verifiers use their configured JWKS). */
  readonly jku?: string;
  /** Token lifetime in seconds; MAA uses 8 hours. */
  readonly lifetimeSeconds?: number;
}

export interface IssueTokenOptions {
  readonly now?: Date;
}

/**
 * Signs an attestation token over `claims`.
 *
 * @example
 * ```ts
 * const token = await issueAttestationToken({ ...evidence.claims, ...policy.issuedClaims }, signer);
 * ```
 */
export async function issueAttestationToken(
  claims: Claims,
  signer: TokenSigner,
  options: IssueTokenOptions = {},
): Promise<string> {
  return guardAsync("ERR_TOKEN_INVALID", "the token could not be signed with this signer", () =>
    signToken(claims, signer, options),
  );
}

async function signToken(claims: Claims, signer: TokenSigner, options: IssueTokenOptions): Promise<string> {
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const lifetime = signer.lifetimeSeconds ?? 8 * 3600;
  if (!Number.isInteger(lifetime) || lifetime <= 0) {
    throw new AttestationError(
      "ERR_TOKEN_INVALID",
      "token lifetime must be a positive whole number of seconds",
    );
  }
  const reserved = ["iss", "iat", "nbf", "exp", "jti"].filter((name) => name in claims);
  if (reserved.length > 0) {
    throw new AttestationError("ERR_TOKEN_CLAIM", `claims may not set ${reserved.join(", ")}`);
  }
  return new SignJWT({ ...claims })
    .setProtectedHeader({
      alg: "RS256",
      typ: "JWT",
      kid: signer.kid,
      ...(signer.jku === undefined ? {} : { jku: signer.jku }),
    })
    .setIssuer(signer.issuer)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + lifetime)
    .setJti(randomBytes(32).toString("hex"))
    .sign(signer.privateKey);
}
