// The HPKE suites Cloister speaks (RFC 9180 §7). X25519 with AES-128-GCM is RFC 9458's example and our
// default; P-384 with AES-256-GCM is for deployments that require NIST curves.
import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite,
  DhkemP384HkdfSha384,
  DhkemX25519HkdfSha256,
  HkdfSha256,
  HkdfSha384,
} from "@hpke/core";

export type OhttpSuiteName = "X25519-SHA256-AES128GCM" | "P384-SHA384-AES256GCM";

export interface OhttpSuite {
  readonly name: OhttpSuiteName;
  readonly kemId: number;
  readonly kdfId: number;
  readonly aeadId: number;
  /** Length of the encapsulated KEM key (Nenc) and of the public key (Npk). */
  readonly encLength: number;
  /** AEAD key and nonce lengths (Nk, Nn). */
  readonly keyLength: number;
  readonly nonceLength: number;
  /** Web Crypto hash for the response HKDF. */
  readonly hash: "SHA-256" | "SHA-384";
  readonly cipherSuite: () => CipherSuite;
}

export const defaultSuiteName: OhttpSuiteName = "X25519-SHA256-AES128GCM";

export const suites: Readonly<Record<OhttpSuiteName, OhttpSuite>> = {
  "X25519-SHA256-AES128GCM": {
    name: "X25519-SHA256-AES128GCM",
    kemId: 0x0020,
    kdfId: 0x0001,
    aeadId: 0x0001,
    encLength: 32,
    keyLength: 16,
    nonceLength: 12,
    hash: "SHA-256",
    cipherSuite: () =>
      new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() }),
  },
  "P384-SHA384-AES256GCM": {
    name: "P384-SHA384-AES256GCM",
    kemId: 0x0011,
    kdfId: 0x0002,
    aeadId: 0x0002,
    encLength: 97,
    keyLength: 32,
    nonceLength: 12,
    hash: "SHA-384",
    cipherSuite: () =>
      new CipherSuite({ kem: new DhkemP384HkdfSha384(), kdf: new HkdfSha384(), aead: new Aes256Gcm() }),
  },
};

/** The suite for these identifiers, or undefined when we do not speak it. */
export function findSuite(kemId: number, kdfId: number, aeadId: number): OhttpSuite | undefined {
  return Object.values(suites).find(
    (suite) => suite.kemId === kemId && suite.kdfId === kdfId && suite.aeadId === aeadId,
  );
}
