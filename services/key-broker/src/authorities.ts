// Authority key sets: each attestation service's JWKS, fetched over TLS and cached; a token whose kid the
// cached set lacks triggers one refetch (at most every 30 s per authority), so rotated keys are picked up.
import { requestJson } from "@cloister/enclave";
import { decodeProtectedHeader, type JSONWebKeySet } from "jose";
import { BrokerError } from "./errors.js";

export class AuthorityKeySets {
  private readonly cache = new Map<string, { keys: JSONWebKeySet; fetchedAt: number }>();
  private readonly ca: string | readonly string[] | undefined;

  constructor(ca?: string | readonly string[]) {
    this.ca = ca;
  }

  private async fetch(authority: string): Promise<JSONWebKeySet> {
    let response;
    try {
      response = await requestJson("GET", `${authority}/certs`, undefined, {
        ...(this.ca === undefined ? {} : { ca: this.ca }),
        timeoutMs: 5000,
      });
    } catch {
      throw new BrokerError("ERR_AUTHORITY_UNREACHABLE", `the key set of ${authority} could not be fetched`);
    }
    const body = response.body as JSONWebKeySet | undefined;
    if (response.status !== 200 || !Array.isArray(body?.keys)) {
      throw new BrokerError("ERR_AUTHORITY_UNREACHABLE", `${authority}/certs answered ${response.status}`);
    }
    this.cache.set(authority, { keys: body, fetchedAt: Date.now() });
    return body;
  }

  /** The authority's key set, refreshed if it lacks the token's kid. */
  async forToken(authority: string, token: string): Promise<JSONWebKeySet> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      kid = undefined;
    }
    const cached = this.cache.get(authority);
    if (cached === undefined) {
      return this.fetch(authority);
    }
    const known = cached.keys.keys.some((key) => key.kid === kid);
    if (!known && Date.now() - cached.fetchedAt > 30_000) {
      return this.fetch(authority);
    }
    return cached.keys;
  }
}
