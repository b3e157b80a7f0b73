// Recovery of the key broker's keys on another machine. The broker seals its store with its TEE's sealing key,
// which SGX derives per CPU: a broker rescheduled to another node cannot open it, and without recovery every
// tenant's records would be lost with the node. Modelled on Azure Managed HSM's security domain:
//
// - Backup. After every change the broker writes its store encrypted under a fresh random domain key
//   (JWE, dir + A256GCM). The domain key is split M-of-N (Shamir over GF(256)) among the recovery custodians
//   named in the broker's measured configuration, each share a JWE to one custodian's public key. The backup is
//   ciphertext only: it may be copied anywhere.
// - Restore. A broker with an empty store, given a backup, makes an exchange key inside its TEE and binds it,
//   with the backup's digest, into its evidence. Each custodian verifies that evidence with the attestation
//   service (measurement, not debuggable), opens their own share, checks it against the backup's commitment
//   and seals it to the exchange key. With M shares the broker rebuilds the domain key and the store inside
//   the TEE. No person ever holds more than one share, and one share, or M - 1, tells nothing about the key.
import { createHash, randomBytes, type KeyObject } from "node:crypto";
import { calculateJwkThumbprint, compactDecrypt, CompactEncrypt, importJWK, type JWK } from "jose";
import { attestPath, type AttestationServiceClient } from "./attest-at-start.js";
import { EnclaveError } from "./errors.js";
import { requestJson, type HttpsClientOptions } from "./https-client.js";
import { verifyPeer, type PeerExpectations } from "./verify-peer.js";
import type { Evidence } from "./providers/provider.js";

export const recoveryBackupFormat = "cloister-key-broker-backup/1";

/** One custodian's share of a backup's domain key, as the backup carries it. */
export interface RecoveryShareEntry {
  /** The custodian's public key thumbprint (RFC 7638, SHA-256). */
  readonly kid: string;
  /** The share's x coordinate (1…255). */
  readonly x: number;
  /** SHA-256 over the backup digest, x and the share: a share is checked before it is used. */
  readonly commitment: string;
  /** The share, a JWE to the custodian's key (RSA-OAEP-256 or ECDH-ES, A256GCM). */
  readonly jwe: string;
}

export interface RecoveryBackup {
  readonly format: typeof recoveryBackupFormat;
  readonly createdAt: string;
  /** How many shares rebuild the domain key. */
  readonly quorum: number;
  readonly shares: readonly RecoveryShareEntry[];
  /** The store, a JWE (dir, A256GCM) under the domain key. */
  readonly store: string;
}

export interface RecoveryShare {
  readonly x: number;
  readonly y: Uint8Array;
}

// GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1; 3 generates the multiplicative group.
const exp = new Uint8Array(510);
const log = new Uint8Array(256);
for (let i = 0, value = 1; i < 255; i++) {
  exp[i] = value;
  exp[i + 255] = value;
  log[value] = i;
  // value × 3 = value × 2 ⊕ value, reduced by the polynomial.
  const doubled = value << 1;
  value = doubled ^ (doubled & 0x100 ? 0x11b : 0) ^ value;
}

function multiply(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : (exp[(log[a] ?? 0) + (log[b] ?? 0)] ?? 0);
}

function divide(a: number, b: number): number {
  if (b === 0) {
    throw new RangeError("division by zero in GF(256)");
  }
  return a === 0 ? 0 : (exp[(log[a] ?? 0) + 255 - (log[b] ?? 0)] ?? 0);
}

/**
 * Splits `secret` into `count` shares (x = 1…count), any `quorum` of which rebuild it (Shamir, byte-wise over
 * GF(256), with fresh random coefficients).
 */
export function splitSecret(secret: Uint8Array, quorum: number, count: number): RecoveryShare[] {
  if (!Number.isInteger(quorum) || !Number.isInteger(count) || quorum < 1 || count < quorum || count > 255) {
    throw new EnclaveError("ERR_RECOVERY", "a recovery quorum is 1…count of at most 255 custodians");
  }
  const shares = Array.from({ length: count }, (_, index) => ({
    x: index + 1,
    y: new Uint8Array(secret.length),
  }));
  for (let position = 0; position < secret.length; position++) {
    const coefficients = [secret[position] ?? 0, ...randomBytes(quorum - 1)];
    for (const share of shares) {
      // Horner's rule, from the highest coefficient down.
      let value = 0;
      for (let degree = coefficients.length - 1; degree >= 0; degree--) {
        value = multiply(value, share.x) ^ (coefficients[degree] ?? 0);
      }
      share.y[position] = value;
    }
  }
  return shares;
}

/** Rebuilds the secret from shares (Lagrange interpolation at 0). Any `quorum` distinct shares will do. */
export function combineShares(shares: readonly RecoveryShare[]): Uint8Array {
  const xs = shares.map((share) => share.x);
  const length = shares[0]?.y.length ?? 0;
  if (
    shares.length === 0 ||
    new Set(xs).size !== xs.length ||
    xs.some((x) => !Number.isInteger(x) || x < 1 || x > 255) ||
    shares.some((share) => share.y.length !== length)
  ) {
    throw new EnclaveError("ERR_RECOVERY", "recovery shares must be distinct and of one length");
  }
  const secret = new Uint8Array(length);
  for (const [i, share] of shares.entries()) {
    // The Lagrange basis polynomial of share i at 0: the product over j ≠ i of x_j / (x_j - x_i).
    let basis = 1;
    for (const [j, other] of shares.entries()) {
      if (i !== j) {
        basis = multiply(basis, divide(other.x, other.x ^ share.x));
      }
    }
    for (let position = 0; position < length; position++) {
      secret[position] = (secret[position] ?? 0) ^ multiply(share.y[position] ?? 0, basis);
    }
  }
  return secret;
}

/** The backup's digest (SHA-256 of its encrypted store, base64url): what a restore binds into its evidence. */
export function recoveryBackupDigest(backup: Pick<RecoveryBackup, "store">): string {
  return createHash("sha256").update(backup.store).digest("base64url");
}

function commitment(digest: string, share: RecoveryShare): string {
  return createHash("sha256")
    .update("cloister-recovery-share\0")
    .update(digest)
    .update(new Uint8Array([share.x]))
    .update(share.y)
    .digest("base64url");
}

/** The public part of a custodian's key, which is what the broker is configured with. */
function publicPart(jwk: JWK): JWK {
  if (jwk.kty === "RSA") {
    return { kty: "RSA", n: jwk.n, e: jwk.e };
  }
  if (jwk.kty === "EC") {
    return { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
  }
  throw new EnclaveError("ERR_RECOVERY", "a recovery custodian's key is RSA or EC");
}

function keyAlgorithm(jwk: JWK): "RSA-OAEP-256" | "ECDH-ES" {
  return jwk.kty === "RSA" ? "RSA-OAEP-256" : "ECDH-ES";
}

/** A custodian's key id: the RFC 7638 thumbprint of its public part. */
export async function recoveryCustodianId(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(publicPart(jwk), "sha256");
}

function shareJson(share: RecoveryShare): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({ x: share.x, y: Buffer.from(share.y).toString("base64url") }),
  );
}

function parseShare(plaintext: Uint8Array): RecoveryShare {
  const parsed = JSON.parse(new TextDecoder().decode(plaintext)) as { x?: unknown; y?: unknown };
  if (typeof parsed.x !== "number" || typeof parsed.y !== "string") {
    throw new Error("not a recovery share");
  }
  return { x: parsed.x, y: new Uint8Array(Buffer.from(parsed.y, "base64url")) };
}

/**
 * Encrypts a key store for recovery: under a fresh domain key, split `quorum`-of-N among `custodians`
 * (public JWKs, RSA or EC).
 */
export async function createRecoveryBackup(
  store: Uint8Array,
  custodians: readonly JWK[],
  quorum: number,
  now = new Date(),
): Promise<RecoveryBackup> {
  const domainKey = randomBytes(32);
  const encryptedStore = await new CompactEncrypt(store)
    .setProtectedHeader({ alg: "dir", enc: "A256GCM", cty: "cloister-key-store" })
    .encrypt(domainKey);
  const digest = recoveryBackupDigest({ store: encryptedStore });
  const shares = splitSecret(domainKey, quorum, custodians.length);
  const entries: RecoveryShareEntry[] = [];
  for (const [index, custodian] of custodians.entries()) {
    const share = shares[index];
    if (share === undefined) {
      throw new EnclaveError("ERR_RECOVERY", "a custodian without a share");
    }
    const key = publicPart(custodian);
    entries.push({
      kid: await recoveryCustodianId(key),
      x: share.x,
      commitment: commitment(digest, share),
      jwe: await new CompactEncrypt(shareJson(share))
        .setProtectedHeader({ alg: keyAlgorithm(key), enc: "A256GCM" })
        .encrypt(await importJWK(key, keyAlgorithm(key))),
    });
  }
  domainKey.fill(0);
  return {
    format: recoveryBackupFormat,
    createdAt: now.toISOString(),
    quorum,
    shares: entries,
    store: encryptedStore,
  };
}

/** Checks a backup's shape (from a file or a request body). */
export function parseRecoveryBackup(value: unknown): RecoveryBackup {
  const backup = value as Partial<RecoveryBackup> | null;
  if (
    typeof backup !== "object" ||
    backup === null ||
    backup.format !== recoveryBackupFormat ||
    typeof backup.createdAt !== "string" ||
    typeof backup.store !== "string" ||
    typeof backup.quorum !== "number" ||
    !Array.isArray(backup.shares) ||
    backup.shares.length < backup.quorum ||
    !backup.shares.every(
      (entry: Partial<RecoveryShareEntry>) =>
        typeof entry.kid === "string" &&
        typeof entry.x === "number" &&
        typeof entry.commitment === "string" &&
        typeof entry.jwe === "string",
    )
  ) {
    throw new EnclaveError("ERR_RECOVERY", `not a key broker backup (${recoveryBackupFormat})`);
  }
  return backup as RecoveryBackup;
}

/** The share of `backup` that `share` claims to be, when it matches the backup's commitment. */
function checkedShare(backup: RecoveryBackup, share: RecoveryShare): RecoveryShare {
  const entry = backup.shares.find((candidate) => candidate.x === share.x);
  if (entry === undefined || entry.commitment !== commitment(recoveryBackupDigest(backup), share)) {
    throw new EnclaveError("ERR_RECOVERY", "the share does not belong to this backup");
  }
  return share;
}

/** A custodian opens their own share of a backup with their private key (JWK). */
export async function openCustodianShare(backup: RecoveryBackup, privateJwk: JWK): Promise<RecoveryShare> {
  const kid = await recoveryCustodianId(privateJwk);
  const entry = backup.shares.find((candidate) => candidate.kid === kid);
  if (entry === undefined) {
    throw new EnclaveError("ERR_RECOVERY", "this backup holds no share for that custodian key");
  }
  return openShareJwe(
    backup,
    entry.jwe,
    await importJWK(privateJwk, keyAlgorithm(privateJwk)),
    "the custodian's share does not open with that key",
  );
}

/** The broker opens a share a custodian sealed to its exchange key, and checks it against the backup. */
export async function openSubmittedShare(
  backup: RecoveryBackup,
  jwe: string,
  exchangePrivateKey: KeyObject,
): Promise<RecoveryShare> {
  return openShareJwe(backup, jwe, exchangePrivateKey, "the submitted share does not open");
}

/** Decrypts a share's JWE and checks it against the backup's commitment; ERR_RECOVERY otherwise. */
async function openShareJwe(
  backup: RecoveryBackup,
  jwe: string,
  key: KeyObject | CryptoKey | Uint8Array,
  failure: string,
): Promise<RecoveryShare> {
  try {
    const { plaintext } = await compactDecrypt(jwe, key);
    return checkedShare(backup, parseShare(plaintext));
  } catch (cause) {
    throw cause instanceof EnclaveError ? cause : new EnclaveError("ERR_RECOVERY", failure, { cause });
  }
}

/** Rebuilds the domain key from checked shares and opens the backup's store. */
export async function openRecoveryBackup(
  backup: RecoveryBackup,
  shares: readonly RecoveryShare[],
): Promise<Uint8Array> {
  if (shares.length < backup.quorum) {
    throw new EnclaveError("ERR_RECOVERY", `${backup.quorum} shares are needed, ${shares.length} given`);
  }
  const domainKey = combineShares(shares.map((share) => checkedShare(backup, share)));
  try {
    return (await compactDecrypt(backup.store, domainKey)).plaintext;
  } catch (cause) {
    throw new EnclaveError("ERR_RECOVERY", "the backup's store does not open with these shares", { cause });
  } finally {
    domainKey.fill(0);
  }
}

/** What a broker in recovery shows (`GET /recovery`): its exchange key, bound into its evidence. */
export interface RecoveryExchange {
  readonly exchangeKey: JWK;
  /** The digest of the backup being restored. */
  readonly backup: string;
  readonly quorum: number;
  readonly received: number;
  /** The evidence type and the MAA request body for its evidence. */
  readonly evidenceType: Evidence["type"];
  readonly attest: Record<string, unknown>;
}

export interface SubmitRecoveryShareOptions extends HttpsClientOptions {
  /** The key broker being restored, e.g. `https://10.0.0.4:7444`. */
  readonly brokerUrl: string;
  readonly attestationService: AttestationServiceClient;
  /**
   * What the broker must prove: the key broker's measurements and the attestation service's issuer (debug and
   * simulation refused unless allowed). The service's signing keys are fetched from it, over its TLS.
   */
  readonly expectations: Omit<PeerExpectations, "boundKey" | "jwks" | "jwksUri">;
  readonly backup: RecoveryBackup;
  /** The custodian's private key (JWK). */
  readonly custodianKey: JWK;
}

/**
 * A custodian's part of a restore: verify the restoring broker's evidence (its measurement, with the exchange
 * key and this backup bound in it), open the custodian's share, seal it to the exchange key and hand it over.
 * Answers how many shares the broker now holds and whether the store is restored.
 */
export async function submitRecoveryShare(
  options: SubmitRecoveryShareOptions,
): Promise<{ received: number; quorum: number; restored: boolean; keys?: number }> {
  const exchange = await requestJson("GET", new URL("/recovery", options.brokerUrl), undefined, options);
  const pending = exchange.body as Partial<RecoveryExchange> | undefined;
  if (exchange.status !== 200 || pending?.exchangeKey === undefined || pending.attest === undefined) {
    throw new EnclaveError("ERR_PEER_RESPONSE", "the key broker is not restoring a backup");
  }
  if (pending.backup !== recoveryBackupDigest(options.backup)) {
    throw new EnclaveError("ERR_RECOVERY", "the key broker is restoring another backup");
  }
  const attested = await requestJson(
    "POST",
    new URL(
      `/attest/${attestPath(pending.evidenceType ?? "sgx")}?api-version=2022-08-01`,
      options.attestationService.url,
    ),
    pending.attest,
    options.attestationService,
  );
  const token = (attested.body as { token?: unknown } | undefined)?.token;
  if (attested.status !== 200 || typeof token !== "string") {
    throw new EnclaveError(
      "ERR_ATTESTATION_SERVICE",
      "the attestation service refused the key broker's evidence",
    );
  }
  const certs = await requestJson(
    "GET",
    new URL("/certs", options.attestationService.url),
    undefined,
    options.attestationService,
  );
  const keys = (certs.body as { keys?: unknown } | undefined)?.keys;
  if (certs.status !== 200 || !Array.isArray(keys)) {
    throw new EnclaveError(
      "ERR_ATTESTATION_SERVICE",
      "the attestation service's signing keys could not be loaded",
    );
  }
  const identity = await verifyPeer(token, {
    ...options.expectations,
    jwks: { keys: keys as JWK[] },
    boundKey: pending.exchangeKey,
  });
  const recovery = identity.runtime.recovery as { backup?: unknown } | undefined;
  if (recovery?.backup !== pending.backup) {
    throw new EnclaveError(
      "ERR_PEER_KEY_BINDING",
      "the backup being restored is not bound into the evidence",
    );
  }
  // Only now is the share opened: it leaves this process sealed to the key the attested broker made.
  const share = await openCustodianShare(options.backup, options.custodianKey);
  const exchangeKey: JWK = {
    kty: pending.exchangeKey.kty,
    crv: pending.exchangeKey.crv,
    x: pending.exchangeKey.x,
    y: pending.exchangeKey.y,
  };
  const sealed = await new CompactEncrypt(shareJson(share))
    .setProtectedHeader({ alg: "ECDH-ES", enc: "A256GCM" })
    .encrypt(await importJWK(exchangeKey, "ECDH-ES"));
  share.y.fill(0);
  const submitted = await requestJson(
    "POST",
    new URL("/recovery/shares", options.brokerUrl),
    { share: sealed },
    options,
  );
  const answer = submitted.body as
    | { received?: number; quorum?: number; restored?: boolean; keys?: number; error?: { code?: string } }
    | undefined;
  if (submitted.status !== 200 || typeof answer?.received !== "number" || typeof answer.quorum !== "number") {
    throw new EnclaveError(
      "ERR_PEER_RESPONSE",
      `the key broker refused the share (${answer?.error?.code ?? `HTTP ${submitted.status}`})`,
    );
  }
  return {
    received: answer.received,
    quorum: answer.quorum,
    restored: answer.restored === true,
    ...(answer.keys === undefined ? {} : { keys: answer.keys }),
  };
}
