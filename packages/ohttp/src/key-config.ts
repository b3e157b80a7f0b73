// OHTTP key configurations (RFC 9458 §3) and the `application/ohttp-keys` list (§3.2).
import { ByteReader, concatBytes, uint16 } from "./bytes.js";
import { OhttpError } from "./errors.js";
import { findSuite, suites, type OhttpSuite } from "./suites.js";

export const ohttpKeysMediaType = "application/ohttp-keys";

export interface SymmetricAlgorithm {
  readonly kdfId: number;
  readonly aeadId: number;
}

export interface KeyConfig {
  readonly keyId: number;
  readonly kemId: number;
  readonly publicKey: Uint8Array;
  readonly symmetricAlgorithms: readonly SymmetricAlgorithm[];
}

function publicKeyLength(kemId: number): number {
  const suite = Object.values(suites).find((candidate) => candidate.kemId === kemId);
  if (suite === undefined) {
    throw new OhttpError("ERR_OHTTP_UNSUPPORTED_SUITE", `KEM 0x${kemId.toString(16)} is not supported`);
  }
  return suite.encLength;
}

function readKeyConfig(reader: ByteReader): KeyConfig {
  const keyId = reader.uint8();
  const kemId = reader.uint16();
  const publicKey = reader.take(publicKeyLength(kemId)).slice();
  const algorithmsLength = reader.uint16();
  if (algorithmsLength === 0 || algorithmsLength % 4 !== 0) {
    reader.fail("the symmetric algorithm list must be a non-empty multiple of 4 bytes");
  }
  const algorithms = new ByteReader(reader.take(algorithmsLength), "ERR_OHTTP_KEY_CONFIG");
  const symmetricAlgorithms: SymmetricAlgorithm[] = [];
  while (algorithms.remaining > 0) {
    symmetricAlgorithms.push({ kdfId: algorithms.uint16(), aeadId: algorithms.uint16() });
  }
  return { keyId, kemId, publicKey, symmetricAlgorithms };
}

/**
 * Parses one key configuration (RFC 9458 §3.1), exactly: trailing bytes are an error.
 *
 * @example
 * ```ts
 * const config = parseKeyConfig(Buffer.from(attestation.keyConfig, "base64url"));
 * config.keyId; // 1
 * ```
 */
export function parseKeyConfig(bytes: Uint8Array): KeyConfig {
  const reader = new ByteReader(bytes, "ERR_OHTTP_KEY_CONFIG");
  const config = readKeyConfig(reader);
  if (reader.remaining !== 0) {
    reader.fail(`${reader.remaining} bytes follow the key configuration`);
  }
  return config;
}

/** Encodes one key configuration (RFC 9458 §3.1). */
export function encodeKeyConfig(config: KeyConfig): Uint8Array {
  if (config.publicKey.length !== publicKeyLength(config.kemId)) {
    throw new OhttpError("ERR_OHTTP_KEY_CONFIG", "the public key length does not match the KEM");
  }
  return concatBytes(
    new Uint8Array([config.keyId]),
    uint16(config.kemId),
    config.publicKey,
    uint16(config.symmetricAlgorithms.length * 4),
    ...config.symmetricAlgorithms.flatMap((algorithm) => [uint16(algorithm.kdfId), uint16(algorithm.aeadId)]),
  );
}

/** Parses an `application/ohttp-keys` body: key configurations, each with a 2-byte length (§3.2). */
export function parseKeyConfigList(bytes: Uint8Array): KeyConfig[] {
  const reader = new ByteReader(bytes, "ERR_OHTTP_KEY_CONFIG");
  const configs: KeyConfig[] = [];
  while (reader.remaining > 0) {
    configs.push(parseKeyConfig(reader.take(reader.uint16())));
  }
  if (configs.length === 0) {
    reader.fail("the key configuration list is empty");
  }
  return configs;
}

/** Encodes an `application/ohttp-keys` body (§3.2). */
export function encodeKeyConfigList(configs: readonly Uint8Array[]): Uint8Array {
  return concatBytes(...configs.flatMap((config) => [uint16(config.length), config]));
}

/** The first suite in the configuration that we speak, in the configuration's order of preference. */
export function selectSuite(config: KeyConfig): OhttpSuite {
  for (const algorithm of config.symmetricAlgorithms) {
    const suite = findSuite(config.kemId, algorithm.kdfId, algorithm.aeadId);
    if (suite !== undefined) {
      return suite;
    }
  }
  throw new OhttpError(
    "ERR_OHTTP_UNSUPPORTED_SUITE",
    "the key configuration offers no HPKE suite this client speaks",
  );
}
