// The gateway side of OHTTP (RFC 9458 §4.3 and §4.4): open encapsulated requests for our keys, reject
// replays, and seal each response with a fresh nonce.
import { ByteReader, ownBytes } from "./bytes.js";
import { requestInfo, requestHeader } from "./client.js";
import { OhttpError } from "./errors.js";
import { encodeKeyConfig, encodeKeyConfigList } from "./key-config.js";
import { webHpke, type HpkeBackend } from "./hpke-backend.js";
import { ReplayCache } from "./replay-cache.js";
import { responseExportLabel, responseNonceLength, sealResponseBody } from "./response-crypto.js";
import { defaultSuiteName, findSuite, suites, type OhttpSuite, type OhttpSuiteName } from "./suites.js";

export interface OhttpKeyPair {
  readonly keyId: number;
  readonly suite: OhttpSuite;
  readonly privateKey: CryptoKey;
  readonly publicKey: Uint8Array;
  /** The encoded key configuration (RFC 9458 §3.1) offering exactly this suite. */
  readonly keyConfig: Uint8Array;
}

function randomKeyId(): number {
  return globalThis.crypto.getRandomValues(new Uint8Array(1))[0] ?? 0;
}

function keyPairFrom(
  keyId: number,
  suite: OhttpSuite,
  privateKey: CryptoKey,
  publicKey: Uint8Array,
): OhttpKeyPair {
  const keyConfig = encodeKeyConfig({
    keyId,
    kemId: suite.kemId,
    publicKey,
    symmetricAlgorithms: [{ kdfId: suite.kdfId, aeadId: suite.aeadId }],
  });
  return { keyId, suite, privateKey, publicKey, keyConfig };
}

/**
 * Makes a gateway key pair inside this process (the TEE). The private key is not extractable.
 *
 * @example
 * ```ts
 * const key = await generateOhttpKeyPair();
 * const gateway = new OhttpGateway({ keys: [key] });
 * ```
 */
export async function generateOhttpKeyPair(
  options: { keyId?: number; suite?: OhttpSuiteName } = {},
): Promise<OhttpKeyPair> {
  const suite = suites[options.suite ?? defaultSuiteName];
  const kem = suite.cipherSuite().kem;
  const pair = await kem.generateKeyPair();
  const publicKey = new Uint8Array(await kem.serializePublicKey(pair.publicKey));
  return keyPairFrom(options.keyId ?? randomKeyId(), suite, pair.privateKey, publicKey);
}

/** Imports a gateway key pair from raw bytes: for known-answer tests and keys released by a key broker. */
export async function importOhttpKeyPair(options: {
  keyId: number;
  suite?: OhttpSuiteName;
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}): Promise<OhttpKeyPair> {
  const suite = suites[options.suite ?? defaultSuiteName];
  const kem = suite.cipherSuite().kem;
  const privateKey = await kem.deserializePrivateKey(ownBytes(options.privateKey));
  return keyPairFrom(options.keyId, suite, privateKey, options.publicKey.slice());
}

export interface OhttpGatewayOptions {
  /** The keys clients should seal to, listed by `keyConfigList`. */
  readonly keys: readonly OhttpKeyPair[];
  /**
   * Older versions of a rotated key: requests sealed to them are still opened, but they are not listed, so
   * clients that verified them go on while new clients learn only the current key.
   */
  readonly previousKeys?: readonly OhttpKeyPair[];
  /** How long opened requests are remembered to reject replays (default 10 minutes). */
  readonly replayWindowMs?: number;
  readonly maxReplayEntries?: number;
  readonly now?: () => number;
  /** The HPKE implementation (default `webHpke`; in Node, `nodeHpke` from `@cloister/ohttp/node`). */
  readonly hpke?: HpkeBackend;
}

export interface SealResponseOptions {
  /** A fixed response nonce, for known-answer tests only. Leave unset: every response gets a fresh one. */
  readonly responseNonce?: Uint8Array;
}

export interface DecapsulatedRequest {
  /** The Binary HTTP request. */
  readonly request: Uint8Array;
  readonly keyId: number;
  /**
   * The request's encapsulated key: fresh for every honest request, so gateways that share one key (several
   * replicas) can share their replay check on it.
   */
  readonly enc: Uint8Array;
  /**
   * Seals the response for this request's client. Each call draws a fresh random nonce, so keys and IVs
   * never repeat, even for two responses to one request.
   */
  readonly sealResponse: (response: Uint8Array, options?: SealResponseOptions) => Promise<Uint8Array>;
}

/**
 * An OHTTP gateway: opens `message/ohttp-req` bodies sealed to one of its keys and seals the responses.
 *
 * @example
 * ```ts
 * const gateway = new OhttpGateway({ keys: [await generateOhttpKeyPair()] });
 * const { request, sealResponse } = await gateway.decapsulate(body);
 * const reply = await sealResponse(encodeResponse({ status: 200, body: result }));
 * ```
 */
export class OhttpGateway {
  /** Every key requests are opened with: the listed ones and the previous ones. */
  private readonly keys: ReadonlyMap<number, OhttpKeyPair>;
  private readonly listed: readonly OhttpKeyPair[];
  private readonly replayCache: ReplayCache;
  private readonly hpke: HpkeBackend;

  constructor(options: OhttpGatewayOptions) {
    const keys = new Map<number, OhttpKeyPair>();
    for (const key of [...options.keys, ...(options.previousKeys ?? [])]) {
      if (keys.has(key.keyId)) {
        throw new OhttpError("ERR_OHTTP_KEY_CONFIG", `two keys share key id ${key.keyId}`);
      }
      keys.set(key.keyId, key);
    }
    this.keys = keys;
    this.listed = [...options.keys];
    this.hpke = options.hpke ?? webHpke;
    this.replayCache = new ReplayCache({
      windowMs: options.replayWindowMs ?? 600_000,
      ...(options.maxReplayEntries === undefined ? {} : { maxEntries: options.maxReplayEntries }),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  }

  /** The `application/ohttp-keys` body for `GET /ohttp-keys`. */
  keyConfigList(): Uint8Array {
    return encodeKeyConfigList(this.listed.map((key) => key.keyConfig));
  }

  /**
   * The earliest inner-request time (ms since the epoch) the replay cache still covers. A server should
   * refuse inner requests dated before it, so a replay older than the cache is refused too.
   */
  replayHorizon(): number {
    return this.replayCache.horizon();
  }

  /**
   * Whether an inner request's `Date` field value is fresh: not before the replay horizon and not in the
   * future, each with `skewMs` of allowance for clocks (HTTP dates have one-second resolution). A request
   * without a parseable Date is not fresh.
   */
  acceptsDate(date: string | undefined, now: number, skewMs = 60_000): boolean {
    const sent = date === undefined ? Number.NaN : Date.parse(date);
    return Number.isFinite(sent) && sent + 1000 >= this.replayHorizon() + skewMs && sent <= now + skewMs;
  }

  async decapsulate(encapsulatedRequest: Uint8Array): Promise<DecapsulatedRequest> {
    const reader = new ByteReader(encapsulatedRequest, "ERR_OHTTP_MALFORMED");
    const keyId = reader.uint8();
    const kemId = reader.uint16();
    const kdfId = reader.uint16();
    const aeadId = reader.uint16();
    const key = this.keys.get(keyId);
    if (key === undefined) {
      throw new OhttpError(
        "ERR_OHTTP_UNKNOWN_KEY",
        `no gateway key has id ${keyId}; fetch the key configuration again`,
      );
    }
    const suite = findSuite(kemId, kdfId, aeadId);
    if (suite === undefined || suite.name !== key.suite.name) {
      throw new OhttpError(
        "ERR_OHTTP_UNSUPPORTED_SUITE",
        `key ${keyId} does not offer the requested HPKE suite`,
      );
    }
    const enc = reader.take(suite.encLength).slice();
    if (reader.remaining < 16) {
      reader.fail("the encapsulated request has no room for an AEAD tag");
    }
    const ciphertext = reader.take(reader.remaining);
    let request: Uint8Array;
    let secret: Uint8Array;
    try {
      const recipient = await this.hpke.setupReceiver(
        suite,
        key.privateKey,
        enc,
        requestInfo(requestHeader(keyId, suite)),
      );
      request = await recipient.open(ciphertext);
      secret = await recipient.export(responseExportLabel, responseNonceLength(suite));
    } catch (cause) {
      throw new OhttpError("ERR_OHTTP_DECRYPT", "the encapsulated request does not decrypt", { cause });
    }
    // Only authenticated requests enter the cache, so garbage cannot pre-empt an honest request's enc.
    if (!this.replayCache.remember(hex(enc))) {
      throw new OhttpError("ERR_OHTTP_REPLAY", "this encapsulated request was already received");
    }
    return {
      request,
      keyId,
      enc,
      sealResponse: async (response, options = {}) => {
        const nonce =
          options.responseNonce ??
          globalThis.crypto.getRandomValues(new Uint8Array(responseNonceLength(suite)));
        if (nonce.length !== responseNonceLength(suite)) {
          throw new OhttpError("ERR_OHTTP_MALFORMED", "the response nonce has the wrong length");
        }
        return sealResponseBody(this.hpke, suite, secret, enc, response, nonce);
      },
    };
  }
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) {
    out += byte.toString(16).padStart(2, "0");
  }
  return out;
}

/** RFC 9458 §5.3: the problem type telling clients to fetch the key configuration again. */
export const ohttpKeyProblemType = "https://iana.org/assignments/http-problem-types#ohttp-key";

/**
 * The `application/problem+json` body (status 400) for an encapsulated request the gateway could not open,
 * with its stable code; key problems carry the RFC 9458 problem type. Nothing of the request is echoed.
 */
export function decapsulationProblem(error: unknown): {
  readonly code: string;
  readonly body: { type?: string; title: string; status: 400; code: string };
} {
  const code = error instanceof OhttpError ? error.code : "ERR_GATEWAY";
  return {
    code,
    body: {
      ...(code === "ERR_OHTTP_UNKNOWN_KEY" || code === "ERR_OHTTP_DECRYPT"
        ? { type: ohttpKeyProblemType }
        : {}),
      title: "the encapsulated request could not be opened",
      status: 400,
      code,
    },
  };
}
