// The workload's side of secure key release (DESIGN.md §4): present the attestation token, check the
// broker's signature on the answer, and unwrap the key with the release private key that never left the TEE.
import type { KeyObject } from "node:crypto";
import { compactDecrypt, compactVerify, createLocalJWKSet, type JSONWebKeySet, type JWK } from "jose";
import { EnclaveError } from "./errors.js";
import { requestJson, type HttpsClientOptions } from "./https-client.js";

export interface KeyBrokerClient extends HttpsClientOptions {
  /** e.g. `https://127.0.0.1:7444` */
  readonly url: string;
}

async function brokerKeySet(broker: KeyBrokerClient): Promise<JSONWebKeySet> {
  const response = await requestJson("GET", new URL("/certs", broker.url), undefined, broker);
  const keys = (response.body as { keys?: unknown } | undefined)?.keys;
  if (response.status !== 200 || !Array.isArray(keys)) {
    throw new EnclaveError("ERR_KEY_RELEASE", "the key broker's signing keys could not be loaded");
  }
  return { keys: keys as JWK[] };
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
 * `POST /keys/{name}/{version}/release`, verifies the broker's ES256 signature over the answer, and
 * decrypts the JWE wrapped to this workload's release key.
 *
 * @example
 * ```ts
 * const newest = await releaseKeyVersion({ url: keyBrokerUrl, ca }, "tenant-key", attestation.token(),
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
    const { payload } = await compactVerify(body.value, createLocalJWKSet(await brokerKeySet(broker)), {
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
 * const dataKey = await releaseKey({ url: keyBrokerUrl, ca }, "tenant-key", attestation.token(),
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
