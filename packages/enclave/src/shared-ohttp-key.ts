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

/**
 * Releases the service's shared OHTTP key (`name`, 32 random bytes at the key broker) with the replica's
 * first token, as an X25519 gateway key pair whose key id is the key's version (mod 256), so clients tell a
 * rotated key apart. Undefined when the broker holds no such key: the replica then keeps a key of its own,
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
): Promise<OhttpKeyPair | undefined> {
  let released;
  try {
    released = await releaseKeyVersion(broker, name, token, releasePrivateKey);
  } catch (error) {
    if (error instanceof EnclaveError && error.code === "ERR_KEY_NOT_FOUND") {
      return undefined;
    }
    throw error;
  }
  if (released.value.length !== 32) {
    throw new EnclaveError("ERR_KEY_RELEASE", `${name} is not a 32-byte X25519 private key`);
  }
  return importOhttpKeyPair({
    keyId: released.version % 256,
    privateKey: released.value,
    publicKey: x25519PublicKey(released.value),
  });
}
