// The platform's OHTTP gateway for browsers: requests sealed to the attested key are served by the same
// routes (sign-in, FHIR), the host sees only ciphertext, and stale, replayed, misdirected or mis-keyed
// requests are refused. Also: bootstrap accounts are created once.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  decodeResponse,
  encapsulateRequest,
  encodeRequest,
  generateOhttpKeyPair,
  ohttpRequestMediaType,
  type OhttpKeyPair,
} from "@cloister/ohttp";
import type { FastifyInstance } from "fastify";
import type { AccountService } from "./app.js";
import { ensureAccounts } from "./auth/accounts.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const sentinelName = `Gatewaysentinel${randomBytes(4).toString("hex")}`;
let platform: TestPlatform;
let app: FastifyInstance;
let keys: OhttpKeyPair;
let accounts: AccountService;

before(async () => {
  keys = await generateOhttpKeyPair({ keyId: 7 });
  platform = await startTestPlatform({
    attestation: {
      token: () => "token",
      evidence: { type: "sgx", quote: new Uint8Array(16) },
      runtimeData: new Uint8Array(2),
      keys: { ohttp: keys },
    },
  });
  ({ app, accounts } = platform);
});
after(async () => {
  await platform.close();
});

async function sealed(init: {
  method: string;
  path: string;
  headers?: [string, string][];
  body?: Uint8Array | string;
  date?: string | null;
}): Promise<{ encapsulated: Uint8Array; open: (bytes: Uint8Array) => Promise<Uint8Array> }> {
  const headers: [string, string][] = [...(init.headers ?? [])];
  if (init.date !== null) {
    headers.push(["date", init.date ?? new Date().toUTCString()]);
  }
  const request = await encapsulateRequest(
    keys.keyConfig,
    encodeRequest({
      method: init.method,
      scheme: "https",
      authority: "platform.test",
      path: init.path,
      headers,
      ...(init.body === undefined ? {} : { body: init.body }),
    }),
  );
  return { encapsulated: request.encapsulatedRequest, open: request.openResponse };
}

async function post(bytes: Uint8Array): Promise<{ status: number; type: string; raw: Buffer }> {
  const response = await app.inject({
    method: "POST",
    url: "/ohttp",
    headers: { "content-type": ohttpRequestMediaType },
    payload: Buffer.from(bytes),
  });
  return {
    status: response.statusCode,
    type: String(response.headers["content-type"]),
    raw: response.rawPayload,
  };
}

async function exchange(
  init: Parameters<typeof sealed>[0],
): Promise<{ status: number; body: Record<string, unknown>; raw: Buffer }> {
  const request = await sealed(init);
  const outer = await post(request.encapsulated);
  assert.equal(outer.status, 200);
  assert.equal(outer.type, "message/ohttp-res");
  const inner = decodeResponse(await request.open(new Uint8Array(outer.raw)));
  return {
    status: inner.status,
    body: JSON.parse(Buffer.from(inner.body).toString("utf8")) as Record<string, unknown>,
    raw: outer.raw,
  };
}

describe("platform OHTTP gateway", () => {
  it("serves sign-in and FHIR inside the encapsulation; the wire carries only ciphertext", async () => {
    await accounts.create({ email: "clerk@a.test", password, tenantId: "hospital-a", role: "clerk" });
    const attestation = (await app.inject({ method: "GET", url: "/attestation" })).json<{
      keyConfig: string;
    }>();
    assert.equal(attestation.keyConfig, Buffer.from(keys.keyConfig).toString("base64url"));
    const login = await exchange({
      method: "POST",
      path: "/auth/login",
      headers: [["content-type", "application/json"]],
      body: JSON.stringify({ email: "clerk@a.test", password }),
    });
    assert.equal(login.status, 200);
    assert.ok(!login.raw.toString("latin1").includes("accessToken"));
    const authorization: [string, string] = ["authorization", `Bearer ${String(login.body.accessToken)}`];
    const created = await exchange({
      method: "POST",
      path: "/fhir/Patient",
      headers: [authorization, ["content-type", "application/fhir+json"]],
      body: JSON.stringify({ resourceType: "Patient", name: [{ family: sentinelName }] }),
    });
    assert.equal(created.status, 201);
    assert.ok(!created.raw.toString("latin1").includes(sentinelName));
    const found = await exchange({
      method: "POST",
      path: "/fhir/Patient/_search",
      headers: [authorization, ["content-type", "application/x-www-form-urlencoded"]],
      body: `name=${sentinelName}`,
    });
    assert.equal(found.status, 200);
    assert.equal((found.body.entry as unknown[]).length, 1);
    // Without the inner Authorization header, the route refuses as it would directly.
    const anonymous = await exchange({ method: "GET", path: `/fhir/Patient/${String(created.body.id)}` });
    assert.equal(anonymous.status, 401);
  });

  it("refuses stale, future and undated inner requests, and the gateway itself as an inner path", async () => {
    const stale = await exchange({
      method: "GET",
      path: "/fhir/metadata",
      date: new Date(Date.now() - 3600_000).toUTCString(),
    });
    assert.equal(stale.status, 400);
    assert.equal(stale.body.code, "ERR_REQUEST_STALE");
    const future = await exchange({
      method: "GET",
      path: "/fhir/metadata",
      date: new Date(Date.now() + 3600_000).toUTCString(),
    });
    assert.equal(future.body.code, "ERR_REQUEST_STALE");
    const undated = await exchange({ method: "GET", path: "/fhir/metadata", date: null });
    assert.equal(undated.body.code, "ERR_REQUEST_STALE");
    const nested = await exchange({ method: "POST", path: "/ohttp" });
    assert.equal(nested.status, 404);
    const metadata = await exchange({ method: "GET", path: "/fhir/metadata" });
    assert.equal(metadata.status, 200);
    assert.equal(metadata.body.resourceType, "CapabilityStatement");
  });

  it("refuses a replayed encapsulation, an unknown key id and a tampered body", async () => {
    const request = await sealed({ method: "GET", path: "/fhir/metadata" });
    assert.equal((await post(request.encapsulated)).status, 200);
    const replay = await post(request.encapsulated);
    assert.equal(replay.status, 400);
    assert.equal((JSON.parse(replay.raw.toString()) as { code: string }).code, "ERR_OHTTP_REPLAY");
    const otherKey = await generateOhttpKeyPair({ keyId: 9 });
    const misdirected = await encapsulateRequest(
      otherKey.keyConfig,
      encodeRequest({ method: "GET", path: "/" }),
    );
    const unknown = JSON.parse((await post(misdirected.encapsulatedRequest)).raw.toString()) as {
      code: string;
      type: string;
    };
    assert.equal(unknown.code, "ERR_OHTTP_UNKNOWN_KEY");
    assert.equal(unknown.type, "https://iana.org/assignments/http-problem-types#ohttp-key");
    const tampered = (await sealed({ method: "GET", path: "/fhir/metadata" })).encapsulated;
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    assert.equal(
      (JSON.parse((await post(tampered)).raw.toString()) as { code: string }).code,
      "ERR_OHTTP_DECRYPT",
    );
  });
});

describe("bootstrap accounts", () => {
  it("creates the missing accounts only, and refuses a malformed file", async () => {
    const bootstrap = {
      accounts: [
        { email: "boot-clerk@a.test", password, tenantId: "hospital-a", role: "clerk" },
        { email: "boot-admin@a.test", password, tenantId: "hospital-a", role: "admin" },
      ],
    };
    assert.equal(await ensureAccounts(accounts, bootstrap), 2);
    assert.equal(await ensureAccounts(accounts, bootstrap), 0);
    await assert.rejects(
      ensureAccounts(accounts, { accounts: [{ email: "x@a.test", role: "root" }] }),
      /bootstrap account/,
    );
    await assert.rejects(ensureAccounts(accounts, {}), /no accounts list/);
  });
});
