// Response encapsulation (RFC 9458 §4.4): a secret exported from the request's HPKE context, a fresh random
// nonce per response, and a key and nonce derived from both, so no two responses share an AES-GCM key or IV.
import { concatBytes } from "./bytes.js";
import { OhttpError } from "./errors.js";
import type { HpkeBackend } from "./hpke-backend.js";
import type { OhttpSuite } from "./suites.js";

export const responseExportLabel = new TextEncoder().encode("message/bhttp response");

/** max(Nn, Nk): the length of the exported secret and of the response nonce. */
export function responseNonceLength(suite: OhttpSuite): number {
  return Math.max(suite.nonceLength, suite.keyLength);
}

export async function sealResponseBody(
  backend: HpkeBackend,
  suite: OhttpSuite,
  secret: Uint8Array,
  enc: Uint8Array,
  response: Uint8Array,
  responseNonce: Uint8Array,
): Promise<Uint8Array> {
  const cipher = await backend.responseCipher(suite, secret, enc, responseNonce);
  return concatBytes(responseNonce, await cipher.seal(response));
}

export async function openResponseBody(
  backend: HpkeBackend,
  suite: OhttpSuite,
  secret: Uint8Array,
  enc: Uint8Array,
  encapsulatedResponse: Uint8Array,
): Promise<Uint8Array> {
  const nonceLength = responseNonceLength(suite);
  if (encapsulatedResponse.length < nonceLength + 16) {
    throw new OhttpError("ERR_OHTTP_MALFORMED", "the encapsulated response is too short");
  }
  const cipher = await backend.responseCipher(
    suite,
    secret,
    enc,
    encapsulatedResponse.subarray(0, nonceLength),
  );
  try {
    return await cipher.open(encapsulatedResponse.subarray(nonceLength));
  } catch (cause) {
    throw new OhttpError("ERR_OHTTP_DECRYPT", "the encapsulated response does not decrypt", { cause });
  }
}
