// Platform replicas sharing one OHTTP key (released by the key broker): a browser's request sealed to the key
// it verified at one replica is served by another, and a request captured on its way to one replica and
// replayed to another is refused through the replay check they share in Redis (a real redis-server).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  decodeResponse,
  encapsulateRequest,
  encodeRequest,
  generateOhttpKeyPair,
  ohttpRequestMediaType,
  type OhttpKeyPair,
} from "@cloister/ohttp";
import { createRedisReplayGuard, type ReplayGuard } from "./replay-guard.js";
import { deriveTenantKeyring } from "./storage/record-crypto.js";
import { openSqliteStore } from "./storage/sqlite-store.js";
import { redisSkipReason, useTestRedis } from "./test-support/redis-server.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const skip = redisSkipReason;
const { redis: testRedis, onClose } = useTestRedis();
const password = "correct horse battery staple";
const scratch = mkdtempSync(join(tmpdir(), "cloister-ohttp-replicas-"));
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const tenantKeyring = deriveTenantKeyring(randomBytes(32), "hospital-a");
let sharedKey: OhttpKeyPair;

before(async () => {
  sharedKey = await generateOhttpKeyPair({ keyId: 1 });
});
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

async function replica(replayGuard?: ReplayGuard): Promise<TestPlatform> {
  const platform = await startTestPlatform({
    store: openSqliteStore(join(scratch, "records.db")),
    systemKeyring,
    sessionSecret: systemKeyring.encryption,
    tenantKeyring: async () => tenantKeyring,
    ...(replayGuard === undefined ? {} : { replayGuard }),
    attestation: {
      token: () => "token",
      evidence: { type: "sgx", quote: new Uint8Array(16) },
      runtimeData: new Uint8Array(2),
      keys: { ohttp: sharedKey },
    },
  });
  onClose(platform.close);
  return platform;
}

function sharedGuard(): ReplayGuard {
  const guard = createRedisReplayGuard({
    url: testRedis().url,
    password: testRedis().password,
    key: systemKeyring.encryption,
  });
  onClose(guard.close);
  return guard;
}

/** A sealed sign-in, as the portal sends it: the body and how to open its answer. */
async function sealedSignIn(email: string) {
  const sealed = await encapsulateRequest(
    sharedKey.keyConfig,
    encodeRequest({
      method: "POST",
      scheme: "https",
      authority: "platform.test",
      path: "/auth/login",
      headers: [
        ["content-type", "application/json"],
        ["date", new Date().toUTCString()],
      ],
      body: JSON.stringify({ email, password }),
    }),
  );
  return sealed;
}

async function post(platform: TestPlatform, body: Uint8Array) {
  return platform.app.inject({
    method: "POST",
    url: "/ohttp",
    headers: { "content-type": ohttpRequestMediaType },
    payload: Buffer.from(body),
  });
}

describe("platform replicas sharing one OHTTP key", { skip }, () => {
  it("serve each other's requests, and refuse a request replayed from one to the other", async () => {
    const [first, second] = [await replica(sharedGuard()), await replica(sharedGuard())];
    await first.accounts.create({ email: "clerk@a.test", password, tenantId: "hospital-a", role: "clerk" });
    for (const target of [first, second]) {
      const sealed = await sealedSignIn("clerk@a.test");
      const answer = await post(target, sealed.encapsulatedRequest);
      assert.equal(answer.statusCode, 200, answer.body);
      assert.equal(decodeResponse(await sealed.openResponse(answer.rawPayload)).status, 200);
    }
    // A session from one replica is good at the other (both derive the session key from the system key).
    const signedIn = await first.app.inject({
      method: "POST",
      url: "/auth/login",
      payload: { email: "clerk@a.test", password },
    });
    const elsewhere = await second.app.inject({
      method: "GET",
      url: "/fhir/Patient?name=Nobody",
      headers: { authorization: `Bearer ${signedIn.json<{ accessToken: string }>().accessToken}` },
    });
    assert.equal(elsewhere.statusCode, 200, elsewhere.body);
    // Captured on its way to the first replica, replayed to the second.
    const captured = await sealedSignIn("clerk@a.test");
    assert.equal((await post(first, captured.encapsulatedRequest)).statusCode, 200);
    const replayed = await post(second, captured.encapsulatedRequest);
    assert.equal(replayed.statusCode, 400);
    assert.equal(replayed.json<{ code: string }>().code, "ERR_OHTTP_REPLAY");
  });

  it("without the shared check, each replica knows only its own requests (what the check is for)", async () => {
    const [first, second] = [await replica(), await replica()];
    const captured = await sealedSignIn("nobody@a.test");
    assert.equal((await post(first, captured.encapsulatedRequest)).statusCode, 200);
    assert.equal((await post(first, captured.encapsulatedRequest)).statusCode, 400, "its own cache holds");
    assert.equal(
      (await post(second, captured.encapsulatedRequest)).statusCode,
      200,
      "the other never saw it",
    );
  });

  it("a Redis that does not answer leaves each replica's own check, and says so", async () => {
    let unavailable = 0;
    const guard = createRedisReplayGuard({
      url: "redis://127.0.0.1:1",
      key: systemKeyring.encryption,
      commandTimeoutMs: 200,
      onUnavailable: () => {
        unavailable++;
      },
    });
    onClose(guard.close);
    const platform = await replica(guard);
    const captured = await sealedSignIn("nobody@a.test");
    assert.equal((await post(platform, captured.encapsulatedRequest)).statusCode, 200);
    assert.equal((await post(platform, captured.encapsulatedRequest)).statusCode, 400);
    assert.ok(unavailable >= 1);
  });
});
