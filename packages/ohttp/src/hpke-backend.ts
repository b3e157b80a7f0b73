// HPKE base mode (RFC 9180) as OHTTP uses it, behind one interface with two implementations: `webHpke`
// (@hpke/core and Web Crypto: browsers and Node) and `nodeHpke` (node:crypto, synchronous primitives,
// about ten times faster per request; `@cloister/ohttp/node`). Tests hold both to RFC 9458's vector and
// to each other.
import { concatBytes, ownBytes } from "./bytes.js";
import type { OhttpSuite } from "./suites.js";

export interface HpkeSender {
  readonly enc: Uint8Array;
  /**
   * Seals the concatenation of `parts` as one message, returning ciphertext parts whose concatenation is the
   * sealed message: a backend may encrypt a large part where it lies instead of copying it first.
   */
  readonly seal: (parts: readonly Uint8Array[]) => Promise<readonly Uint8Array[]>;
  readonly export: (context: Uint8Array, length: number) => Promise<Uint8Array>;
}

export interface HpkeReceiver {
  /** Rejects when authentication fails. */
  readonly open: (ciphertext: Uint8Array) => Promise<Uint8Array>;
  readonly export: (context: Uint8Array, length: number) => Promise<Uint8Array>;
}

export interface HpkeBackend {
  readonly name: string;
  readonly setupSender: (
    suite: OhttpSuite,
    recipientPublicKey: Uint8Array,
    info: Uint8Array,
    ephemeral?: { readonly privateKey: Uint8Array; readonly publicKey: Uint8Array },
  ) => Promise<HpkeSender>;
  readonly setupReceiver: (
    suite: OhttpSuite,
    recipientPrivateKey: CryptoKey,
    enc: Uint8Array,
    info: Uint8Array,
  ) => Promise<HpkeReceiver>;
  /** AES-GCM with the response key and nonce derived per RFC 9458 §4.4; `open` rejects on a bad tag. */
  readonly responseCipher: (
    suite: OhttpSuite,
    secret: Uint8Array,
    enc: Uint8Array,
    responseNonce: Uint8Array,
  ) => Promise<{
    readonly seal: (plaintext: Uint8Array) => Promise<Uint8Array>;
    readonly open: (ciphertext: Uint8Array) => Promise<Uint8Array>;
  }>;
}

/** @hpke/core and Web Crypto: runs wherever Web Crypto has X25519 (browsers, Node 20+). */
export const webHpke: HpkeBackend = {
  name: "@hpke/core",
  setupSender: async (suite, recipientPublicKey, info, ephemeral) => {
    const cipherSuite = suite.cipherSuite();
    const ekm =
      ephemeral === undefined
        ? undefined
        : {
            privateKey: await cipherSuite.kem.deserializePrivateKey(ownBytes(ephemeral.privateKey)),
            publicKey: await cipherSuite.kem.deserializePublicKey(ownBytes(ephemeral.publicKey)),
          };
    const sender = await cipherSuite.createSenderContext({
      recipientPublicKey: await cipherSuite.kem.deserializePublicKey(ownBytes(recipientPublicKey)),
      info: ownBytes(info),
      ...(ekm === undefined ? {} : { ekm }),
    });
    return {
      enc: new Uint8Array(sender.enc),
      seal: async (parts) => [new Uint8Array(await sender.seal(ownBytes(concatBytes(...parts))))],
      export: async (context, length) => new Uint8Array(await sender.export(ownBytes(context), length)),
    };
  },
  setupReceiver: async (suite, recipientPrivateKey, enc, info) => {
    const recipient = await suite.cipherSuite().createRecipientContext({
      recipientKey: recipientPrivateKey,
      enc: ownBytes(enc),
      info: ownBytes(info),
    });
    return {
      open: async (ciphertext) => new Uint8Array(await recipient.open(ownBytes(ciphertext))),
      export: async (context, length) => new Uint8Array(await recipient.export(ownBytes(context), length)),
    };
  },
  responseCipher: async (suite, secret, enc, responseNonce) => {
    const subtle = globalThis.crypto.subtle;
    const salt = ownBytes(concatBytes(enc, responseNonce));
    // HKDF with the same salt and secret: Extract once in effect, Expand with "key" and with "nonce".
    const ikm = await subtle.importKey("raw", ownBytes(secret), "HKDF", false, ["deriveBits"]);
    const expand = async (label: string, length: number): Promise<Uint8Array<ArrayBuffer>> =>
      new Uint8Array(
        await subtle.deriveBits(
          { name: "HKDF", hash: suite.hash, salt, info: new TextEncoder().encode(label) },
          ikm,
          length * 8,
        ),
      );
    const key = await subtle.importKey("raw", await expand("key", suite.keyLength), "AES-GCM", false, [
      "encrypt",
      "decrypt",
    ]);
    const iv = await expand("nonce", suite.nonceLength);
    return {
      seal: async (plaintext) =>
        new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv }, key, ownBytes(plaintext))),
      open: async (ciphertext) =>
        new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv }, key, ownBytes(ciphertext))),
    };
  },
};
