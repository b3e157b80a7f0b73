// Response encapsulation (RFC 9458 §4.4): a secret exported from the request's HPKE context, a fresh random
// nonce per response, and a key and nonce derived from both, so no two responses share an AES-GCM key or IV.
import { concatBytes, ownBytes } from "./bytes.js";
import { OhttpError } from "./errors.js";
import type { OhttpSuite } from "./suites.js";

export const responseExportLabel = new TextEncoder().encode("message/bhttp response");

/** max(Nn, Nk): the length of the exported secret and of the response nonce. */
export function responseNonceLength(suite: OhttpSuite): number {
  return Math.max(suite.nonceLength, suite.keyLength);
}

async function responseAead(
  suite: OhttpSuite,
  secret: Uint8Array,
  enc: Uint8Array,
  responseNonce: Uint8Array,
): Promise<{ key: CryptoKey; iv: Uint8Array<ArrayBuffer> }> {
  const subtle = globalThis.crypto.subtle;
  const salt = ownBytes(concatBytes(enc, responseNonce));
  // HKDF with the same salt and secret: Extract once in effect, Expand with "key" and with "nonce".
  const ikm = await subtle.importKey("raw", ownBytes(secret), "HKDF", false, ["deriveBits"]);
  const expand = async (info: string, length: number): Promise<Uint8Array<ArrayBuffer>> =>
    new Uint8Array(
      await subtle.deriveBits(
        { name: "HKDF", hash: suite.hash, salt, info: new TextEncoder().encode(info) },
        ikm,
        length * 8,
      ),
    );
  const keyBytes = await expand("key", suite.keyLength);
  const iv = await expand("nonce", suite.nonceLength);
  const key = await subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt", "decrypt"]);
  return { key, iv };
}

export async function sealResponseBody(
  suite: OhttpSuite,
  secret: Uint8Array,
  enc: Uint8Array,
  response: Uint8Array,
  responseNonce: Uint8Array,
): Promise<Uint8Array> {
  const { key, iv } = await responseAead(suite, secret, enc, responseNonce);
  const sealed = await globalThis.crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, ownBytes(response));
  return concatBytes(responseNonce, new Uint8Array(sealed));
}

export async function openResponseBody(
  suite: OhttpSuite,
  secret: Uint8Array,
  enc: Uint8Array,
  encapsulatedResponse: Uint8Array,
): Promise<Uint8Array> {
  const nonceLength = responseNonceLength(suite);
  if (encapsulatedResponse.length < nonceLength + 16) {
    throw new OhttpError("ERR_OHTTP_MALFORMED", "the encapsulated response is too short");
  }
  const { key, iv } = await responseAead(suite, secret, enc, encapsulatedResponse.subarray(0, nonceLength));
  try {
    return new Uint8Array(
      await globalThis.crypto.subtle.decrypt(
        { name: "AES-GCM", iv },
        key,
        ownBytes(encapsulatedResponse.subarray(nonceLength)),
      ),
    );
  } catch (cause) {
    throw new OhttpError("ERR_OHTTP_DECRYPT", "the encapsulated response does not decrypt", { cause });
  }
}
