// Records at rest: every resource version sealed with AES-256-GCM under a key derived from the tenant's
// data key (released by the key broker), with tenant, type, id and version as associated data, so a
// ciphertext moved to another row or tenant does not open. Searchable values become HMAC blind indexes
// under a second derived key: exact-match lookups without the database seeing the value.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";
import { PlatformError } from "../errors.js";

/** The two keys one version of a tenant's data key yields. */
export interface KeyGeneration {
  readonly encryption: Buffer;
  readonly index: Buffer;
}

/**
 * A tenant's keys: the current generation (new records are sealed and indexed under it) and every older one
 * the key broker still holds, so records sealed before a rotation open until they are re-encrypted.
 */
export interface TenantKeyring extends KeyGeneration {
  /** The key broker's version number of the data key behind `encryption` and `index`. */
  readonly generation: number;
  /** Every generation held, the current one included. */
  readonly generations: ReadonlyMap<number, KeyGeneration>;
}

/** HKDF-SHA256 (RFC 5869) separates the encryption and index keys from one 32-byte data key. */
function deriveKeyGeneration(dataKey: Uint8Array, tenantId: string): KeyGeneration {
  if (dataKey.length !== 32) {
    throw new PlatformError("ERR_NOT_READY", "a tenant data key is 32 bytes");
  }
  const derive = (purpose: string): Buffer =>
    Buffer.from(
      hkdfSync("sha256", dataKey, Buffer.from(tenantId, "utf8"), `cloister records v1 ${purpose}`, 32),
    );
  return { encryption: derive("encryption"), index: derive("blind index") };
}

/** A keyring of one generation (the first version of a data key, unless told otherwise). */
export function deriveTenantKeyring(dataKey: Uint8Array, tenantId: string, generation = 1): TenantKeyring {
  return deriveTenantKeyringGenerations(new Map([[generation, dataKey]]), tenantId);
}

/** A keyring from every released version of a tenant's data key; the highest version is current. */
export function deriveTenantKeyringGenerations(
  dataKeys: ReadonlyMap<number, Uint8Array>,
  tenantId: string,
): TenantKeyring {
  const generations = new Map<number, KeyGeneration>();
  for (const [generation, dataKey] of dataKeys) {
    if (!Number.isInteger(generation) || generation < 1 || generation > 0xffff_ffff) {
      throw new PlatformError("ERR_NOT_READY", "a key generation is a positive 32-bit integer");
    }
    generations.set(generation, deriveKeyGeneration(dataKey, tenantId));
  }
  const generation = Math.max(...generations.keys());
  const current = generations.get(generation);
  if (current === undefined) {
    throw new PlatformError("ERR_NOT_READY", "a keyring needs at least one data key");
  }
  return { ...current, generation, generations };
}

export interface RecordAddress {
  readonly tenantId: string;
  readonly type: string;
  readonly id: string;
  readonly versionId: number;
}

function associatedData(address: RecordAddress): Buffer {
  return Buffer.from(
    `${address.tenantId}/${address.type}/${address.id}/_history/${address.versionId}`,
    "utf8",
  );
}

/** AES-256-GCM with a fresh IV: IV (12) ‖ ciphertext ‖ tag (16). The one sealing primitive of this service. */
export function sealBytes(key: Uint8Array, associated: Uint8Array, plaintext: Uint8Array): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv).setAAD(associated);
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Opens what sealBytes made; throws ERR_STORAGE when the key, the associated data or a byte is wrong. */
export function openBytes(key: Uint8Array, associated: Uint8Array, sealed: Uint8Array): Buffer {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  if (bytes.length < 28) {
    throw new PlatformError("ERR_STORAGE", "a sealed value is too short");
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, 12)).setAAD(associated);
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]);
  } catch (cause) {
    throw new PlatformError("ERR_STORAGE", "a sealed value failed its integrity check", { cause });
  }
}

// Sealed record formats. 1: 0x01 ‖ IV ‖ ciphertext ‖ tag, always under the data key's first version (read
// only). 2: 0x02 ‖ key generation (uint32, big-endian) ‖ IV ‖ ciphertext ‖ tag, with the 5-byte header also
// in the associated data, so a record names the key generation that opens it and the name cannot be changed.
const legacyFormat = 1;
const generationFormat = 2;
const headerLength = 5;

/** The key generation a sealed body needs (0 for a deletion's empty body); the database may read it. */
export function sealedKeyGeneration(sealed: Uint8Array): number {
  if (sealed.length === 0) {
    return 0;
  }
  if (sealed[0] === legacyFormat && sealed.length >= 29) {
    return 1;
  }
  if (sealed[0] === generationFormat && sealed.length >= headerLength + 28) {
    return Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length).readUInt32BE(1);
  }
  throw new PlatformError("ERR_STORAGE", "a stored record is not in a known format");
}

/** format 2: 0x02 ‖ generation (4) ‖ IV (12) ‖ ciphertext ‖ tag (16), under the keyring's current generation. */
export function sealRecord(keyring: TenantKeyring, address: RecordAddress, plaintext: Uint8Array): Buffer {
  const header = Buffer.alloc(headerLength);
  header[0] = generationFormat;
  header.writeUInt32BE(keyring.generation, 1);
  return Buffer.concat([
    header,
    sealBytes(keyring.encryption, Buffer.concat([header, associatedData(address)]), plaintext),
  ]);
}

/**
 * Opens a sealed record with the generation its header names. A generation this keyring does not hold
 * (another replica rotated first) is ERR_KEY_UNAVAILABLE: retry once the keyring is refreshed.
 */
export function openRecord(keyring: TenantKeyring, address: RecordAddress, sealed: Uint8Array): Buffer {
  const generation = sealedKeyGeneration(sealed);
  const keys = keyring.generations.get(generation);
  if (generation === 0) {
    throw new PlatformError("ERR_STORAGE", "a stored record is not in a known format");
  }
  if (keys === undefined) {
    throw new PlatformError(
      "ERR_KEY_UNAVAILABLE",
      `a record is sealed under data key version ${generation}, which this server does not hold`,
    );
  }
  if (sealed[0] === legacyFormat) {
    return openBytes(keys.encryption, associatedData(address), sealed.subarray(1));
  }
  const header = sealed.subarray(0, headerLength);
  return openBytes(
    keys.encryption,
    Buffer.concat([header, associatedData(address)]),
    sealed.subarray(headerLength),
  );
}

/** The blind index of one search value: HMAC-SHA256 over type, parameter and normalised value. */
export function blindIndex(keyring: KeyGeneration, type: string, parameter: string, value: string): Buffer {
  return createHmac("sha256", keyring.index)
    .update(`${type}\u0000${parameter}\u0000${value}`, "utf8")
    .digest();
}

/**
 * The value's blind index under every generation held, current first: what a search matches, so records
 * indexed before a rotation are found until they are re-encrypted.
 */
export function blindIndexes(
  keyring: TenantKeyring,
  type: string,
  parameter: string,
  value: string,
): Buffer[] {
  const others = [...keyring.generations].filter(([generation]) => generation !== keyring.generation);
  return [keyring, ...others.map(([, keys]) => keys)].map((keys) => blindIndex(keys, type, parameter, value));
}
