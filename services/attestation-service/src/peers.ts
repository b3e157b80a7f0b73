// Several replicas of the attestation service. Each signs with its own key, made in its own TEE, and every
// replica serves every replica's key at /certs: a token signed by any of them verifies against the key set
// fetched from any of them, through any load balancer. An attestation policy set on one replica reaches the
// others, and a replica that starts learns the policies in force from those running.
//
// Replicas pull `GET /peers/state` from the addresses a peer list resolves to (in Kubernetes, a headless
// Service that lists replicas before they are ready) every few seconds. Nothing is taken on trust from a
// peer, since the network and the TLS keys are the host's:
// - a key counts only if its certificate is self-signed by it, its kid is MAA's kid of that key, and the
//   evidence embedded in it verifies (Intel's root or the trusted simulation root, current collateral), binds
//   the key, and names this replica's signer, product and debug state (TDX: its MRTD);
// - a policy counts only if this replica's policy store accepts its envelope (signed by a policy signer in
//   production), and only when it is newer than the one in force here.
// A key stays served until the newest expiry any replica gave it (its owner's clock: the time it last
// served the key plus the token lifetime), so the tokens of a replica that has gone still verify until they
// expire, and no replica keeps a gone replica's key alive by passing it on.
import { X509Certificate } from "node:crypto";
import {
  parseCertificate,
  toPem,
  verifyRuntimeDataBinding,
  type ClaimValue,
  type VerifiedEvidence,
} from "@cloister/attestation";
import { requestJson } from "@cloister/enclave";
import type { FastifyBaseLogger } from "fastify";
import { exportJWK, type JWK } from "jose";
import { ServiceError } from "./errors.js";
import { attestationTypes, type AttestationType } from "./policies.js";
import { evidenceExtensionOid, kidFor } from "./signing-key.js";

export interface PeersConfig {
  /** The replicas' base URLs (`https://address:port`), this one's among them or not; resolved every round. */
  readonly resolve: () => Promise<readonly string[]>;
  /** The CA of the replicas' TLS certificates. */
  readonly ca?: string | readonly string[];
  /** The name the replicas' TLS certificates carry (they are reached by address, so it is checked by name). */
  readonly servername?: string;
  /** Between two pulls, ms (default 5000). */
  readonly intervalMs?: number;
}

/** A signing key as replicas exchange it: the JWK with its certificate, and until when it is served. */
export interface PeerKey {
  readonly jwk: JWK;
  /** ms since the epoch. */
  readonly expiresAt: number;
}

/** The policy in force for one attestation type: its envelope (null: the default), and when it was set. */
export interface PolicyVersion {
  readonly envelope: string | null;
  /** ms since the epoch, by the clock of the replica where it was set. */
  readonly setAt: number;
}

/** What `GET /peers/state` answers. */
export interface PeerState {
  readonly keys: readonly { readonly jwk: JWK; readonly expiresAt: string }[];
  readonly policies: readonly {
    readonly type: AttestationType;
    readonly envelope: string | null;
    readonly setAt: string;
  }[];
}

/** The claims that say which service this is: a peer's evidence must match this replica's own. */
export function serviceIdentity(evidence: VerifiedEvidence): Record<string, ClaimValue> {
  const claims = evidence.claims;
  const identity: Record<string, ClaimValue> = { tee: evidence.tee, root: evidence.trustAnchor.spkiSha256 };
  const names =
    evidence.tee === "sgx"
      ? ["x-ms-sgx-mrsigner", "x-ms-sgx-product-id", "x-ms-sgx-is-debuggable"]
      : ["tdx_mrtd", "tdx_td_attributes_debug"];
  for (const name of names) {
    identity[name] = claims[name] ?? null;
  }
  return identity;
}

/**
 * Checks another replica's signing key: self-signed certificate in date, MAA's kid, the JWK the same key,
 * and evidence in the certificate that verifies, binds the key, and names `identity`. Throws with the reason.
 */
export async function verifyPeerSigningKey(
  jwk: JWK,
  identity: Record<string, ClaimValue>,
  verifyEvidence: (quote: Uint8Array) => Promise<VerifiedEvidence>,
  now: Date,
): Promise<void> {
  const [certificateBase64] = jwk.x5c ?? [];
  if (typeof certificateBase64 !== "string") {
    throw new Error("the key carries no certificate (x5c)");
  }
  const der = Buffer.from(certificateBase64, "base64");
  // As PEM: given DER, node:crypto looks for PEM text first, and the quote inside holds its PCK chain's PEM.
  const certificate = new X509Certificate(toPem(der));
  if (!certificate.verify(certificate.publicKey)) {
    throw new Error("the key's certificate is not signed by the key");
  }
  if (now < new Date(certificate.validFrom) || now > new Date(certificate.validTo)) {
    throw new Error("the key's certificate is not valid now");
  }
  if (kidFor(certificate.publicKey) !== jwk.kid) {
    throw new Error("the kid is not the certificate key's");
  }
  const certificateJwk = await exportJWK(certificate.publicKey);
  if (jwk.kty !== "RSA" || jwk.n !== certificateJwk.n || jwk.e !== certificateJwk.e || jwk.alg !== "RS256") {
    throw new Error("the JWK is not the certificate's RS256 key");
  }
  const evidence = parseCertificate(der).extensions.get(evidenceExtensionOid)?.value;
  if (evidence === undefined) {
    throw new Error("the certificate carries no evidence");
  }
  let verified: VerifiedEvidence;
  try {
    verified = await verifyEvidence(evidence);
  } catch (error) {
    throw new Error(
      `the certificate's evidence does not verify (${error instanceof ServiceError ? error.code : "unreadable"})`,
    );
  }
  const pem = certificate.publicKey.export({ format: "pem", type: "spki" }).toString();
  try {
    verifyRuntimeDataBinding(new TextEncoder().encode(`${pem}\0`), verified.reportData);
  } catch {
    throw new Error("the evidence does not bind the key");
  }
  const theirs = serviceIdentity(verified);
  for (const [claim, expected] of Object.entries(identity)) {
    if (JSON.stringify(theirs[claim]) !== JSON.stringify(expected)) {
      throw new Error(`the evidence names another service (${claim})`);
    }
  }
}

/** The later version wins; a tie (two replicas set one in the same millisecond) goes to the greater text. */
function isNewer(candidate: PolicyVersion, current: PolicyVersion): boolean {
  return (
    candidate.setAt > current.setAt ||
    (candidate.setAt === current.setAt && (candidate.envelope ?? "") > (current.envelope ?? ""))
  );
}

export interface PeerSyncOptions {
  readonly config: PeersConfig;
  /** This replica's keys (the current one first), with until when each is served. */
  readonly ownKeys: () => Promise<readonly PeerKey[]>;
  readonly verifyKey: (jwk: JWK) => Promise<void>;
  readonly policies: {
    readonly versions: () => ReadonlyMap<AttestationType, PolicyVersion>;
    /** Whether peers' versions of this type are taken at all (not for a policy declared in configuration). */
    readonly manages: (type: AttestationType) => boolean;
    /** Applies a newer version learnt from a peer; throws (a ServiceError) when the store refuses it. */
    readonly apply: (type: AttestationType, version: PolicyVersion) => Promise<void>;
  };
  /** The longest a token lives, ms: no expiry a peer gives is believed beyond now plus this. */
  readonly lifetimeMs: number;
  readonly now: () => Date;
  readonly log: FastifyBaseLogger;
  /** Counts peer keys and policies refused, by kind. */
  readonly onRefused?: (kind: "key" | "policy") => void;
}

/** Pulls the other replicas' keys and policies, and says when they all know this one's key. */
export class PeerSync {
  private readonly options: PeerSyncOptions;
  private readonly learnt = new Map<string, PeerKey>();
  /** Keys and policy versions refused, and when: not checked or logged again for a minute. */
  private readonly refused = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** The rounds run one after another; `queued` counts those waiting or running. */
  private rounds: Promise<void> = Promise.resolve();
  private queued = 0;
  private knownByPeers = false;

  constructor(options: PeerSyncOptions) {
    this.options = options;
  }

  /** True once a round found every replica that answered serving this replica's current key. */
  get ready(): boolean {
    return this.knownByPeers;
  }

  /** The other replicas' keys still served, the expired ones dropped. */
  private liveLearnt(): PeerKey[] {
    const now = this.options.now().getTime();
    for (const [kid, key] of this.learnt) {
      if (key.expiresAt <= now) {
        this.learnt.delete(kid);
      }
    }
    return [...this.learnt.values()];
  }

  /** The other replicas' keys still served (for /certs). */
  keys(): JWK[] {
    return this.liveLearnt().map((key) => key.jwk);
  }

  async state(): Promise<PeerState> {
    const own = await this.options.ownKeys();
    const ownKids = new Set(own.map((key) => key.jwk.kid));
    const learnt = this.liveLearnt().filter((key) => !ownKids.has(key.jwk.kid));
    return {
      keys: [...own, ...learnt].map((key) => ({
        jwk: key.jwk,
        expiresAt: new Date(key.expiresAt).toISOString(),
      })),
      policies: [...this.options.policies.versions()].map(([type, version]) => ({
        type,
        envelope: version.envelope,
        setAt: new Date(version.setAt).toISOString(),
      })),
    };
  }

  /** Starts pulling: one round now, then every intervalMs (a round still running is not doubled). */
  start(): void {
    const run = (): void => {
      if (this.queued === 0) {
        void this.pullOnce().catch(() => undefined);
      }
    };
    run();
    this.timer = setInterval(run, this.options.config.intervalMs ?? 5000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.rounds;
  }

  /** One round, after any running one: every replica's state is read and merged; readiness is decided. */
  pullOnce(): Promise<void> {
    this.queued++;
    const round = this.rounds.then(() => this.pull());
    this.rounds = round
      .catch(() => undefined)
      .finally(() => {
        this.queued--;
      });
    return round;
  }

  private async pull(): Promise<void> {
    let addresses: readonly string[];
    try {
      addresses = await this.options.config.resolve();
    } catch {
      this.options.log.warn({ audit: "peers.unresolved" }, "the replica list could not be resolved");
      return;
    }
    // This replica's keys, once per round: the current one must be served by the others, and none of them is
    // learnt back from a peer.
    const own = await this.options.ownKeys();
    const ownKid = own[0]?.jwk.kid;
    const ownKids = new Set(own.map((key) => key.jwk.kid));
    let allKnowMe = true;
    for (const address of addresses) {
      const state = await this.read(address);
      if (state === undefined) {
        continue;
      }
      if (!state.keys.some((key) => key.jwk.kid === ownKid)) {
        allKnowMe = false;
      }
      await this.mergeKeys(state, address, ownKids);
      await this.mergePolicies(state, address);
    }
    if (allKnowMe && !this.knownByPeers) {
      this.knownByPeers = true;
      this.options.log.info(
        { audit: "peers.ready", replicas: addresses.length },
        "every replica that answered serves this replica's signing key",
      );
    }
  }

  private async read(address: string): Promise<PeerState | undefined> {
    const { config } = this.options;
    try {
      const response = await requestJson("GET", new URL("/peers/state", address), undefined, {
        ...(config.ca === undefined ? {} : { ca: config.ca }),
        ...(config.servername === undefined ? {} : { servername: config.servername }),
        timeoutMs: 3000,
        maxResponseBytes: 1024 * 1024,
      });
      const body = response.body as Partial<PeerState> | undefined;
      if (response.status !== 200 || !Array.isArray(body?.keys) || !Array.isArray(body.policies)) {
        throw new Error(`HTTP ${response.status}`);
      }
      return body as PeerState;
    } catch {
      this.options.log.warn({ audit: "peers.unreachable", peer: address }, "a replica did not answer");
      return undefined;
    }
  }

  /** Refused within the last minute: a failure that may pass (collateral out of reach) is tried again later. */
  private refusedLately(id: string): boolean {
    const at = this.refused.get(id);
    return at !== undefined && this.options.now().getTime() - at < 60_000;
  }

  private refuse(kind: "key" | "policy", id: string, peer: string, reason: string): void {
    if (this.refused.size > 1000) {
      this.refused.clear();
    }
    this.refused.set(id, this.options.now().getTime());
    this.options.onRefused?.(kind);
    this.options.log.warn(
      { audit: `peers.${kind}-refused`, peer, reason },
      `a replica's ${kind} was refused`,
    );
  }

  private async mergeKeys(
    state: PeerState,
    peer: string,
    ownKids: ReadonlySet<string | undefined>,
  ): Promise<void> {
    const now = this.options.now().getTime();
    for (const entry of state.keys.slice(0, 64)) {
      const kid = entry.jwk.kid;
      const expiresAt = Math.min(Date.parse(entry.expiresAt), now + this.options.lifetimeMs);
      if (typeof kid !== "string" || ownKids.has(kid) || !(expiresAt > now)) {
        continue;
      }
      const known = this.learnt.get(kid);
      if (known !== undefined) {
        if (expiresAt > known.expiresAt) {
          this.learnt.set(kid, { jwk: known.jwk, expiresAt });
        }
        continue;
      }
      const id = `key:${kid}:${entry.jwk.x5c?.[0] ?? ""}`;
      if (this.refusedLately(id)) {
        continue;
      }
      try {
        await this.options.verifyKey(entry.jwk);
      } catch (error) {
        this.refuse("key", id, peer, error instanceof Error ? error.message : "unreadable");
        continue;
      }
      const { kty, n, e, alg, use, x5c } = entry.jwk;
      this.learnt.set(kid, { jwk: { kty, n, e, alg, use, kid, x5c }, expiresAt });
      this.options.log.info({ audit: "peers.key-learnt", peer, kid }, "a replica's signing key was verified");
    }
  }

  private async mergePolicies(state: PeerState, peer: string): Promise<void> {
    const now = this.options.now().getTime();
    for (const entry of state.policies) {
      const type = entry.type;
      const setAt = Date.parse(entry.setAt);
      if (
        !(attestationTypes as readonly string[]).includes(type) ||
        !(setAt <= now + 60_000) ||
        (entry.envelope !== null && typeof entry.envelope !== "string") ||
        !this.options.policies.manages(type)
      ) {
        continue;
      }
      const current = this.options.policies.versions().get(type);
      if (current !== undefined && !isNewer({ envelope: entry.envelope, setAt }, current)) {
        continue;
      }
      const id = `policy:${type}:${setAt}`;
      if (this.refusedLately(id)) {
        continue;
      }
      try {
        await this.options.policies.apply(type, { envelope: entry.envelope, setAt });
      } catch (error) {
        this.refuse("policy", id, peer, error instanceof ServiceError ? error.code : "unreadable");
        continue;
      }
      this.options.log.info(
        { audit: "peers.policy-learnt", peer, attestationType: type },
        "a replica's attestation policy was applied",
      );
    }
  }
}
