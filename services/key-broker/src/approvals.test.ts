// The two-person rule: with policy approvers configured, a key's creation, a release policy's replacement
// and a version's destruction need a quorum of approvals naming exactly that change.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import type { JWK } from "jose";
import {
  approveKeyChange,
  approverId,
  canonicalJson,
  EnclaveError,
  policyDigest,
  simulationProvider,
  type KeyChange,
} from "@cloister/enclave";
import { buildApp } from "./app.js";
import { approvalConfigFromEnv } from "./approvals.js";
import { brokerTestBed } from "./test-support.js";

const { scratch, platform, logStream, logged } = brokerTestBed("Approvals");
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});
const adminToken = "approvals-admin-token-0123456789";
const admin = { authorization: `Bearer ${adminToken}` };

function approverKey(kind: "P-256" | "P-384" | "RSA"): { privateJwk: JWK; publicJwk: JWK } {
  const pair =
    kind === "RSA"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : generateKeyPairSync("ec", { namedCurve: kind });
  return {
    privateJwk: pair.privateKey.export({ format: "jwk" }),
    publicJwk: pair.publicKey.export({ format: "jwk" }),
  };
}
const approvers = [approverKey("P-256"), approverKey("P-384"), approverKey("RSA")];
const outsider = approverKey("P-256");

const releasePolicy = (measurement: string): Record<string, unknown> => ({
  version: "1.0.0",
  anyOf: [
    {
      authority: "https://attest.cloister.test",
      allOf: [
        { claim: "x-ms-sgx-mrenclave", equals: measurement },
        { claim: "x-ms-sgx-is-debuggable", equals: false },
      ],
    },
  ],
});

let clock = new Date("2026-11-29T12:00:00Z");
const app = await buildApp({
  provider: simulationProvider(platform, {
    mrenclave: "b0".repeat(32),
    mrsigner: "51".repeat(32),
    productId: 1,
    svn: 1,
  }),
  dataDirectory: join(scratch, "keys"),
  adminToken,
  logger: { level: "info", stream: logStream },
  now: () => clock,
  approvals: { approvers: approvers.map((approver) => approver.publicJwk), quorum: 2 },
});
after(() => app.close());

const approve = (change: KeyChange, by: readonly { privateJwk: JWK }[]): Promise<string[]> =>
  Promise.all(by.map((approver) => approveKeyChange(change, approver.privateJwk, { now: clock })));

async function send(
  method: "PUT" | "DELETE",
  url: string,
  approvals: readonly string[],
  payload?: object,
): Promise<{ status: number; code: string | undefined; message: string }> {
  const response = await app.inject({
    method,
    url,
    headers: { ...admin, ...(approvals.length === 0 ? {} : { "cloister-approvals": approvals.join(", ") }) },
    ...(payload === undefined ? {} : { payload }),
  });
  const body = response.json<{ error?: { code: string; message: string } }>();
  return { status: response.statusCode, code: body.error?.code, message: body.error?.message ?? "" };
}

test("a key is created only with a quorum of distinct approvers' approvals of that key and policy", async () => {
  const policy = releasePolicy("77".repeat(32));
  const change: KeyChange = { action: "create", key: "tenant-a", policy };
  const [first, second] = await approve(change, approvers);
  assert.ok(first !== undefined && second !== undefined);

  for (const [approvals, reason] of [
    [[], /0 valid/],
    [[first], /1 valid/],
    [[first, first], /1 valid/],
    [[first, ...(await approve(change, [outsider]))], /not by a configured approver/],
    [
      [first, ...(await approve({ ...change, key: "tenant-b" }, approvers.slice(1, 2)))],
      /approves another change/,
    ],
  ] as const) {
    const refused = await send("PUT", "/keys/tenant-a", approvals, { policy });
    assert.equal(refused.status, 403, refused.message);
    assert.equal(refused.code, "ERR_APPROVAL_REQUIRED");
    assert.match(refused.message, reason);
  }
  assert.equal((await app.inject({ method: "GET", url: "/keys/tenant-a", headers: admin })).statusCode, 404);
  assert.match(logged(), /"audit":"key.approval-missing"/);

  const created = await send("PUT", "/keys/tenant-a", [first, second], { policy });
  assert.equal(created.status, 201, created.message);
  const ids = await Promise.all(approvers.slice(0, 2).map((approver) => approverId(approver.publicJwk)));
  assert.match(
    logged(),
    new RegExp(`"audit":"key.created"[^\\n]*"approvedBy":\\["${ids[0]}","${ids[1]}"\\]`),
  );
  // Adding a version changes who may obtain nothing: the admin token suffices.
  assert.equal(
    (await app.inject({ method: "POST", url: "/keys/tenant-a/rotate", headers: admin })).statusCode,
    201,
  );
});

test("a release policy is replaced only with approvals of that very policy, in date and untampered", async () => {
  const next = releasePolicy("78".repeat(32));
  const change: KeyChange = { action: "set-policy", key: "tenant-a", policy: next };
  const other = releasePolicy("79".repeat(32));
  const [valid] = await approve(change, approvers.slice(0, 1));
  assert.ok(valid !== undefined);
  const [header = "", payload = "", signature = ""] = valid.split(".");
  const tampered = `${header}.${Buffer.from(
    Buffer.from(payload, "base64url")
      .toString("utf8")
      .replace(/"exp":\d+/, '"exp":9999999999'),
  ).toString("base64url")}.${signature}`;
  for (const [approvals, reason] of [
    [await approve({ ...change, policy: other }, approvers.slice(1, 2)), /approves another change/],
    [
      await approve({ action: "create", key: "tenant-a", policy: next }, approvers.slice(1, 2)),
      /approves another change/,
    ],
    [[tampered], /signature does not verify/],
    [["not-a-jws"], /not a JWS/],
  ] as const) {
    const refused = await send("PUT", "/keys/tenant-a/policy", [valid, ...approvals], { policy: next });
    assert.equal(refused.code, "ERR_APPROVAL_REQUIRED", refused.message);
    assert.match(refused.message, reason);
  }
  // Approvals expire: given a day ago, they no longer count.
  const stale = await approve(change, approvers.slice(1, 3));
  clock = new Date(clock.getTime() + 25 * 3600 * 1000);
  const late = await send("PUT", "/keys/tenant-a/policy", stale, { policy: next });
  assert.match(late.message, /not in date/);
  // The same policy written with its members in another order is the same policy: canonical JSON.
  const reordered = JSON.parse(canonicalJson(next)) as Record<string, unknown>;
  const shuffled = { anyOf: reordered.anyOf, version: reordered.version };
  assert.equal(policyDigest(shuffled), policyDigest(next));
  const replaced = await send("PUT", "/keys/tenant-a/policy", await approve(change, approvers.slice(1, 3)), {
    policy: shuffled,
  });
  assert.equal(replaced.status, 200, replaced.message);
  const shown = await app.inject({ method: "GET", url: "/keys/tenant-a", headers: admin });
  assert.equal(
    shown.json<{ policy: { anyOf: { allOf: { value: string }[] }[] } }>().policy.anyOf[0]?.allOf[0]?.value,
    "78".repeat(32),
  );
});

test("a version is destroyed only with approvals naming that version", async () => {
  const forVersion = (version: number): KeyChange => ({
    action: "destroy-version",
    key: "tenant-a",
    version,
  });
  const wrong = await send("DELETE", "/keys/tenant-a/1", await approve(forVersion(2), approvers.slice(0, 2)));
  assert.equal(wrong.code, "ERR_APPROVAL_REQUIRED");
  const none = await send("DELETE", "/keys/tenant-a/1", []);
  assert.equal(none.code, "ERR_APPROVAL_REQUIRED");
  const destroyed = await send(
    "DELETE",
    "/keys/tenant-a/1",
    await approve(forVersion(1), approvers.slice(0, 2)),
  );
  assert.equal(destroyed.status, 200, destroyed.message);
  assert.match(logged(), /"audit":"key.version-destroyed"[^\n]*"approvedBy":\[/);
});

test("approvals are made with a private key, for at most 7 days; the configuration takes public keys and a quorum", async () => {
  const change: KeyChange = { action: "destroy-version", key: "tenant-a", version: 1 };
  await assert.rejects(
    approveKeyChange(change, approvers[0]?.publicJwk ?? {}),
    (error: unknown) => error instanceof EnclaveError && error.code === "ERR_APPROVAL",
  );
  await assert.rejects(
    approveKeyChange(change, approvers[0]?.privateJwk ?? {}, { validSeconds: 8 * 24 * 3600 }),
    (error: unknown) => error instanceof EnclaveError && error.code === "ERR_APPROVAL",
  );
  const files: Record<string, string> = {
    "public.json": JSON.stringify({ keys: approvers.map((approver) => approver.publicJwk) }),
    "private.json": JSON.stringify({ keys: [approvers[0]?.privateJwk] }),
    "p521.json": JSON.stringify({
      keys: [generateKeyPairSync("ec", { namedCurve: "P-521" }).publicKey.export({ format: "jwk" })],
    }),
  };
  const read = (path: string): string => files[path] ?? "";
  assert.equal(approvalConfigFromEnv({}, read), undefined);
  assert.equal(approvalConfigFromEnv({ CLOISTER_POLICY_APPROVERS_FILE: "public.json" }, read)?.quorum, 2);
  for (const env of [
    { CLOISTER_POLICY_APPROVERS_FILE: "private.json" },
    { CLOISTER_POLICY_APPROVERS_FILE: "p521.json" },
    { CLOISTER_POLICY_APPROVERS_FILE: "public.json", CLOISTER_POLICY_APPROVAL_QUORUM: "4" },
    { CLOISTER_POLICY_APPROVERS_FILE: "public.json", CLOISTER_POLICY_APPROVAL_QUORUM: "0" },
  ]) {
    assert.throws(() => approvalConfigFromEnv(env, read), JSON.stringify(env));
  }
});

test("canonical JSON (RFC 8785) sorts members at every depth and keeps array order", () => {
  assert.equal(
    canonicalJson({ b: [3, { z: true, a: null }], a: "é\n", c: 1.5 }),
    '{"a":"é\\n","b":[3,{"a":null,"z":true}],"c":1.5}',
  );
  assert.notEqual(policyDigest({ list: [1, 2] }), policyDigest({ list: [2, 1] }));
});
