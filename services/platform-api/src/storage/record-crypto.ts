// Records at rest: every resource version sealed with AES-256-GCM under a key derived from the tenant's
// data key (released by the key broker), with tenant, type, id and version as associated data, so a
// ciphertext moved to another row or tenant does not open. Searchable values become HMAC blind indexes
// under a second derived key: exact-match lookups without the database seeing the value.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";
import { PlatformError } from "../errors.js";

export interface TenantKeyring {
  readonly encryption: Buffer;
  readonly index: Buffer;
}

const formatVersion = 1;

/** HKDF-SHA256 (RFC 5869) separates the encryption and index keys from the tenant's 32-byte data key. */
export function deriveTenantKeyring(dataKey: Uint8Array, tenantId: string): TenantKeyring {
  if (dataKey.length !== 32) {
    throw new PlatformError("ERR_NOT_READY", "a tenant data key is 32 bytes");
  }
  const derive = (purpose: string): Buffer =>
    Buffer.from(
      hkdfSync("sha256", dataKey, Buffer.from(tenantId, "utf8"), `cloister records v1 ${purpose}`, 32),
    );
  return { encryption: derive("encryption"), index: derive("blind index") };
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

/** version (1) ‖ IV (12) ‖ ciphertext ‖ tag (16). */
export function sealRecord(keyring: TenantKeyring, address: RecordAddress, plaintext: Uint8Array): Buffer {
  return Buffer.concat([
    Buffer.from([formatVersion]),
    sealBytes(keyring.encryption, associatedData(address), plaintext),
  ]);
}

export function openRecord(keyring: TenantKeyring, address: RecordAddress, sealed: Uint8Array): Buffer {
  if (sealed.length < 29 || sealed[0] !== formatVersion) {
    throw new PlatformError("ERR_STORAGE", "a stored record is not in a known format");
  }
  return openBytes(keyring.encryption, associatedData(address), sealed.subarray(1));
}

/** The blind index of one search value: HMAC-SHA256 over type, parameter and normalised value. */
export function blindIndex(keyring: TenantKeyring, type: string, parameter: string, value: string): Buffer {
  return createHmac("sha256", keyring.index)
    .update(`${type}\u0000${parameter}\u0000${value}`, "utf8")
    .digest();
}
