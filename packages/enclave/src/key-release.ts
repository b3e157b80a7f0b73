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

/**
 * Releases a key from the key broker: `POST /keys/{name}/release {target: token}`, verifies the broker's
 * ES256 signature over the answer, and decrypts the JWE wrapped to this workload's release key.
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
  const response = await requestJson(
    "POST",
    new URL(`/keys/${encodeURIComponent(name)}/release`, broker.url),
    { target: token },
    broker,
  );
  const body = response.body as { value?: unknown; error?: { code?: unknown } } | undefined;
  if (response.status !== 200 || typeof body?.value !== "string") {
    const code = typeof body?.error?.code === "string" ? body.error.code : `HTTP ${response.status}`;
    throw new EnclaveError("ERR_KEY_RELEASE", `the key broker refused to release ${name} (${code})`);
  }
  try {
    const { payload } = await compactVerify(body.value, createLocalJWKSet(await brokerKeySet(broker)), {
      algorithms: ["ES256"],
    });
    const released = JSON.parse(new TextDecoder().decode(payload)) as {
      response?: { key?: { kid?: unknown; key_hsm?: unknown } };
    };
    const wrapped = released.response?.key?.key_hsm;
    if (released.response?.key?.kid !== name || typeof wrapped !== "string") {
      throw new Error("the release answer names another key or carries none");
    }
    return (await compactDecrypt(wrapped, releasePrivateKey)).plaintext;
  } catch (cause) {
    if (cause instanceof EnclaveError) {
      throw cause;
    }
    throw new EnclaveError("ERR_KEY_RELEASE", `the release answer for ${name} does not verify or decrypt`, {
      cause,
    });
  }
}
