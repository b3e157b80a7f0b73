// A long-lived verifier for peers' attestation tokens: the issuer's JWKS is fetched over TLS and cached,
// and each decision is cached until the token expires, keyed by the exact token, so checking the caller
// of every request costs a map lookup.
import { decodeProtectedHeader, type JSONWebKeySet, type JWK } from "jose";
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
  /**
   * Least time between two JWKS fetches for a key id already fetched for, or unknown ids in general (default
   * 30 s). A key id not yet fetched for (a new replica's, a rotated key) may fetch sooner: see below.
   */
  readonly jwksRefetchIntervalMs?: number;
  /** Least time between two JWKS fetches for key ids not yet fetched for (default 1 s). */
  readonly jwksNewKidIntervalMs?: number;
}

export interface PeerBinding {
  readonly boundKey?: JWK;
  readonly ohttpKeyConfig?: string;
}

interface CachedDecision {
  readonly identity: PeerIdentity;
  readonly expiresAtMs: number;
}

function tokenKid(token: string): string | undefined {
  try {
    const kid = decodeProtectedHeader(token).kid;
    return typeof kid === "string" ? kid : undefined;
  } catch {
    return undefined;
  }
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
  private readonly kidsFetchedFor = new Set<string>();

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
      // The service may have rotated its signing key, or started a replica, since we fetched /certs. Each new
      // key id may fetch once a second; an id already fetched for (or a flood of ids) waits the interval.
      const kid = tokenKid(token);
      const sinceFetch = Date.now() - this.jwksFetchedAt;
      const mayFetch =
        sinceFetch >= (this.options.jwksRefetchIntervalMs ?? 30_000) ||
        (kid !== undefined &&
          !this.kidsFetchedFor.has(kid) &&
          sinceFetch >= (this.options.jwksNewKidIntervalMs ?? 1000));
      if (!tokenKeyUnknown(error) || !mayFetch) {
        throw error;
      }
      if (kid !== undefined) {
        if (this.kidsFetchedFor.size >= 1000) {
          this.kidsFetchedFor.clear();
        }
        this.kidsFetchedFor.add(kid);
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
