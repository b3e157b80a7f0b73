// A client for a confidential service behind an OHTTP gateway (DESIGN.md §1 step 5): fetch its evidence,
// verify its token and that the OHTTP key is the attested one, then send each request sealed to that key
// with our own attestation token inside, so the host between us sees only ciphertext.
import {
  decodeResponse,
  encapsulateRequest,
  encodeRequestParts,
  ohttpRequestMediaType,
  ohttpResponseMediaType,
  parseKeyConfig,
  type KeyConfig,
  type BinaryResponse,
  type FieldLine,
  type RequestInit,
} from "@cloister/ohttp";
import { nodeHpke } from "@cloister/ohttp/node";
import { Agent } from "node:https";
import { EnclaveError } from "./errors.js";
import { requestBytes, requestJson, type HttpsClientOptions } from "./https-client.js";
import type { PeerVerifier } from "./peer-verifier.js";
import type { PeerIdentity } from "./verify-peer.js";

export interface ConfidentialServiceOptions extends HttpsClientOptions {
  /** The service's origin, e.g. `https://127.0.0.1:7445`; it serves `/attestation` and `/ohttp`. */
  readonly url: string;
  /** Verifies the service's token against the policy for this service. */
  readonly verifier: PeerVerifier;
  /** Our own attestation token, sent inside every sealed request (`Authorization: Attestation …`). */
  readonly callerToken: () => string;
}

export interface ConfidentialResponse extends BinaryResponse {
  /** Milliseconds spent sealing, on the wire (gateway and service included), and opening. */
  readonly timings: { readonly seal: number; readonly exchange: number; readonly open: number };
}

export interface ConfidentialService {
  /** What the service proved, from its current token. */
  readonly identity: () => PeerIdentity;
  /** The attested OHTTP key configuration (base64url) requests are sealed to. */
  readonly keyConfig: () => string;
  readonly request: (init: RequestInit) => Promise<ConfidentialResponse>;
  /** Fetches and verifies the service's evidence again (after a restart, or when its token expires). */
  readonly refresh: () => Promise<void>;
  readonly close: () => void;
}

function isFieldLines(headers: NonNullable<RequestInit["headers"]>): headers is readonly FieldLine[] {
  return Array.isArray(headers);
}

interface AttestedService {
  readonly identity: PeerIdentity;
  readonly keyConfig: string;
  /** Parsed once per attestation, not per request. */
  readonly parsedKeyConfig: KeyConfig;
  readonly expiresAtMs: number;
}

/**
 * Connects to a confidential service: verifies its attestation before the first request is sent.
 *
 * @example
 * ```ts
 * const inference = await connectConfidentialService({
 *   url: "https://127.0.0.1:7445", ca, verifier: inferenceVerifier, callerToken: () => attestation.token(),
 * });
 * const response = await inference.request({ method: "GET", path: "/v2/models" });
 * ```
 */
export async function connectConfidentialService(
  options: ConfidentialServiceOptions,
): Promise<ConfidentialService> {
  const agent =
    options.agent ??
    new Agent({
      keepAlive: true,
      ...(options.ca === undefined
        ? {}
        : { ca: typeof options.ca === "string" ? options.ca : [...options.ca] }),
    });
  const http: HttpsClientOptions = { ...options, agent };
  const attest = async (): Promise<AttestedService> => {
    const response = await requestJson("GET", new URL("/attestation", options.url), undefined, http);
    const body = response.body as { token?: unknown; keyConfig?: unknown } | undefined;
    if (response.status !== 200 || typeof body?.token !== "string" || typeof body.keyConfig !== "string") {
      throw new EnclaveError("ERR_PEER_RESPONSE", `${new URL(options.url).origin} gave no attestation`);
    }
    const identity = await options.verifier.verify(body.token, { ohttpKeyConfig: body.keyConfig });
    const exp = typeof identity.claims.exp === "number" ? identity.claims.exp * 1000 : 0;
    return {
      identity,
      keyConfig: body.keyConfig,
      parsedKeyConfig: parseKeyConfig(Buffer.from(body.keyConfig, "base64url")),
      expiresAtMs: exp,
    };
  };
  const authority = new URL(options.url).host;
  const gatewayUrl = new URL("/ohttp", options.url);
  let current = await attest();
  let refreshing: Promise<void> | undefined;
  const refresh = async (): Promise<void> => {
    refreshing ??= attest()
      .then((next) => {
        current = next;
      })
      .finally(() => {
        refreshing = undefined;
      });
    return refreshing;
  };

  const send = async (init: RequestInit, retried: boolean): Promise<ConfidentialResponse> => {
    if (current.expiresAtMs <= Date.now()) {
      await refresh();
    }
    const started = performance.now();
    const given = init.headers;
    const headers: FieldLine[] = [
      ...(given === undefined ? [] : isFieldLines(given) ? given : Object.entries(given)),
      ["authorization", `Attestation ${options.callerToken()}`],
      ["date", new Date().toUTCString()],
    ];
    const sealed = await encapsulateRequest(
      current.parsedKeyConfig,
      encodeRequestParts({
        ...init,
        authority,
        headers,
        // Buffer.from, not TextEncoder: for a 700 kB body its p90 here is 0.24 ms against TextEncoder's 2.4 ms.
        ...(typeof init.body === "string" ? { body: Buffer.from(init.body) } : {}),
      }),
      { hpke: nodeHpke },
    );
    const sealedAt = performance.now();
    const reply = await requestBytes(
      "POST",
      gatewayUrl,
      { bytes: sealed.encapsulatedRequestParts, contentType: ohttpRequestMediaType },
      { ...http, accept: ohttpResponseMediaType },
    );
    const exchangedAt = performance.now();
    if (reply.status !== 200 || reply.contentType !== ohttpResponseMediaType) {
      const problem =
        reply.contentType?.startsWith("application/problem+json") === true
          ? (JSON.parse(Buffer.from(reply.body).toString("utf8")) as { code?: unknown })
          : {};
      // The service restarted with a new key: verify its new evidence, then try once more.
      if (!retried && (problem.code === "ERR_OHTTP_UNKNOWN_KEY" || problem.code === "ERR_OHTTP_DECRYPT")) {
        await refresh();
        return send(init, true);
      }
      const retry = reply.retryAfter === undefined ? "" : `; retry after ${reply.retryAfter} s`;
      throw new EnclaveError(
        "ERR_PEER_RESPONSE",
        `the gateway answered ${reply.status} (${typeof problem.code === "string" ? problem.code : "no code"})${retry}`,
      );
    }
    const response = decodeResponse(await sealed.openResponse(reply.body));
    const openedAt = performance.now();
    return {
      ...response,
      timings: { seal: sealedAt - started, exchange: exchangedAt - sealedAt, open: openedAt - exchangedAt },
    };
  };

  return {
    identity: () => current.identity,
    keyConfig: () => current.keyConfig,
    request: async (init) => send(init, false),
    refresh,
    close: () => {
      if (options.agent === undefined) {
        agent.destroy();
      }
    },
  };
}
