// One OHTTP gateway key for every replica of a service, released by the key broker to attested replicas
// only: a client seals to the key configuration it verified in one replica's evidence, and the load balancer
// may hand the request to any replica. (A key made inside each replica would be known to that replica alone.)
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { importOhttpKeyPair, type OhttpKeyPair } from "@cloister/ohttp";
import { EnclaveError } from "./errors.js";
import { releaseKeyVersion, type KeyBrokerClient } from "./key-release.js";

/** The X25519 public key of a 32-byte private key. */
function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  const key = createPrivateKey({
    // Node derives the public key from `d`; `x` is required by the JWK shape only.
    key: { kty: "OKP", crv: "X25519", d: Buffer.from(privateKey).toString("base64url"), x: "" },
    format: "jwk",
  });
  return new Uint8Array(Buffer.from(createPublicKey(key).export({ format: "jwk" }).x ?? "", "base64url"));
}

/** A service's shared OHTTP key as released: the current version, and the older versions still held. */
export interface SharedOhttpKeys {
  /** The newest version: bound into the evidence and offered to clients. */
  readonly current: OhttpKeyPair;
  /**
   * The older versions the key broker still holds (newest first, at most `maxPreviousOhttpKeys`): requests
   * sealed to them are still opened, so clients that verified a replica from before a rotation go on while
   * the replicas roll. Destroying a version at the broker retires it at the next start.
   */
  readonly previous: readonly OhttpKeyPair[];
}

/** How many older versions a replica holds at most. */
export const maxPreviousOhttpKeys = 2;

async function importReleased(name: string, value: Uint8Array, version: number): Promise<OhttpKeyPair> {
  if (value.length !== 32) {
    throw new EnclaveError("ERR_KEY_RELEASE", `${name} is not a 32-byte X25519 private key`);
  }
  return importOhttpKeyPair({ keyId: version % 256, privateKey: value, publicKey: x25519PublicKey(value) });
}

/**
 * Releases the service's shared OHTTP key (`name`, 32 random bytes at the key broker) with the replica's
 * first token, as X25519 gateway key pairs whose key id is the key's version (mod 256), so clients tell a
 * rotated key apart: the newest version, and the older versions the broker still holds (see
 * `SharedOhttpKeys`). Undefined when the broker holds no such key: the replica then keeps a key of its own,
 * which serves a single replica only.
 *
 * @example
 * ```ts
 * const attestation = await attestAtStart({ provider, attestationService,
 *   sharedOhttpKey: ({ token, releasePrivateKey }) =>
 *     releaseSharedOhttpKey(broker, "platform-ohttp", token, releasePrivateKey) });
 * ```
 */
export async function releaseSharedOhttpKey(
  broker: KeyBrokerClient,
  name: string,
  token: string,
  releasePrivateKey: KeyObject,
): Promise<SharedOhttpKeys | undefined> {
  let released;
  try {
    released = await releaseKeyVersion(broker, name, token, releasePrivateKey);
  } catch (error) {
    if (error instanceof EnclaveError && error.code === "ERR_KEY_NOT_FOUND") {
      return undefined;
    }
    throw error;
  }
  const current = await importReleased(name, released.value, released.version);
  const previous: OhttpKeyPair[] = [];
  const older = released.versions
    .filter((version) => version < released.version)
    .sort((a, b) => b - a)
    .slice(0, maxPreviousOhttpKeys);
  for (const version of older) {
    // Versions 256 apart would share a key id: the newer one is kept.
    if (version % 256 === current.keyId || previous.some((key) => key.keyId === version % 256)) {
      continue;
    }
    const value = (await releaseKeyVersion(broker, name, token, releasePrivateKey, version)).value;
    previous.push(await importReleased(name, value, version));
  }
  return { current, previous };
}

/**
 * What a replica logs at start about its OHTTP key: a warning when the broker held no shared key (its own key
 * then serves a single replica only), or which older versions it still opens after a rotation.
 */
export function logSharedOhttpKey(
  log: { warn: (message: string) => void; info: (fields: object, message: string) => void },
  name: string,
  shared: boolean,
  keys: { readonly ohttp: OhttpKeyPair; readonly ohttpPrevious: readonly OhttpKeyPair[] },
): void {
  if (!shared) {
    log.warn(
      `no ${name} key at the key broker: this replica's OHTTP key is its own, so run one replica only`,
    );
  } else if (keys.ohttpPrevious.length > 0) {
    // Clients that verified a replica from before a rotation go on; a destroyed version is gone at the next start.
    log.info(
      { keyId: keys.ohttp.keyId, previousKeyIds: keys.ohttpPrevious.map((key) => key.keyId) },
      `${name}: older versions are still opened until they are destroyed at the key broker`,
    );
  }
}
