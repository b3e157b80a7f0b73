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
} from "@cloister/ohttp";
import {
  inferenceMeasurement,
  startConfidentialStack,
  type ConfidentialStack,
  type LoadContext,
} from "./test-support/confidential-stack.js";
import { startTestKeyBroker } from "./test-support/key-broker.js";

const scratch = mkdtempSync(join(tmpdir(), "cloister-shared-ohttp-"));
const stacks: ConfidentialStack[] = [];
after(async () => {
  for (const stack of stacks) {
    await stack.close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

/** A key broker that holds `inference-ohttp` (when `withKey`) for the inference measurement. */
function viaKeyBroker(withKey: boolean) {
  return async (context: Omit<LoadContext, "attestation">) => {
    const broker = await startTestKeyBroker(context, scratch);
    after(() => broker.close());
    if (withKey) {
      await broker.createKey("inference-ohttp", inferenceMeasurement);
    }
    const client = { url: broker.url, ca: context.caPem };
    return async (first: { token: string; releasePrivateKey: KeyObject }) =>
      releaseSharedOhttpKey(client, "inference-ohttp", first.token, first.releasePrivateKey);
  };
}

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
