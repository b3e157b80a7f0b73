// The client side of OHTTP (RFC 9458 §4.3 and §4.4): seal a Binary HTTP request to the gateway's key
// configuration; open the response with the same HPKE context.
import { concatBytes, ownBytes, uint16 } from "./bytes.js";
import { OhttpError } from "./errors.js";
import { parseKeyConfig, selectSuite, type KeyConfig } from "./key-config.js";
import { webHpke, type HpkeBackend } from "./hpke-backend.js";
import { openResponseBody, responseExportLabel, responseNonceLength } from "./response-crypto.js";
import type { OhttpSuite } from "./suites.js";

export const ohttpRequestMediaType = "message/ohttp-req";
export const ohttpResponseMediaType = "message/ohttp-res";

export interface EncapsulateOptions {
  /**
   * A fixed ephemeral key pair, for known-answer tests only (RFC 9458 Appendix A). Leave unset: every
   * request must use a fresh ephemeral key.
   */
  readonly ephemeralKeyPair?: { readonly privateKey: Uint8Array; readonly publicKey: Uint8Array };
  /** The HPKE implementation (default `webHpke`; in Node, `nodeHpke` from `@cloister/ohttp/node`). */
  readonly hpke?: HpkeBackend;
}

export interface EncapsulatedRequest {
  /** The `message/ohttp-req` body (joined on first use). */
  readonly encapsulatedRequest: Uint8Array;
  /** The same body in parts, to write one after another without joining them (a large body's ciphertext). */
  readonly encapsulatedRequestParts: readonly Uint8Array[];
  /** The suite the request was sealed with. */
  readonly suite: OhttpSuite;
  /** Opens this request's `message/ohttp-res` body, and only this request's. */
  readonly openResponse: (encapsulatedResponse: Uint8Array) => Promise<Uint8Array>;
}

/** hdr = key_id ‖ kem_id ‖ kdf_id ‖ aead_id (RFC 9458 §4.3). */
export function requestHeader(keyId: number, suite: OhttpSuite): Uint8Array {
  return concatBytes(new Uint8Array([keyId]), uint16(suite.kemId), uint16(suite.kdfId), uint16(suite.aeadId));
}

/** info = "message/bhttp request" ‖ 0x00 ‖ hdr (RFC 9458 §4.3). */
export function requestInfo(header: Uint8Array): Uint8Array<ArrayBuffer> {
  return ownBytes(
    concatBytes(new TextEncoder().encode("message/bhttp request"), new Uint8Array([0]), header),
  );
}

/**
 * Seals a Binary HTTP request to a gateway's key configuration. The request may be given in parts
 * (`encodeRequestParts`), so a large body is encrypted where it lies.
 *
 * @example
 * ```ts
 * const sealed = await encapsulateRequest(keyConfig, encodeRequest({ method: "GET", path: "/v2/models" }));
 * const reply = await fetch(gatewayUrl, { method: "POST", body: sealed.encapsulatedRequest,
 *   headers: { "content-type": "message/ohttp-req" } });
 * const response = decodeResponse(await sealed.openResponse(new Uint8Array(await reply.arrayBuffer())));
 * ```
 */
export async function encapsulateRequest(
  keyConfig: KeyConfig | Uint8Array,
  request: Uint8Array | readonly Uint8Array[],
  options: EncapsulateOptions = {},
): Promise<EncapsulatedRequest> {
  const config = keyConfig instanceof Uint8Array ? parseKeyConfig(keyConfig) : keyConfig;
  const suite = selectSuite(config);
  const backend = options.hpke ?? webHpke;
  const header = requestHeader(config.keyId, suite);
  const sender = await backend.setupSender(
    suite,
    config.publicKey,
    requestInfo(header),
    options.ephemeralKeyPair,
  );
  const enc = sender.enc;
  const ciphertext = await sender.seal(request instanceof Uint8Array ? [request] : request);
  const secret = await sender.export(responseExportLabel, responseNonceLength(suite));
  const parts = [concatBytes(header, enc), ...ciphertext];
  let joined: Uint8Array | undefined;
  return {
    get encapsulatedRequest() {
      joined ??= concatBytes(...parts);
      return joined;
    },
    encapsulatedRequestParts: parts,
    suite,
    openResponse: async (encapsulatedResponse) => {
      if (!(encapsulatedResponse instanceof Uint8Array)) {
        throw new OhttpError("ERR_OHTTP_MALFORMED", "an encapsulated response is bytes");
      }
      return openResponseBody(backend, suite, secret, enc, encapsulatedResponse);
    },
  };
}
