// attestAtStart: the workload makes its keys inside the TEE, binds them into its evidence as runtime data,
// exchanges the evidence for an attestation token, and keeps the token fresh.
import { generateKeyPairSync, randomInt, type KeyObject } from "node:crypto";
import { generateOhttpKeyPair, type OhttpKeyPair } from "@cloister/ohttp";
import { decodeJwt, exportJWK, type JWK } from "jose";
import { EnclaveError } from "./errors.js";
import { requestJson, type HttpsClientOptions } from "./https-client.js";
import type { Evidence, TeeProvider } from "./providers/provider.js";
import type { SharedOhttpKeys } from "./shared-ohttp-key.js";

export interface AttestationServiceClient extends HttpsClientOptions {
  /** e.g. `https://127.0.0.1:7443` */
  readonly url: string;
}

export interface AttestAtStartOptions {
  readonly provider: TeeProvider;
  readonly attestationService: AttestationServiceClient;
  /** Extra runtime data fields, bound into the evidence next to `keys` and `ohttp`. */
  readonly runtime?: Readonly<Record<string, unknown>>;
  /**
   * Public keys the workload made for its own use (a key broker's signing key), bound in `keys` after the
   * release key, so a peer can check that the key it is shown is this TEE's (`verifyPeer`'s `boundKey`).
   */
  readonly boundKeys?: readonly JWK[];
  /** The OHTTP gateway key to make: key id (random by default) and HPKE suite. */
  readonly ohttp?: { keyId?: number; suite?: "X25519-SHA256-AES128GCM" | "P384-SHA384-AES256GCM" };
  /**
   * The service's OHTTP key shared by its replicas (`releaseSharedOhttpKey`), fetched with the first token.
   * When it gives one, the workload attests again with that key bound instead of the one it made; when it
   * gives none, the key it made is kept.
   */
  readonly sharedOhttpKey?: (first: {
    readonly token: string;
    readonly releasePrivateKey: KeyObject;
  }) => Promise<SharedOhttpKeys | undefined>;
  /** Refresh when this fraction of the token's lifetime has passed (default 0.75). */
  readonly refreshAt?: number;
  /** Called after every refresh attempt: for logs and metrics (never with the token itself). */
  readonly onRefresh?: (outcome: {
    ok: boolean;
    expiresAt?: Date;
    error?: unknown;
    nextAttemptMs: number;
  }) => void;
}

export interface WorkloadKeys {
  /** RSA-2048 key for secure key release: secrets are wrapped to it (RSA-OAEP-256). */
  readonly release: { readonly privateKey: KeyObject; readonly publicJwk: JWK };
  readonly ohttp: OhttpKeyPair;
  /** Older versions of a shared OHTTP key, still opened but not bound or offered (`SharedOhttpKeys`). */
  readonly ohttpPrevious: readonly OhttpKeyPair[];
}

export interface Attestation {
  /** The current token. */
  readonly token: () => string;
  readonly expiresAt: () => Date;
  /** The exact runtime data bytes bound into the evidence. */
  readonly runtimeData: Uint8Array;
  readonly evidence: Evidence;
  readonly keys: WorkloadKeys;
  /** Stops refreshing. */
  readonly stop: () => void;
}

const attestPaths = { sgx: "SgxEnclave", tdx: "TdxVm", sevsnp: "SevSnpVm" } as const;

/** The attestation service's path segment for this evidence type (`/attest/{path}`). */
export function attestPath(type: Evidence["type"]): string {
  return attestPaths[type];
}

function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}

/** The MAA request body for this evidence and runtime data (DESIGN.md §4). */
export function attestRequestBody(evidence: Evidence, runtimeData: Uint8Array): Record<string, unknown> {
  const runtime = { data: base64url(runtimeData), dataType: "JSON" };
  if (evidence.type === "sevsnp") {
    const report = JSON.stringify({
      SnpReport: base64url(evidence.report),
      ...(evidence.vcek === undefined ? {} : { VcekCertChain: base64url(evidence.vcek) }),
    });
    return { report: base64url(new TextEncoder().encode(report)), runtimeData: runtime };
  }
  return { quote: base64url(evidence.quote), runtimeData: runtime };
}

async function requestToken(
  service: AttestationServiceClient,
  evidence: Evidence,
  runtimeData: Uint8Array,
): Promise<{ token: string; expiresAt: Date }> {
  const url = new URL(`/attest/${attestPaths[evidence.type]}?api-version=2022-08-01`, service.url);
  const response = await requestJson("POST", url, attestRequestBody(evidence, runtimeData), service);
  const body = response.body as
    { token?: unknown; error?: { code?: unknown; message?: unknown } } | undefined;
  if (response.status !== 200 || typeof body?.token !== "string") {
    const code = typeof body?.error?.code === "string" ? body.error.code : `HTTP ${response.status}`;
    throw new EnclaveError(
      "ERR_ATTESTATION_SERVICE",
      `the attestation service refused the evidence (${code})`,
    );
  }
  const exp = decodeJwt(body.token).exp;
  if (typeof exp !== "number") {
    throw new EnclaveError("ERR_ATTESTATION_SERVICE", "the attestation service returned a token without exp");
  }
  return { token: body.token, expiresAt: new Date(exp * 1000) };
}

/** Delay before the next refresh: `refreshAt` of the remaining lifetime, minus up to 10% jitter. */
export function refreshDelayMs(now: number, expiresAt: number, refreshAt: number): number {
  const remaining = Math.max(0, expiresAt - now);
  const jitter = randomInt(0, Math.max(1, Math.floor(remaining * 0.1)));
  return Math.max(1000, Math.floor(remaining * refreshAt) - jitter);
}

/** Exponential backoff with full jitter, from 1 s up to 60 s. */
export function backoffMs(attempt: number): number {
  const ceiling = Math.min(60_000, 1000 * 2 ** Math.min(attempt, 6));
  return 500 + randomInt(0, ceiling);
}

/**
 * Makes the workload's keys, attests with them bound as runtime data `{keys:[JWK], ohttp, …}`, and keeps
 * the token fresh until `stop()`.
 *
 * @example
 * ```ts
 * const attestation = await attestAtStart({ provider, attestationService: { url, ca } });
 * await keyBroker.release("db-key", attestation.token());
 * ```
 */
export async function attestAtStart(options: AttestAtStartOptions): Promise<Attestation> {
  const release = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const publicJwk: JWK = {
    ...(await exportJWK(release.publicKey)),
    kid: "release-1",
    use: "enc",
    alg: "RSA-OAEP-256",
  };
  const bind = (key: OhttpKeyPair): Uint8Array =>
    new TextEncoder().encode(
      JSON.stringify({
        ...options.runtime,
        keys: [publicJwk, ...(options.boundKeys ?? [])],
        ohttp: base64url(key.keyConfig),
      }),
    );
  let ohttp = await generateOhttpKeyPair(options.ohttp ?? {});
  let runtimeData = bind(ohttp);
  let evidence = await options.provider.getEvidence(runtimeData);
  let current = await requestToken(options.attestationService, evidence, runtimeData);
  const shared = await options.sharedOhttpKey?.({
    token: current.token,
    releasePrivateKey: release.privateKey,
  });
  if (shared !== undefined) {
    // The first token served only to fetch the shared key; the one kept binds it.
    ohttp = shared.current;
    runtimeData = bind(ohttp);
    evidence = await options.provider.getEvidence(runtimeData);
    current = await requestToken(options.attestationService, evidence, runtimeData);
  }
  const refreshAt = options.refreshAt ?? 0.75;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let failures = 0;
  const schedule = (delay: number): void => {
    if (stopped) {
      return;
    }
    timer = setTimeout(() => void refresh(), delay);
    timer.unref();
  };
  const refresh = async (): Promise<void> => {
    try {
      // Fresh evidence each time: a TEE's quote is cheap, and the service may have rotated collateral.
      const fresh = await options.provider.getEvidence(runtimeData);
      current = await requestToken(options.attestationService, fresh, runtimeData);
      failures = 0;
      const delay = refreshDelayMs(Date.now(), current.expiresAt.getTime(), refreshAt);
      options.onRefresh?.({ ok: true, expiresAt: current.expiresAt, nextAttemptMs: delay });
      schedule(delay);
    } catch (error) {
      failures++;
      const delay = Math.min(backoffMs(failures), Math.max(1000, current.expiresAt.getTime() - Date.now()));
      options.onRefresh?.({ ok: false, error, nextAttemptMs: delay });
      schedule(delay);
    }
  };
  schedule(refreshDelayMs(Date.now(), current.expiresAt.getTime(), refreshAt));
  return {
    token: () => current.token,
    expiresAt: () => current.expiresAt,
    runtimeData,
    evidence,
    keys: {
      release: { privateKey: release.privateKey, publicJwk },
      ohttp,
      ohttpPrevious: shared?.previous ?? [],
    },
    stop: () => {
      stopped = true;
      if (timer !== undefined) {
        clearTimeout(timer);
      }
    },
  };
}
