// Authority key sets: each attestation service's JWKS, fetched over TLS and cached. A token whose kid the
// cached set lacks triggers a refetch, so rotated keys and new replicas' keys are picked up: at once (at most
// once a second) for a kid not yet fetched for, otherwise at most every 30 s per authority.
import { requestJson } from "@cloister/enclave";
import { decodeProtectedHeader, type JSONWebKeySet } from "jose";
import { BrokerError } from "./errors.js";

export class AuthorityKeySets {
  private readonly cache = new Map<string, { keys: JSONWebKeySet; fetchedAt: number }>();
  private readonly ca: string | readonly string[] | undefined;
  private readonly kidsFetchedFor = new Set<string>();
  private readonly refetchIntervalMs: number;
  private readonly newKidIntervalMs: number;

  constructor(ca?: string | readonly string[], intervals: { refetchMs?: number; newKidMs?: number } = {}) {
    this.ca = ca;
    this.refetchIntervalMs = intervals.refetchMs ?? 30_000;
    this.newKidIntervalMs = intervals.newKidMs ?? 1000;
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
    const sinceFetch = Date.now() - cached.fetchedAt;
    const id = `${authority} ${String(kid)}`;
    const newKid = typeof kid === "string" && !this.kidsFetchedFor.has(id);
    if (!known && (sinceFetch > this.refetchIntervalMs || (newKid && sinceFetch >= this.newKidIntervalMs))) {
      if (this.kidsFetchedFor.size >= 1000) {
        this.kidsFetchedFor.clear();
      }
      this.kidsFetchedFor.add(id);
      return this.fetch(authority);
    }
    return cached.keys;
  }
}
