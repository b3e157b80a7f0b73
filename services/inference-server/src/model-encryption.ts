// Encrypted models at rest: AES-256-GCM with the model's name and version as associated data, so a
// ciphertext cannot be swapped for another model's. Layout: "CLMODEL1" ‖ IV (12) ‖ ciphertext ‖ tag (16).
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { InferenceError } from "./errors.js";

const magic = Buffer.from("CLMODEL1", "ascii");

function associatedData(name: string, version: string): Buffer {
  return Buffer.from(`cloister-model:${name}/${version}`, "utf8");
}

/** Encrypts a model for the repository (run by the model's owner, outside the host's reach). */
export function encryptModel(
  plaintext: Uint8Array,
  key: Uint8Array,
  name: string,
  version: string,
): Uint8Array {
  if (key.length !== 32) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", "a model key is 32 bytes (AES-256)");
  }
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv).setAAD(associatedData(name, version));
  return Buffer.concat([magic, iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

export function decryptModel(sealed: Uint8Array, key: Uint8Array, name: string, version: string): Uint8Array {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length);
  if (
    key.length !== 32 ||
    bytes.length < magic.length + 28 ||
    !bytes.subarray(0, magic.length).equals(magic)
  ) {
    throw new InferenceError("ERR_MODEL_INTEGRITY", `${name}/${version}: not an encrypted Cloister model`);
  }
  try {
    const iv = bytes.subarray(magic.length, magic.length + 12);
    const decipher = createDecipheriv("aes-256-gcm", key, iv).setAAD(associatedData(name, version));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    return Buffer.concat([
      decipher.update(bytes.subarray(magic.length + 12, bytes.length - 16)),
      decipher.final(),
    ]);
  } catch (cause) {
    throw new InferenceError("ERR_MODEL_INTEGRITY", `${name}/${version}: the model does not decrypt`, {
      cause,
    });
  }
}
