// One OHTTP key for every inference server replica, released by the key broker to attested replicas only.
// A request sealed to the key configuration verified in one replica's evidence is served by another replica
// (a load balancer picks either), and a restarted replica keeps the key, so its callers need not attest it
// again. Without the key at the broker, each replica makes its own, as before.
import assert from "node:assert/strict";
import type { KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { releaseSharedOhttpKey, requestBytes } from "@cloister/enclave";
import {
  decodeResponse,
  encapsulateRequest,
  encodeRequest,
  ohttpRequestMediaType,
  parseKeyConfig,
  parseKeyConfigList,
} from "@cloister/ohttp";
import {
  inferenceMeasurement,
  startConfidentialStack,
  type ConfidentialStack,
  type LoadContext,
} from "./test-support/confidential-stack.js";
import { startTestKeyBroker, type TestKeyBroker } from "./test-support/key-broker.js";

const scratch = mkdtempSync(join(tmpdir(), "cloister-shared-ohttp-"));
const stacks: ConfidentialStack[] = [];
after(async () => {
  for (const stack of stacks) {
    await stack.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

/**
 * A key broker that holds `inference-ohttp` (when `withKey`) for the inference measurement; `started` is
 * given the broker.
 */
function viaKeyBroker(withKey: boolean, started?: (broker: TestKeyBroker) => void) {
  return async (context: Omit<LoadContext, "attestation">) => {
    const broker = await startTestKeyBroker(context, scratch);
    started?.(broker);
    after(() => broker.close());
    if (withKey) {
      await broker.createKey("inference-ohttp", inferenceMeasurement);
    }
    const client = broker.client();
    return async (first: { token: string; releasePrivateKey: KeyObject }) =>
      releaseSharedOhttpKey(client, "inference-ohttp", first.token, first.releasePrivateKey);
  };
}

const keyIdOf = (keyConfig: string): number => parseKeyConfig(Buffer.from(keyConfig, "base64url")).keyId;

async function attestedKeyConfig(stack: ConfidentialStack, url: string): Promise<string> {
  const answer = await requestBytes("GET", new URL("/attestation", url), undefined, { ca: stack.caPem });
  return (JSON.parse(Buffer.from(answer.body).toString("utf8")) as { keyConfig: string }).keyConfig;
}

/** Sends `GET /v2/models` sealed to `keyConfig` to the replica at `url`, with the caller's token. */
async function listModels(stack: ConfidentialStack, keyConfig: string, url: string): Promise<number> {
  const sealed = await encapsulateRequest(
    parseKeyConfig(Buffer.from(keyConfig, "base64url")),
    encodeRequest({
      method: "GET",
      scheme: "https",
      authority: new URL(url).host,
      path: "/v2/models",
      headers: [
        ["authorization", `Attestation ${stack.caller.token()}`],
        ["date", new Date().toUTCString()],
      ],
    }),
  );
  const answer = await requestBytes(
    "POST",
    new URL("/ohttp", url),
    { bytes: sealed.encapsulatedRequest, contentType: ohttpRequestMediaType },
    { ca: stack.caPem },
  );
  if (answer.status !== 200) {
    return answer.status;
  }
  return decodeResponse(await sealed.openResponse(answer.body)).status;
}

test("replicas share the key the broker released: one replica's attested key opens at another, and survives a restart", async () => {
  const stack = await startConfidentialStack({ sharedOhttpKey: viaKeyBroker(true) });
  stacks.push(stack);
  const first = await attestedKeyConfig(stack, stack.inferenceUrl);
  const replica = await stack.startInferenceReplica();
  assert.equal(await attestedKeyConfig(stack, replica.url), first, "both replicas attest the same key");
  assert.equal(parseKeyConfig(Buffer.from(first, "base64url")).keyId, 1, "the key id is the key's version");
  // Verified at the first replica, sent to the second, as a load balancer may.
  assert.equal(await listModels(stack, first, replica.url), 200);
  assert.equal(await listModels(stack, first, stack.inferenceUrl), 200);
  // A restarted replica keeps the key: the platform's client goes on without attesting it again.
  await stack.stopInference();
  await stack.startInference();
  assert.equal(await attestedKeyConfig(stack, stack.inferenceUrl), first);
  const answer = await stack.client.request({ method: "GET", path: "/v2/models" });
  assert.equal(answer.status, 200);
});

test("without the key at the broker, each replica makes its own (one replica only)", async () => {
  const stack = await startConfidentialStack({ sharedOhttpKey: viaKeyBroker(false) });
  stacks.push(stack);
  const first = await attestedKeyConfig(stack, stack.inferenceUrl);
  const replica = await stack.startInferenceReplica();
  assert.notEqual(await attestedKeyConfig(stack, replica.url), first);
  assert.equal(await listModels(stack, first, replica.url), 400, "another replica's key does not open");
});

test("a rotated key: new replicas bind the new version and still open the old one until it is destroyed; the platform's client moves over by itself", async () => {
  let broker: TestKeyBroker | undefined;
  const stack = await startConfidentialStack({
    sharedOhttpKey: viaKeyBroker(true, (started) => {
      broker = started;
    }),
  });
  stacks.push(stack);
  assert.ok(broker !== undefined);
  const before = await attestedKeyConfig(stack, stack.inferenceUrl);
  assert.equal(keyIdOf(before), 1);

  // Rotated at the broker; the Deployment rolls: a new replica binds version 2 and offers only it, yet opens
  // what a caller sealed to version 1, verified at a replica from before.
  assert.equal(await broker.rotateKey("inference-ohttp"), 2);
  const rolled = await stack.startInferenceReplica();
  const after2 = await attestedKeyConfig(stack, rolled.url);
  assert.equal(keyIdOf(after2), 2);
  const offered = await requestBytes("GET", new URL("/ohttp-keys", rolled.url), undefined, {
    ca: stack.caPem,
  });
  assert.deepEqual(
    parseKeyConfigList(offered.body).map((config) => config.keyId),
    [2],
  );
  assert.equal(await listModels(stack, before, rolled.url), 200, "the previous version still opens");
  assert.equal(await listModels(stack, after2, rolled.url), 200);
  assert.equal(await listModels(stack, after2, stack.inferenceUrl), 400, "an old replica knows no version 2");

  // Version 1 destroyed once the roll is done: replicas started afterwards no longer open it.
  await broker.destroyKeyVersion("inference-ohttp", 1);
  const later = await stack.startInferenceReplica();
  assert.equal(keyIdOf(await attestedKeyConfig(stack, later.url)), 2);
  assert.equal(await listModels(stack, before, later.url), 400, "a destroyed version is gone");
  assert.equal(await listModels(stack, after2, later.url), 200);

  // The platform's client attested version 1; the primary restarts on version 2 alone: the client verifies
  // the service again by itself and goes on.
  await stack.stopInference();
  await stack.startInference();
  assert.equal(keyIdOf(await attestedKeyConfig(stack, stack.inferenceUrl)), 2);
  assert.equal(keyIdOf(stack.client.keyConfig()), 1);
  const answer = await stack.client.request({ method: "GET", path: "/v2/models" });
  assert.equal(answer.status, 200);
  assert.equal(keyIdOf(stack.client.keyConfig()), 2);
});
