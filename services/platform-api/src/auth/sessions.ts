// Staff sessions. Locally, a JWT (ES256) signed by a key derived inside the TEE from the platform's system key,
// so every replica verifies every replica's sessions and a restart signs nobody out; or, by configuration,
// tokens from an external OpenID Connect provider (Entra ID) whose claims map to a tenant and a role. Routes
// only see a Principal, whichever verified it.
import { createECDH, createPrivateKey, createPublicKey, hkdfSync, type KeyObject } from "node:crypto";
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  exportJWK,
  generateKeyPair,
  jwtVerify,
  SignJWT,
  type JWK,
  type JWTPayload,
} from "jose";
import { PlatformError } from "../errors.js";

export const roles = ["clerk", "clinician", "admin"] as const;
export type Role = (typeof roles)[number];

export interface Principal {
  readonly subject: string;
  readonly tenantId: string;
  readonly role: Role;
  /**
   * A local account's session generation when the session began (the `gen` claim): a session of an older
   * generation has ended (AccountService.checkSession). Absent for OpenID Connect identities.
   */
  readonly sessionGeneration?: number;
}

export interface SessionVerifier {
  readonly verify: (token: string) => Promise<Principal>;
}

function isRole(value: unknown): value is Role {
  return typeof value === "string" && (roles as readonly string[]).includes(value);
}

export interface LocalSessions extends SessionVerifier {
  readonly issue: (principal: Principal) => Promise<{ accessToken: string; expiresIn: number }>;
  readonly jwks: () => { keys: JWK[] };
}

/** The order of P-256's group. */
const p256Order = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/**
 * A P-256 key pair derived from a secret: the scalar is 48 bytes of HKDF output reduced into [1, n-1], so
 * its bias is negligible. The same secret gives the same key in every replica.
 */
function es256KeyFromSecret(secret: Uint8Array): { privateKey: KeyObject; publicKey: KeyObject } {
  const expanded = Buffer.from(hkdfSync("sha256", secret, Buffer.alloc(0), "cloister local sessions v1", 48));
  const scalar = (BigInt(`0x${expanded.toString("hex")}`) % (p256Order - 1n)) + 1n;
  const d = Buffer.from(scalar.toString(16).padStart(64, "0"), "hex");
  const ecdh = createECDH("prime256v1");
  ecdh.setPrivateKey(d);
  const point = ecdh.getPublicKey();
  const privateKey = createPrivateKey({
    key: {
      kty: "EC",
      crv: "P-256",
      d: d.toString("base64url"),
      x: point.subarray(1, 33).toString("base64url"),
      y: point.subarray(33, 65).toString("base64url"),
    },
    format: "jwk",
  });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/**
 * Local accounts' sessions. With `signingSecret` (main.ts: derived from the platform's system key, which every
 * replica holds), every replica signs with the same key; without it, the key exists only in this process.
 */
export async function createLocalSessions(options: {
  issuer: string;
  lifetimeSeconds?: number;
  signingSecret?: Uint8Array;
}): Promise<LocalSessions> {
  const { privateKey, publicKey } =
    options.signingSecret === undefined
      ? await generateKeyPair("ES256")
      : es256KeyFromSecret(options.signingSecret);
  const exported = await exportJWK(publicKey);
  // The kid names the key, so a verifier tells a replaced key (after a rotation) from the current one.
  const kid = `session-${(await calculateJwkThumbprint(exported)).slice(0, 16)}`;
  const publicJwk: JWK = { ...exported, alg: "ES256", use: "sig", kid };
  const lifetime = options.lifetimeSeconds ?? 900;
  const audience = "cloister-platform";
  return {
    issue: async (principal) => ({
      accessToken: await new SignJWT({
        tid: principal.tenantId,
        role: principal.role,
        gen: principal.sessionGeneration ?? 0,
      })
        .setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
        .setSubject(principal.subject)
        .setIssuer(options.issuer)
        .setAudience(audience)
        .setIssuedAt()
        .setExpirationTime(`${lifetime}s`)
        .sign(privateKey),
      expiresIn: lifetime,
    }),
    verify: async (token) => {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, publicKey, {
          issuer: options.issuer,
          audience,
          algorithms: ["ES256"],
        }));
      } catch (cause) {
        throw new PlatformError("ERR_UNAUTHENTICATED", "the session token is not valid", { cause });
      }
      if (typeof payload.sub !== "string" || typeof payload.tid !== "string" || !isRole(payload.role)) {
        throw new PlatformError("ERR_UNAUTHENTICATED", "the session token lacks its claims");
      }
      // Sessions issued before generations were counted carry none: generation 0.
      const generation = payload.gen ?? 0;
      if (typeof generation !== "number" || !Number.isInteger(generation) || generation < 0) {
        throw new PlatformError("ERR_UNAUTHENTICATED", "the session token's generation is not valid");
      }
      return {
        subject: payload.sub,
        tenantId: payload.tid,
        role: payload.role,
        sessionGeneration: generation,
      };
    },
    jwks: () => ({ keys: [publicJwk] }),
  };
}

export interface OidcSessionOptions {
  /** e.g. `https://login.microsoftonline.com/<tenant>/v2.0` */
  readonly issuer: string;
  readonly jwksUri: string;
  readonly audience: string;
  /** The claim naming the hospital (Entra: `tid`) and how its values map to Cloister tenants. */
  readonly tenantClaim: string;
  readonly tenants: Readonly<Record<string, string>>;
  /** The claim carrying app roles (Entra: `roles`) and how they map to Cloister roles. */
  readonly roleClaim: string;
  readonly roles: Readonly<Record<string, Role>>;
}

/** An external OpenID Connect provider: its JWKS, issuer and audience, and a claim mapping. */
export function createOidcSessions(options: OidcSessionOptions): SessionVerifier {
  const keySet = createRemoteJWKSet(new URL(options.jwksUri));
  return {
    verify: async (token) => {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, keySet, {
          issuer: options.issuer,
          audience: options.audience,
          algorithms: ["RS256", "ES256", "PS256"],
        }));
      } catch (cause) {
        throw new PlatformError("ERR_UNAUTHENTICATED", "the identity provider's token is not valid", {
          cause,
        });
      }
      const tenantValue = payload[options.tenantClaim];
      const tenantId = typeof tenantValue === "string" ? options.tenants[tenantValue] : undefined;
      const roleValues = payload[options.roleClaim];
      const mapped = (Array.isArray(roleValues) ? roleValues : [roleValues])
        .map((value) => (typeof value === "string" ? options.roles[value] : undefined))
        .filter(isRole);
      // The strongest mapped role wins; no mapped role means no access.
      const role = [...roles].reverse().find((candidate) => mapped.includes(candidate));
      if (typeof payload.sub !== "string" || tenantId === undefined || role === undefined) {
        throw new PlatformError(
          "ERR_FORBIDDEN",
          "the identity provider's token maps to no tenant or role here",
        );
      }
      return { subject: payload.sub, tenantId, role };
    },
  };
}

function parseMapping(text: string, name: string): Record<string, string> {
  const mapping: Record<string, string> = {};
  for (const pair of text.split(",").filter((entry) => entry.trim() !== "")) {
    const separator = pair.lastIndexOf("=");
    if (separator <= 0 || separator === pair.length - 1) {
      throw new Error(`${name}: write claim values as value=target pairs separated by commas`);
    }
    mapping[pair.slice(0, separator).trim()] = pair.slice(separator + 1).trim();
  }
  if (Object.keys(mapping).length === 0) {
    throw new Error(`${name} is empty`);
  }
  return mapping;
}

/**
 * The OpenID Connect provider from configuration, or undefined for local accounts:
 *   CLOISTER_OIDC_ISSUER, CLOISTER_OIDC_AUDIENCE (required together), CLOISTER_OIDC_JWKS_URI (default: Entra's
 *   `<issuer without /v2.0>/discovery/v2.0/keys`), CLOISTER_OIDC_TENANTS (`<tid>=<tenant>,…`),
 *   CLOISTER_OIDC_ROLES (`<app role>=clerk|clinician|admin,…`), CLOISTER_OIDC_TENANT_CLAIM (default `tid`),
 *   CLOISTER_OIDC_ROLE_CLAIM (default `roles`).
 */
export function oidcOptionsFromEnvironment(
  environment: Readonly<Record<string, string | undefined>>,
): OidcSessionOptions | undefined {
  const issuer = environment.CLOISTER_OIDC_ISSUER;
  if (issuer === undefined || issuer === "") {
    return undefined;
  }
  const audience = environment.CLOISTER_OIDC_AUDIENCE;
  if (audience === undefined || audience === "") {
    throw new Error("CLOISTER_OIDC_AUDIENCE is required with CLOISTER_OIDC_ISSUER");
  }
  const roles = parseMapping(environment.CLOISTER_OIDC_ROLES ?? "", "CLOISTER_OIDC_ROLES");
  for (const [claimValue, role] of Object.entries(roles)) {
    if (!isRole(role)) {
      throw new Error(`CLOISTER_OIDC_ROLES: ${claimValue} maps to ${role}, not clerk, clinician or admin`);
    }
  }
  return {
    issuer,
    audience,
    jwksUri: environment.CLOISTER_OIDC_JWKS_URI ?? `${issuer.replace(/\/v2\.0\/?$/, "")}/discovery/v2.0/keys`,
    tenantClaim: environment.CLOISTER_OIDC_TENANT_CLAIM ?? "tid",
    tenants: parseMapping(environment.CLOISTER_OIDC_TENANTS ?? "", "CLOISTER_OIDC_TENANTS"),
    roleClaim: environment.CLOISTER_OIDC_ROLE_CLAIM ?? "roles",
    roles: roles as Record<string, Role>,
  };
}
