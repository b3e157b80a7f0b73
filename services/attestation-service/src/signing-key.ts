// The token signing key: RSA-2048 made at start inside the service's TEE. Like MAA's, its self-signed
// certificate carries the service's own evidence in extension 1.3.6.1.4.1.311.105.1, and its kid is
// base64(SHA-256(SPKI PEM + NUL)), so anyone can check that the signing key lives in attested code.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  X509Certificate,
  type KeyObject,
} from "node:crypto";
import { buildCertificate, basicConstraintsExtension, keyUsageExtension, toPem } from "@cloister/attestation";
import { exportJWK, type JWK } from "jose";

export const evidenceExtensionOid = "1.3.6.1.4.1.311.105.1";

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** base64 DER of the self-signed certificate (JWKS `x5c`). */
  readonly certificateBase64: string;
  /** When the key stopped signing (rotated out); absent for the current key. */
  retiredAt?: Date;
}

/** MAA's kid: base64 SHA-256 of the public key PEM and one NUL byte. */
export function kidFor(publicKey: KeyObject): string {
  const pem = publicKey.export({ format: "pem", type: "spki" }).toString();
  return createHash("sha256").update(`${pem}\0`).digest("base64");
}

function encodeLength(length: number): Uint8Array {
  return length < 0x80 ? Uint8Array.of(length) : Uint8Array.of(0x82, length >> 8, length & 0xff);
}

function octetString(value: Uint8Array): Uint8Array {
  return Uint8Array.from([0x04, ...encodeLength(value.length), ...value]);
}

function extension(oid: Uint8Array, value: Uint8Array): Uint8Array {
  const body = Uint8Array.from([...oid, ...octetString(value)]);
  return Uint8Array.from([0x30, ...encodeLength(body.length), ...body]);
}

/** DER of OID 1.3.6.1.4.1.311.105.1. */
const evidenceOidDer = Uint8Array.of(0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x69, 0x01);

/**
 * Creates a signing key whose certificate embeds `evidence` (the service's own quote, whose report data binds
 * SHA-256 of the key's SPKI PEM + NUL: the kid). `getEvidence` receives the runtime data to bind.
 */
export async function createSigningKey(
  getEvidence: (runtimeData: Uint8Array) => Promise<Uint8Array>,
  now: Date,
  /** Keep this private key (a restart) and only issue its certificate again, with the current evidence. */
  existing?: KeyObject,
): Promise<SigningKey> {
  const privateKey = existing ?? generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const publicKey = createPublicKey(privateKey);
  const pem = publicKey.export({ format: "pem", type: "spki" }).toString();
  const evidence = await getEvidence(new TextEncoder().encode(`${pem}\0`));
  const name = { commonName: "Cloister Attestation Signing Key" };
  const der = buildCertificate({
    serial: randomBytes(16),
    issuer: name,
    subject: name,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 365 * 24 * 3600 * 1000),
    publicKey: privateKey,
    signingKey: privateKey,
    extensions: [
      basicConstraintsExtension(false),
      keyUsageExtension([0]),
      extension(evidenceOidDer, evidence),
    ],
  });
  return {
    kid: kidFor(createPublicKey(privateKey)),
    privateKey,
    publicKey,
    certificateBase64: Buffer.from(der).toString("base64"),
  };
}

export async function jwkFor(key: SigningKey): Promise<JWK> {
  return {
    ...(await exportJWK(key.publicKey)),
    kid: key.kid,
    alg: "RS256",
    use: "sig",
    x5c: [key.certificateBase64],
  };
}

const sealedKeyLabel = Buffer.from("cloister-attestation-signing-key");

/** The key as bytes only this TEE (its signer) can open: AES-256-GCM under the TEE's sealing key. */
export function sealSigningKey(key: SigningKey, sealingKey: Uint8Array): Buffer {
  const plaintext = Buffer.from(
    JSON.stringify({
      privateKey: key.privateKey.export({ format: "der", type: "pkcs8" }).toString("base64"),
      certificate: key.certificateBase64,
    }),
  );
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", sealingKey, iv);
  cipher.setAAD(sealedKeyLabel);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from("CSK1"), iv, cipher.getAuthTag(), ciphertext]);
}

/** Opens a sealed signing key; throws when it was sealed by another TEE or altered. */
export function openSigningKey(sealed: Uint8Array, sealingKey: Uint8Array): SigningKey {
  const bytes = Buffer.from(sealed);
  if (bytes.subarray(0, 4).toString() !== "CSK1" || bytes.length < 4 + 12 + 16) {
    throw new Error("not a sealed signing key");
  }
  const decipher = createDecipheriv("aes-256-gcm", sealingKey, bytes.subarray(4, 16));
  decipher.setAAD(sealedKeyLabel);
  decipher.setAuthTag(bytes.subarray(16, 32));
  const { privateKey: der, certificate } = JSON.parse(
    Buffer.concat([decipher.update(bytes.subarray(32)), decipher.final()]).toString("utf8"),
  ) as { privateKey: string; certificate: string };
  const privateKey = createPrivateKey({ key: Buffer.from(der, "base64"), format: "der", type: "pkcs8" });
  const publicKey = createPublicKey(privateKey);
  return { kid: kidFor(publicKey), privateKey, publicKey, certificateBase64: certificate };
}

/**
 * When the key's certificate expires. Read from PEM: given DER, node:crypto looks for PEM text first, and the
 * quote inside the certificate carries its PCK chain as PEM, whose first certificate it would read instead.
 */
export function signingKeyNotAfter(key: SigningKey): Date {
  return new Date(new X509Certificate(toPem(Buffer.from(key.certificateBase64, "base64"))).validTo);
}
