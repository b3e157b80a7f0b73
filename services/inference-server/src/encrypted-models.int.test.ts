// Encrypted models: the weights stay sealed on the host's disk, and only an attested inference server
// with the measurement the model owner named gets the key from the key broker.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { EnclaveError, releaseKey } from "@cloister/enclave";
import { InferenceError } from "./errors.js";
import { decryptModel, encryptModel } from "./model-encryption.js";
import {
  defaultModelRepository,
  inferenceMeasurement,
  startConfidentialStack,
  type LoadContext,
} from "./test-support/confidential-stack.js";
import { startTestKeyBroker } from "./test-support/key-broker.js";

const scratch = mkdtempSync(join(tmpdir(), "cloister-encrypted-models-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});
const modelName = "chest-xray-pneumonia";

/** A repository holding the committed model, encrypted under `key`. */
function encryptedRepository(key: Uint8Array): string {
  const repository = join(scratch, `repository-${randomBytes(4).toString("hex")}`);
  const folder = join(repository, modelName, "1");
  mkdirSync(folder, { recursive: true });
  const source = join(defaultModelRepository, modelName, "1");
  const config = JSON.parse(readFileSync(join(source, "config.json"), "utf8")) as Record<string, unknown>;
  writeFileSync(
    join(folder, "config.json"),
    JSON.stringify({ ...config, encryption: { keyName: "model-key" } }),
  );
  writeFileSync(
    join(folder, "model.onnx.enc"),
    encryptModel(readFileSync(join(source, "model.onnx")), key, modelName, "1"),
  );
  return repository;
}

/** Starts a key broker holding `key` under a release policy for `measurement`, and loads through it. */
function viaKeyBroker(key: Uint8Array, measurement: string) {
  return async (context: LoadContext) => {
    const broker = await startTestKeyBroker(context, scratch);
    after(() => broker.close());
    await broker.createKey("model-key", measurement, key);
    return {
      releaseModelKey: async (name: string) =>
        releaseKey(
          broker.client(),
          name,
          context.attestation.token(),
          context.attestation.keys.release.privateKey,
        ),
    };
  };
}

test("an encrypted model is decrypted inside the attested server and serves the same answers", async () => {
  const key = randomBytes(32);
  const stack = await startConfidentialStack({
    modelRepository: encryptedRepository(key),
    load: viaKeyBroker(key, inferenceMeasurement),
  });
  after(() => stack.close());
  const response = await stack.client.request({ path: `/v2/models/${modelName}` });
  assert.equal(response.status, 200);
  const metadata = JSON.parse(Buffer.from(response.body).toString()) as { parameters: { sha256: string } };
  const plain = JSON.parse(
    readFileSync(join(defaultModelRepository, modelName, "1", "config.json"), "utf8"),
  ) as { sha256: string };
  assert.equal(metadata.parameters.sha256, plain.sha256);
});

test("the key broker refuses the key to a server with another measurement, so the model never loads", async () => {
  const key = randomBytes(32);
  await assert.rejects(
    startConfidentialStack({
      modelRepository: encryptedRepository(key),
      load: viaKeyBroker(key, "ee".repeat(32)),
    }),
    (error: unknown) =>
      error instanceof EnclaveError &&
      error.code === "ERR_KEY_RELEASE" &&
      /ERR_POLICY_DENIED/.test(error.message),
  );
});

test("a model sealed under another key, or for another model name, does not decrypt", () => {
  const key = randomBytes(32);
  const sealed = encryptModel(new Uint8Array([1, 2, 3]), key, "a", "1");
  assert.deepEqual(Array.from(decryptModel(sealed, key, "a", "1")), [1, 2, 3]);
  for (const [otherKey, name] of [
    [randomBytes(32), "a"],
    [key, "b"],
  ] as const) {
    assert.throws(
      () => decryptModel(sealed, otherKey, name, "1"),
      (error: unknown) => error instanceof InferenceError && error.code === "ERR_MODEL_INTEGRITY",
    );
  }
});
