// The workload's OHTTP key: an X25519 key pair and its key configuration (RFC 9458 §3: key id, KEM
// DHKEM(X25519, HKDF-SHA256), public key, and the symmetric suites HKDF-SHA256 with AES-128-GCM).
// The OHTTP gateway and client themselves live in @cloister/ohttp.
import { generateKeyPairSync, type KeyObject } from "node:crypto";

export const kemX25519HkdfSha256 = 0x0020;
export const kdfHkdfSha256 = 0x0001;
export const aeadAes128Gcm = 0x0001;

export interface OhttpKeyPair {
  readonly keyId: number;
  readonly privateKey: KeyObject;
  readonly publicKey: Uint8Array;
  /** The encoded key configuration. */
  readonly keyConfig: Uint8Array;
}

export function encodeKeyConfig(keyId: number, publicKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + 2 + publicKey.length + 2 + 4);
  const view = new DataView(out.buffer);
  view.setUint8(0, keyId);
  view.setUint16(1, kemX25519HkdfSha256);
  out.set(publicKey, 3);
  let offset = 3 + publicKey.length;
  view.setUint16(offset, 4);
  offset += 2;
  view.setUint16(offset, kdfHkdfSha256);
  view.setUint16(offset + 2, aeadAes128Gcm);
  return out;
}

export function generateOhttpKeyPair(keyId = 1): OhttpKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const raw = new Uint8Array(Buffer.from(publicKey.export({ format: "jwk" }).x ?? "", "base64url"));
  return { keyId, privateKey, publicKey: raw, keyConfig: encodeKeyConfig(keyId, raw) };
}
