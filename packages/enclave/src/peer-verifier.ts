// A long-lived verifier for peers' attestation tokens: the issuer's JWKS is fetched over TLS and cached,
// and each decision is cached until the token expires, keyed by the exact token, so checking the caller
// of every request costs a map lookup.
import type { JSONWebKeySet, JWK } from "jose";
import { EnclaveError } from "./errors.js";
import { requestJson, type HttpsClientOptions } from "./https-client.js";
import { verifyPeer, type PeerExpectations, type PeerIdentity } from "./verify-peer.js";

export interface PeerVerifierOptions {
  /** The attestation service whose tokens are trusted: its `/certs` is fetched with these TLS options. */
  readonly attestationService: HttpsClientOptions & { readonly url: string; readonly issuer?: string };
  /** What the peer must prove (TEE types, measurements, signers, debug and simulation). */
  readonly expectations: Omit<
    PeerExpectations,
    "jwks" | "jwksUri" | "issuer" | "now" | "boundKey" | "ohttpKeyConfig"
  >;
  readonly now?: () => Date;
  /** Cached decisions kept at most (default 10,000); the oldest go first. */
  readonly maxCachedDecisions?: number;
  /** Least time between two JWKS fetches triggered by unknown key ids (default 30 s). */
  readonly jwksRefetchIntervalMs?: number;
}

export interface PeerBinding {
  readonly boundKey?: JWK;
  readonly ohttpKeyConfig?: string;
}

interface CachedDecision {
  readonly identity: PeerIdentity;
  readonly expiresAtMs: number;
}

function tokenKeyUnknown(error: unknown): boolean {
  if (!(error instanceof EnclaveError) || error.code !== "ERR_PEER_TOKEN") {
    return false;
  }
  const cause = error.cause as { code?: unknown } | undefined;
  return cause?.code === "ERR_TOKEN_KEY_UNKNOWN";
}

/**
 * @example
 * ```ts
 * const callers = new PeerVerifier({
 *   attestationService: { url: attestationUrl, ca },
 *   expectations: { measurements: [platformMrenclave], allowSimulation: devMode, allowDebug: devMode },
 * });
 * const caller = await callers.verify(token); // cached until the token's exp
 * ```
 */
export class PeerVerifier {
  private readonly options: PeerVerifierOptions;
  private readonly decisions = new Map<string, CachedDecision>();
  private jwks: JSONWebKeySet | undefined;
  private jwksFetchedAt = 0;
  private jwksInFlight: Promise<JSONWebKeySet> | undefined;

  constructor(options: PeerVerifierOptions) {
    this.options = options;
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  private async keySet(force: boolean): Promise<JSONWebKeySet> {
    if (this.jwks !== undefined && !force) {
      return this.jwks;
    }
    this.jwksInFlight ??= (async () => {
      try {
        const service = this.options.attestationService;
        const response = await requestJson("GET", new URL("/certs", service.url), undefined, service);
        const keys = (response.body as { keys?: unknown } | undefined)?.keys;
        if (response.status !== 200 || !Array.isArray(keys)) {
          throw new EnclaveError(
            "ERR_ATTESTATION_SERVICE",
            "the attestation service's /certs could not be loaded",
          );
        }
        this.jwks = { keys: keys as JWK[] };
        this.jwksFetchedAt = Date.now();
        return this.jwks;
      } finally {
        this.jwksInFlight = undefined;
      }
    })();
    return this.jwksInFlight;
  }

  /** Verifies a peer's token (and, optionally, the keys it uses), from cache when the same token was seen. */
  async verify(token: string, binding: PeerBinding = {}): Promise<PeerIdentity> {
    const cacheKey = `${binding.ohttpKeyConfig ?? ""}|${binding.boundKey === undefined ? "" : JSON.stringify(binding.boundKey)}|${token}`;
    const nowMs = this.now().getTime();
    const cached = this.decisions.get(cacheKey);
    if (cached !== undefined) {
      if (cached.expiresAtMs > nowMs) {
        return cached.identity;
      }
      this.decisions.delete(cacheKey);
    }
    const verifyWith = async (jwks: JSONWebKeySet): Promise<PeerIdentity> =>
      verifyPeer(token, {
        ...this.options.expectations,
        jwks,
        issuer: this.options.attestationService.issuer ?? this.options.attestationService.url,
        now: this.now(),
        ...binding,
      });
    let identity: PeerIdentity;
    try {
      identity = await verifyWith(await this.keySet(false));
    } catch (error) {
      // The service may have rotated its signing key since we fetched /certs.
      const interval = this.options.jwksRefetchIntervalMs ?? 30_000;
      if (!tokenKeyUnknown(error) || Date.now() - this.jwksFetchedAt < interval) {
        throw error;
      }
      identity = await verifyWith(await this.keySet(true));
    }
    const exp = identity.claims.exp;
    if (typeof exp === "number") {
      this.decisions.set(cacheKey, { identity, expiresAtMs: exp * 1000 });
      const limit = this.options.maxCachedDecisions ?? 10_000;
      for (const key of this.decisions.keys()) {
        if (this.decisions.size <= limit) {
          break;
        }
        this.decisions.delete(key);
      }
    }
    return identity;
  }
}
