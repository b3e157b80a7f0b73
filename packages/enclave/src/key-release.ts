// The workload's side of secure key release (DESIGN.md §4): verify the key broker's attestation, present the
// workload's attestation token, check the broker's signature on the answer with the signing key its evidence
// binds, and unwrap the key with the release private key that never left the TEE.
import type { KeyObject } from "node:crypto";
import { compactDecrypt, compactVerify, createLocalJWKSet, type JSONWebKeySet, type JWK } from "jose";
import { EnclaveError } from "./errors.js";
import { requestJson, type HttpsClientOptions } from "./https-client.js";
import type { PeerVerifier, PeerVerifierOptions } from "./peer-verifier.js";
import { cloisterServices } from "./service-identity.js";

export interface KeyBrokerClient extends HttpsClientOptions {
  /** e.g. `https://127.0.0.1:7444` */
  readonly url: string;
  /**
   * Who the key broker must be: its attestation token (`GET /attestation`) must pass this verifier (the
   * broker's measurement or signer and product id) and bind the key that signs its answers. TLS alone is not
   * enough, since the host provides the TLS keys: a host posing as the broker could hand out keys it knows.
   */
  readonly identity: PeerVerifier;
}

async function getJson(broker: KeyBrokerClient, path: string): Promise<unknown> {
  const response = await requestJson("GET", new URL(path, broker.url), undefined, broker);
  if (response.status !== 200) {
    throw new EnclaveError(
      "ERR_KEY_BROKER_IDENTITY",
      `the key broker's ${path} answered ${response.status}: it cannot be verified`,
    );
  }
  return response.body;
}

/**
 * The key broker's signing keys that its attestation token binds, and only those: a key in `/certs` that the
 * broker's evidence does not bind is never used. The verifier caches its decision until the token expires.
 */
async function attestedBrokerKeySet(broker: KeyBrokerClient): Promise<JSONWebKeySet> {
  const [certs, attestation] = await Promise.all([
    getJson(broker, "/certs"),
    getJson(broker, "/attestation"),
  ]);
  const keys = (certs as { keys?: unknown } | undefined)?.keys;
  const token = (attestation as { token?: unknown } | undefined)?.token;
  if (!Array.isArray(keys) || typeof token !== "string") {
    throw new EnclaveError("ERR_KEY_BROKER_IDENTITY", "the key broker's /certs or /attestation is malformed");
  }
  const attested: JWK[] = [];
  let refusal: unknown;
  for (const key of keys as JWK[]) {
    try {
      await broker.identity.verify(token, { boundKey: key });
      attested.push(key);
    } catch (error) {
      refusal = error;
    }
  }
  if (attested.length === 0) {
    const code = refusal instanceof EnclaveError ? refusal.code : "no signing key";
    throw new EnclaveError(
      "ERR_KEY_BROKER_IDENTITY",
      `the key broker is not the attested one this workload trusts (${code})`,
      { cause: refusal },
    );
  }
  return { keys: attested };
}

/** One released key version, with the numbers of every version the broker holds for that key. */
export interface ReleasedKey {
  readonly value: Uint8Array;
  readonly version: number;
  /** Oldest first; a workload opens what older versions sealed by releasing them by number. */
  readonly versions: readonly number[];
}

/**
 * Releases a key from the key broker: `POST /keys/{name}/release {target: token}` (the newest version) or
 * `POST /keys/{name}/{version}/release`, verifies the broker's ES256 signature over the answer with a key its
 * attestation binds (`broker.identity`), and decrypts the JWE wrapped to this workload's release key.
 *
 * @example
 * ```ts
 * const identity = new PeerVerifier({ attestationService: { url: attestationUrl, ca },
 *   expectations: { measurements: [keyBrokerMrenclave] } });
 * const newest = await releaseKeyVersion({ url: keyBrokerUrl, ca, identity }, "tenant-key", attestation.token(),
 *   attestation.keys.release.privateKey);
 * for (const older of newest.versions.filter((n) => n !== newest.version)) { … }
 * ```
 */
export async function releaseKeyVersion(
  broker: KeyBrokerClient,
  name: string,
  token: string,
  releasePrivateKey: KeyObject,
  version?: number,
): Promise<ReleasedKey> {
  if (version !== undefined && (!Number.isInteger(version) || version < 1)) {
    throw new EnclaveError("ERR_KEY_RELEASE", "a key version is a positive integer");
  }
  const path =
    version === undefined
      ? `/keys/${encodeURIComponent(name)}/release`
      : `/keys/${encodeURIComponent(name)}/${version}/release`;
  // The broker is verified first: nothing it says (not even "no such key") counts before.
  const signingKeys = await attestedBrokerKeySet(broker);
  const response = await requestJson("POST", new URL(path, broker.url), { target: token }, broker);
  const body = response.body as { value?: unknown; error?: { code?: unknown } } | undefined;
  if (response.status !== 200 || typeof body?.value !== "string") {
    const code = typeof body?.error?.code === "string" ? body.error.code : `HTTP ${response.status}`;
    if (response.status === 404 && code === "ERR_NOT_FOUND") {
      throw new EnclaveError("ERR_KEY_NOT_FOUND", `the key broker holds no key ${name}`);
    }
    throw new EnclaveError("ERR_KEY_RELEASE", `the key broker refused to release ${name} (${code})`);
  }
  try {
    const { payload } = await compactVerify(body.value, createLocalJWKSet(signingKeys), {
      algorithms: ["ES256"],
    });
    const released = JSON.parse(new TextDecoder().decode(payload)) as {
      response?: { key?: { kid?: unknown; key_hsm?: unknown; version?: unknown; versions?: unknown } };
    };
    const key = released.response?.key;
    const wrapped = key?.key_hsm;
    if (key?.kid !== name || typeof wrapped !== "string") {
      throw new Error("the release answer names another key or carries none");
    }
    // A broker from before key versions answers without them: its one value is version 1.
    const releasedVersion = key.version === undefined ? 1 : key.version;
    const versions = key.versions === undefined ? [releasedVersion] : key.versions;
    if (
      typeof releasedVersion !== "number" ||
      !Number.isInteger(releasedVersion) ||
      (version !== undefined && releasedVersion !== version) ||
      !Array.isArray(versions) ||
      !versions.every((entry) => Number.isInteger(entry) && (entry as number) > 0) ||
      !versions.includes(releasedVersion)
    ) {
      throw new Error("the release answer names another version");
    }
    return {
      value: (await compactDecrypt(wrapped, releasePrivateKey)).plaintext,
      version: releasedVersion,
      versions: versions as number[],
    };
  } catch (cause) {
    if (cause instanceof EnclaveError) {
      throw cause;
    }
    throw new EnclaveError("ERR_KEY_RELEASE", `the release answer for ${name} does not verify or decrypt`, {
      cause,
    });
  }
}

/**
 * Releases the newest version of a key (see releaseKeyVersion) and returns its value.
 *
 * @example
 * ```ts
 * const dataKey = await releaseKey({ url: keyBrokerUrl, ca, identity }, "tenant-key", attestation.token(),
 *   attestation.keys.release.privateKey);
 * ```
 */
export async function releaseKey(
  broker: KeyBrokerClient,
  name: string,
  token: string,
  releasePrivateKey: KeyObject,
): Promise<Uint8Array> {
  return (await releaseKeyVersion(broker, name, token, releasePrivateKey)).value;
}

/**
 * What a workload requires of the key broker, from its environment: `CLOISTER_KEY_BROKER_SIGNERS` (SGX
 * MRSIGNERs, hex, comma-separated: any broker enclave they signed, with the key broker's product id) and/or
 * `CLOISTER_KEY_BROKER_MEASUREMENTS` (exact measurements). One of them is required: a workload never takes
 * keys from a broker it cannot tell from the host. `CLOISTER_PEER_ALLOW_SIMULATION` and
 * `CLOISTER_PEER_ALLOW_DEBUG` ("true") are for the development stack only.
 *
 * @example
 * ```ts
 * const identity = new PeerVerifier({ attestationService: { url: attestationUrl, ca },
 *   expectations: keyBrokerExpectationsFromEnv(process.env) });
 * ```
 */
export function keyBrokerExpectationsFromEnv(
  environment: Readonly<Record<string, string | undefined>>,
): PeerVerifierOptions["expectations"] {
  const list = (name: string): string[] =>
    (environment[name] ?? "")
      .split(",")
      .map((entry) => entry.trim())
      .filter((entry) => entry !== "");
  const signers = list("CLOISTER_KEY_BROKER_SIGNERS");
  const measurements = list("CLOISTER_KEY_BROKER_MEASUREMENTS");
  if (signers.length === 0 && measurements.length === 0) {
    throw new EnclaveError(
      "ERR_KEY_BROKER_IDENTITY",
      "set CLOISTER_KEY_BROKER_SIGNERS or CLOISTER_KEY_BROKER_MEASUREMENTS: who the key broker must be",
    );
  }
  return {
    measurements: measurements.length > 0 ? measurements : "any",
    ...(signers.length > 0
      ? {
          attestationTypes: ["sgx"] as const,
          signers,
          productIds: [cloisterServices["key-broker"].productId],
        }
      : {}),
    allowSimulation: environment.CLOISTER_PEER_ALLOW_SIMULATION === "true",
    allowDebug: environment.CLOISTER_PEER_ALLOW_DEBUG === "true",
  };
}
