// The key broker against a real attestation service over HTTPS, with a workload that attested itself.
import assert from "node:assert/strict";
import { createCipheriv, generateKeyPairSync, randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { compactDecrypt, compactVerify, createLocalJWKSet, decodeJwt, type JSONWebKeySet } from "jose";
import { issueAttestationToken } from "@cloister/attestation";
import { attestAtStart, simulationProvider, type Attestation } from "@cloister/enclave";
import { buildApp as buildAttestationService } from "../../attestation-service/src/app.js";
import { listenOnLoopback } from "@cloister/service-kit";
import { buildApp } from "./app.js";
import { brokerTestBed } from "./test-support.js";
import { SealedKeyStore } from "./key-store.js";

const { scratch, platform, ca, tls, logStream, logged: loggedSoFar } = brokerTestBed("Broker");
const adminToken = "test-admin-token-0123456789";
const brokerIdentity = { mrenclave: "b0".repeat(32), mrsigner: "51".repeat(32), productId: 1, svn: 1 };
const workloadMeasurement = "77".repeat(32);
let endpoint = "";
let workload: Attestation;
let stranger: Attestation;
const closers: (() => Promise<unknown>)[] = [];

before(async () => {
  const serviceProvider = simulationProvider(platform, {
    mrenclave: "5e".repeat(32),
    mrsigner: "51".repeat(32),
    productId: 1,
    svn: 1,
  });
  const { app: service, url } = await listenOnLoopback((issuer) =>
    buildAttestationService({
      issuer,
      provider: serviceProvider,
      policyMode: "dev",
      simulationPlatform: platform,
      https: tls,
    }),
  );
  endpoint = url;
  closers.push(() => service.close());
  const client = { url: endpoint, ca: ca.certificatePem };
  workload = await attestAtStart({
    provider: simulationProvider(platform, {
      mrenclave: workloadMeasurement,
      mrsigner: "88".repeat(32),
      productId: 4,
      svn: 2,
    }),
    attestationService: client,
  });
  stranger = await attestAtStart({
    provider: simulationProvider(platform, {
      mrenclave: "66".repeat(32),
      mrsigner: "88".repeat(32),
      productId: 4,
      svn: 2,
    }),
    attestationService: client,
  });
});
after(async () => {
  workload.stop();
  stranger.stop();
  for (const close of closers) {
    await close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

function policy(extra: object[] = []): object {
  return {
    version: "1.0.0",
    anyOf: [
      {
        authority: endpoint,
        allOf: [
          { claim: "x-ms-sgx-mrenclave", equals: workloadMeasurement },
          { claim: "x-ms-sgx-svn", greaterOrEquals: 2 },
          ...extra,
        ],
      },
    ],
  };
}

async function broker(
  overrides: { now?: () => Date; mrenclave?: string; mrsigner?: string; directory?: string } = {},
): Promise<Awaited<ReturnType<typeof buildApp>>> {
  const app = await buildApp({
    provider: simulationProvider(platform, {
      ...brokerIdentity,
      ...(overrides.mrenclave === undefined ? {} : { mrenclave: overrides.mrenclave }),
      ...(overrides.mrsigner === undefined ? {} : { mrsigner: overrides.mrsigner }),
    }),
    dataDirectory: overrides.directory ?? join(scratch, "keys"),
    adminToken,
    authorityCa: ca.certificatePem,
    logger: { level: "trace", stream: logStream },
    ...(overrides.now === undefined ? {} : { now: overrides.now }),
  });
  closers.push(() => app.close());
  return app;
}

const admin = { authorization: `Bearer ${adminToken}` };

async function release(
  app: Awaited<ReturnType<typeof buildApp>>,
  name: string,
  target: string,
): Promise<{ status: number; body: { value?: string; error?: { code: string } } }> {
  const response = await app.inject({ method: "POST", url: `/keys/${name}/release`, payload: { target } });
  return { status: response.statusCode, body: response.json() };
}

async function unwrap(
  app: Awaited<ReturnType<typeof buildApp>>,
  value: string,
  attestation: Attestation,
): Promise<Uint8Array> {
  const jwks = (await app.inject({ method: "GET", url: "/certs" })).json<JSONWebKeySet>();
  const { payload } = await compactVerify(value, createLocalJWKSet(jwks));
  const jwe = (JSON.parse(new TextDecoder().decode(payload)) as { response: { key: { key_hsm: string } } })
    .response.key.key_hsm;
  return (await compactDecrypt(jwe, attestation.keys.release.privateKey)).plaintext;
}

describe("key broker", () => {
  test("admin creates keys (bearer token required, never overwritten); release succeeds for a matching token", async () => {
    const app = await broker();
    assert.equal(
      (await app.inject({ method: "PUT", url: "/keys/db-key", payload: { policy: policy() } })).statusCode,
      401,
    );
    assert.equal(
      (
        await app.inject({
          method: "PUT",
          url: "/keys/db-key",
          headers: { authorization: "Bearer wrong" },
          payload: { policy: policy() },
        })
      ).statusCode,
      401,
    );
    const created = await app.inject({
      method: "PUT",
      url: "/keys/db-key",
      headers: admin,
      payload: { policy: policy() },
    });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(
      (
        await app.inject({
          method: "PUT",
          url: "/keys/db-key",
          headers: admin,
          payload: { policy: policy() },
        })
      ).statusCode,
      409,
    );
    assert.equal(
      (
        await app.inject({
          method: "PUT",
          url: "/keys/bad",
          headers: admin,
          payload: { policy: { version: "1.0.0", anyOf: [] } },
        })
      ).statusCode,
      400,
    );
    const released = await release(app, "db-key", workload.token());
    assert.equal(released.status, 200, JSON.stringify(released.body));
    const secret = await unwrap(app, released.body.value ?? "", workload);
    assert.equal(secret.length, 32);
    // Only the private key bound in the token opens it.
    const jwks = (await app.inject({ method: "GET", url: "/certs" })).json<JSONWebKeySet>();
    const { payload } = await compactVerify(released.body.value ?? "", createLocalJWKSet(jwks));
    const jwe = (JSON.parse(new TextDecoder().decode(payload)) as { response: { key: { key_hsm: string } } })
      .response.key.key_hsm;
    const other = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await assert.rejects(compactDecrypt(jwe, other.privateKey));
    // A restart loses nothing: the same secret comes back; a leftover temp file from a torn write is ignored.
    writeFileSync(join(scratch, "keys", "db-key.sealed.abc.tmp"), "torn");
    const restarted = await broker();
    const again = await release(restarted, "db-key", workload.token());
    assert.deepEqual(await unwrap(restarted, again.body.value ?? "", workload), secret);
    // The store is sealed to the broker's signer: an upgrade (new measurement, same signer) opens it,
    // code from another signer cannot.
    const upgraded = await broker({ mrenclave: "99".repeat(32) });
    const afterUpgrade = await release(upgraded, "db-key", workload.token());
    assert.deepEqual(await unwrap(upgraded, afterUpgrade.body.value ?? "", workload), secret);
    await assert.rejects(broker({ mrsigner: "98".repeat(32) }));
  });

  test("replacing a release policy keeps the value and moves release to the new measurement", async () => {
    const app = await broker({ directory: join(scratch, "policy-replace") });
    await app.inject({ method: "PUT", url: "/keys/db-key", headers: admin, payload: { policy: policy() } });
    const before = await release(app, "db-key", workload.token());
    const secret = await unwrap(app, before.body.value ?? "", workload);
    const strangerPolicy = {
      version: "1.0.0",
      anyOf: [
        {
          authority: endpoint,
          allOf: [{ claim: "x-ms-sgx-mrenclave", equals: decodeJwt(stranger.token())["x-ms-sgx-mrenclave"] }],
        },
      ],
    };
    const unauthorised = await app.inject({
      method: "PUT",
      url: "/keys/db-key/policy",
      payload: { policy: strangerPolicy },
    });
    assert.equal(unauthorised.statusCode, 401);
    const missing = await app.inject({
      method: "PUT",
      url: "/keys/no-such-key/policy",
      headers: admin,
      payload: { policy: strangerPolicy },
    });
    assert.equal(missing.statusCode, 404);
    const replaced = await app.inject({
      method: "PUT",
      url: "/keys/db-key/policy",
      headers: admin,
      payload: { policy: strangerPolicy },
    });
    assert.equal(replaced.statusCode, 200, replaced.body);
    assert.equal((await release(app, "db-key", workload.token())).body.error?.code, "ERR_POLICY_DENIED");
    const moved = await release(app, "db-key", stranger.token());
    assert.equal(moved.status, 200);
    assert.deepEqual(await unwrap(app, moved.body.value ?? "", stranger), secret);
  });

  test("rotation adds versions: the newest is released by default, older ones by number until destroyed", async () => {
    const directory = join(scratch, "rotation");
    const app = await broker({ directory });
    await app.inject({ method: "PUT", url: "/keys/tenant-a", headers: admin, payload: { policy: policy() } });
    const first = await unwrap(
      app,
      (await release(app, "tenant-a", workload.token())).body.value ?? "",
      workload,
    );
    assert.equal(
      (await app.inject({ method: "POST", url: "/keys/tenant-a/rotate" })).statusCode,
      401,
      "rotation is an admin act",
    );
    const rotated = await app.inject({ method: "POST", url: "/keys/tenant-a/rotate", headers: admin });
    assert.equal(rotated.statusCode, 201, rotated.body);
    assert.deepEqual(
      rotated.json<{ versions: { version: number }[] }>().versions.map((entry) => entry.version),
      [1, 2],
    );
    const newest = await release(app, "tenant-a", workload.token());
    const payloadOf = async (value: string, on = app): Promise<{ version: number; versions: number[] }> => {
      const jwks = (await on.inject({ method: "GET", url: "/certs" })).json<JSONWebKeySet>();
      const { version, versions } = (
        JSON.parse(
          new TextDecoder().decode((await compactVerify(value, createLocalJWKSet(jwks))).payload),
        ) as { response: { key: { version: number; versions: number[] } } }
      ).response.key;
      return { version, versions };
    };
    assert.deepEqual(await payloadOf(newest.body.value ?? ""), { version: 2, versions: [1, 2] });
    const second = await unwrap(app, newest.body.value ?? "", workload);
    assert.notDeepEqual(second, first);
    const byNumber = await app.inject({
      method: "POST",
      url: "/keys/tenant-a/1/release",
      payload: { target: workload.token() },
    });
    assert.equal(byNumber.statusCode, 200);
    assert.deepEqual(await unwrap(app, byNumber.json<{ value: string }>().value, workload), first);
    // A version is released under the key's one policy: a stranger gets neither.
    const strangerOld = await app.inject({
      method: "POST",
      url: "/keys/tenant-a/1/release",
      payload: { target: stranger.token() },
    });
    assert.equal(strangerOld.json<{ error: { code: string } }>().error.code, "ERR_POLICY_DENIED");
    for (const [url, code] of [
      ["/keys/tenant-a/3/release", "ERR_NOT_FOUND"],
      ["/keys/tenant-a/0/release", "ERR_BAD_REQUEST"],
      ["/keys/tenant-a/01/release", "ERR_BAD_REQUEST"],
      ["/keys/tenant-a/..%2F1/release", "ERR_BAD_REQUEST"],
    ] as const) {
      const answer = await app.inject({ method: "POST", url, payload: { target: workload.token() } });
      assert.equal(answer.json<{ error: { code: string } }>().error.code, code, url);
    }
    assert.equal(
      (await app.inject({ method: "DELETE", url: "/keys/tenant-a/2", headers: admin })).json<{
        error: { code: string };
      }>().error.code,
      "ERR_CONFLICT",
      "the newest version cannot be destroyed",
    );
    const destroyed = await app.inject({ method: "DELETE", url: "/keys/tenant-a/1", headers: admin });
    assert.equal(destroyed.statusCode, 200, destroyed.body);
    const gone = await app.inject({
      method: "POST",
      url: "/keys/tenant-a/1/release",
      payload: { target: workload.token() },
    });
    assert.equal(gone.json<{ error: { code: string } }>().error.code, "ERR_NOT_FOUND");
    // Versions survive a restart, and a destroyed number is never issued again.
    const restarted = await broker({ directory });
    assert.deepEqual(
      await payloadOf((await release(restarted, "tenant-a", workload.token())).body.value ?? "", restarted),
      {
        version: 2,
        versions: [2],
      },
    );
    await restarted.inject({ method: "POST", url: "/keys/tenant-a/rotate", headers: admin });
    await restarted.inject({ method: "DELETE", url: "/keys/tenant-a/2", headers: admin });
    const third = await restarted.inject({ method: "POST", url: "/keys/tenant-a/rotate", headers: admin });
    assert.deepEqual(
      third.json<{ versions: { version: number }[] }>().versions.map((entry) => entry.version),
      [3, 4],
    );
    // A generated secret takes no value; a named secret needs one.
    const withValue = await restarted.inject({
      method: "POST",
      url: "/keys/tenant-a/rotate",
      headers: admin,
      payload: { value: "AAAA" },
    });
    assert.equal(withValue.json<{ error: { code: string } }>().error.code, "ERR_BAD_REQUEST");
    assert.ok(!loggedSoFar().includes(Buffer.from(second).toString("base64")), "no key value is logged");
  });

  test("keys sealed before versions existed open as version 1", async () => {
    const directory = join(scratch, "legacy");
    const app = await broker({ directory });
    await app.inject({
      method: "PUT",
      url: "/keys/legacy-key",
      headers: admin,
      payload: { policy: policy() },
    });
    const value = await unwrap(
      app,
      (await release(app, "legacy-key", workload.token())).body.value ?? "",
      workload,
    );
    // Rewrite the sealed file in the first format ({…, value}) with the broker's own sealing key.
    const sealingKey = await simulationProvider(platform, brokerIdentity).sealingKey(
      "key-broker-store",
      "signer",
    );
    const legacyStore = new SealedKeyStore(directory, sealingKey);
    const stored = legacyStore.get("legacy-key");
    assert.ok(stored !== undefined);
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", sealingKey, iv).setAAD(Buffer.from("legacy-key"));
    const legacyRecord = {
      name: stored.name,
      kind: stored.kind,
      policy: stored.policy,
      createdAt: stored.createdAt,
      value: Buffer.from(value).toString("base64"),
    };
    const plaintext = Buffer.from(JSON.stringify(legacyRecord));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    writeFileSync(
      join(directory, "legacy-key.sealed"),
      Buffer.concat([Buffer.from("CKB1"), iv, cipher.getAuthTag(), ciphertext]),
    );
    const reopened = await broker({ directory });
    const released = await release(reopened, "legacy-key", workload.token());
    assert.deepEqual(await unwrap(reopened, released.body.value ?? "", workload), value);
    const shown = (await reopened.inject({ method: "GET", url: "/keys/legacy-key", headers: admin })).json<{
      version: number;
    }>();
    assert.equal(shown.version, 1);
  });

  test("named secrets (Redis credentials) are released as given", async () => {
    const app = await broker({ directory: join(scratch, "named") });
    const value = Buffer.from("redis-user:redis-password").toString("base64");
    assert.equal(
      (
        await app.inject({
          method: "PUT",
          url: "/keys/redis-credentials",
          headers: admin,
          payload: { policy: policy(), value },
        })
      ).statusCode,
      201,
    );
    const released = await release(app, "redis-credentials", workload.token());
    assert.equal(
      Buffer.from(await unwrap(app, released.body.value ?? "", workload)).toString(),
      "redis-user:redis-password",
    );
    const shown = (await app.inject({ method: "GET", url: "/keys/redis-credentials", headers: admin })).body;
    assert.ok(!shown.includes(value) && !shown.includes("redis-password"), "GET never shows the value");
  });

  test("release fails for the wrong measurement, debuggable under a non-debug policy, expired, forged, unknown authority, no runtime key", async () => {
    const app = await broker({ directory: join(scratch, "negative") });
    await app.inject({ method: "PUT", url: "/keys/db-key", headers: admin, payload: { policy: policy() } });
    await app.inject({
      method: "PUT",
      url: "/keys/prod-key",
      headers: admin,
      payload: { policy: policy([{ claim: "x-ms-sgx-is-debuggable", equals: false }]) },
    });
    const codeOf = async (name: string, token: string, on = app): Promise<string | undefined> =>
      (await release(on, name, token)).body.error?.code;
    assert.equal(await codeOf("db-key", stranger.token()), "ERR_POLICY_DENIED");
    assert.equal(await codeOf("prod-key", workload.token()), "ERR_POLICY_DENIED");
    const later = await broker({
      directory: join(scratch, "negative"),
      now: () => new Date(Date.now() + 2 * 3600 * 1000),
    });
    assert.equal(
      await codeOf("db-key", workload.token(), later),
      "ERR_TOKEN_INVALID",
      "replayed beyond its expiry",
    );
    const [header, payload] = workload.token().split(".");
    const forgedSignature = `${header}.${payload}.${Buffer.alloc(256, 1).toString("base64url")}`;
    assert.equal(await codeOf("db-key", forgedSignature), "ERR_TOKEN_INVALID");
    const attacker = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const foreign = await issueAttestationToken(
      { "x-ms-sgx-mrenclave": workloadMeasurement, "x-ms-sgx-svn": 2 },
      { privateKey: attacker.privateKey, kid: "x", issuer: "https://attacker.example" },
    );
    assert.equal(await codeOf("db-key", foreign), "ERR_AUTHORITY_UNKNOWN");
    const sameIssuer = await issueAttestationToken(
      { "x-ms-sgx-mrenclave": workloadMeasurement, "x-ms-sgx-svn": 2 },
      { privateKey: attacker.privateKey, kid: "x", issuer: endpoint },
    );
    assert.equal(await codeOf("db-key", sameIssuer), "ERR_TOKEN_INVALID");
    assert.equal(await codeOf("db-key", "not-a-token"), "ERR_TOKEN_INVALID");
    assert.equal(await codeOf("missing", workload.token()), "ERR_NOT_FOUND");
  });

  test("a token without a runtime encryption key is refused", async () => {
    const app = await broker({ directory: join(scratch, "nokey") });
    await app.inject({ method: "PUT", url: "/keys/db-key", headers: admin, payload: { policy: policy() } });
    const { requestJson } = await import("@cloister/enclave");
    const quote = platform.quote({
      mrenclave: workloadMeasurement,
      mrsigner: "88".repeat(32),
      productId: 4,
      svn: 2,
      reportData: new Uint8Array(64),
    });
    const response = await requestJson(
      "POST",
      `${endpoint}/attest/SgxEnclave`,
      { quote: Buffer.from(quote).toString("base64url") },
      { ca: ca.certificatePem },
    );
    const token = (response.body as { token: string }).token;
    assert.equal((await release(app, "db-key", token)).body.error?.code, "ERR_NO_RUNTIME_KEY");
  });

  test("no token, secret or admin token in any log line; releases are audited", () => {
    assert.match(loggedSoFar(), /"audit":"key.created"/);
    assert.match(loggedSoFar(), /"audit":"key.released"/);
    assert.match(loggedSoFar(), /"audit":"key.release.refused"/);
    for (const secret of [
      workload.token(),
      workload.token().split(".")[2] ?? "",
      adminToken,
      Buffer.from("redis-user:redis-password").toString("base64"),
      "redis-password",
    ]) {
      assert.ok(!loggedSoFar().includes(secret), `log contains ${secret.slice(0, 10)}…`);
    }
  });
});
