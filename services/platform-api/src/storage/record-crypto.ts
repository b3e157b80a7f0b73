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

/** version (1) ‖ IV (12) ‖ ciphertext ‖ tag (16). */
export function sealRecord(keyring: TenantKeyring, address: RecordAddress, plaintext: Uint8Array): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", keyring.encryption, iv).setAAD(associatedData(address));
  return Buffer.concat([
    Buffer.from([formatVersion]),
    iv,
    cipher.update(plaintext),
    cipher.final(),
    cipher.getAuthTag(),
  ]);
}

export function openRecord(keyring: TenantKeyring, address: RecordAddress, sealed: Uint8Array): Buffer {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  if (bytes.length < 29 || bytes[0] !== formatVersion) {
    throw new PlatformError("ERR_STORAGE", "a stored record is not in a known format");
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", keyring.encryption, bytes.subarray(1, 13)).setAAD(
      associatedData(address),
    );
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([decipher.update(bytes.subarray(13, bytes.length - 16)), decipher.final()]);
  } catch (cause) {
    throw new PlatformError("ERR_STORAGE", "a stored record failed its integrity check", { cause });
  }
}

/** The blind index of one search value: HMAC-SHA256 over type, parameter and normalised value. */
export function blindIndex(keyring: TenantKeyring, type: string, parameter: string, value: string): Buffer {
  return createHmac("sha256", keyring.index)
    .update(`${type}\u0000${parameter}\u0000${value}`, "utf8")
    .digest();
}
