// Several replicas of the attestation service over HTTPS on loopback, reached by address and checked by the
// name their certificates carry, as pods behind a headless Service are.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWK } from "jose";
import Fastify from "fastify";
import { createSimulationPlatform, type SimulationPlatform } from "@cloister/attestation";
import {
  createDevCertificateAuthority,
  issueServerCertificate,
  reportDataFor,
  requestBytes,
  requestJson,
  simulationProvider,
} from "@cloister/enclave";
import type { FastifyInstance } from "fastify";
import { listenOnLoopback } from "@cloister/service-kit";
import { buildApp, type AttestationServiceConfig } from "./app.js";
import { createPolicyManager } from "./test-support.js";
import { createSigningKey, jwkFor } from "./signing-key.js";

const serviceName = "cloister-attestation-service.cloister.svc";
const ca = createDevCertificateAuthority("Cloister Replicas Test CA");
// No address in the certificates: a replica reached at 127.0.0.1 is accepted only under the service's name.
const tls = { ...issueServerCertificate(ca, { dnsNames: [serviceName] }) };
const client = { ca: ca.certificatePem, servername: serviceName };
const platform = createSimulationPlatform();
const serviceIdentity = { mrenclave: "5e".repeat(32), mrsigner: "51".repeat(32), productId: 1, svn: 1 };
const lifetimeSeconds = 600;
let clock = new Date();
const now = (): Date => clock;

let logged = "";
const logStream = new Writable({
  write(chunk: Buffer, _encoding, done) {
    logged += chunk.toString("utf8");
    done();
  },
});

/** The replica list the headless Service would resolve to. */
const addresses: string[] = [];

interface Replica {
  readonly app: FastifyInstance;
  readonly url: string;
  readonly kid: string;
}

async function startReplica(
  overrides: Partial<AttestationServiceConfig> = {},
  identity = serviceIdentity,
): Promise<Replica> {
  const { app, url } = await listenOnLoopback(async (issuer) => {
    addresses.push(issuer);
    return buildApp({
      issuer,
      provider: simulationProvider(platform, identity),
      policyMode: "dev",
      simulationPlatform: platform,
      tokenLifetimeSeconds: lifetimeSeconds,
      now,
      https: tls,
      logger: { level: "info", stream: logStream },
      // Rounds are driven by the test (syncPeers), so each step is deterministic.
      peers: { resolve: async () => [...addresses], ...client, intervalMs: 3_600_000 },
      ...overrides,
    });
  });
  after(() => app.close());
  const ready = await requestJson("GET", `${url}/readyz`, undefined, client);
  return { app, url, kid: (ready.body as { signingKey: string }).signingKey };
}

const get = async (replica: Replica, path: string): Promise<{ status: number; body: unknown }> =>
  requestJson("GET", `${replica.url}${path}`, undefined, client);
const kids = async (replica: Replica): Promise<string[]> =>
  ((await get(replica, "/certs")).body as JSONWebKeySet).keys.map((key) => key.kid ?? "").sort();
const syncAll = async (...replicas: Replica[]): Promise<void> => {
  for (const replica of replicas) {
    await replica.app.attestationService.syncPeers();
  }
};

function workloadToken(replica: Replica): Promise<string> {
  const runtime = Buffer.from(JSON.stringify({ purpose: "replicas test" }));
  const workload = { mrenclave: "aa".repeat(32), mrsigner: "bb".repeat(32), productId: 2, svn: 3 };
  const quote = platform.quote({ ...workload, reportData: reportDataFor(runtime) });
  return requestJson(
    "POST",
    `${replica.url}/attest/SgxEnclave`,
    {
      quote: Buffer.from(quote).toString("base64url"),
      runtimeData: { data: runtime.toString("base64url"), dataType: "JSON" },
    },
    client,
  ).then((response) => {
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return (response.body as { token: string }).token;
  });
}

test("every replica serves every replica's key, so a token from one verifies with any one's key set; a replica is ready once the others serve its key", async () => {
  addresses.length = 0;
  const first = await startReplica();
  await syncAll(first);
  assert.equal((await get(first, "/readyz")).status, 200, "alone, ready after one round");

  const second = await startReplica();
  await syncAll(second);
  assert.equal((await get(second, "/readyz")).status, 503, "not ready while the first lacks its key");
  await syncAll(first, second);
  assert.equal((await get(second, "/readyz")).status, 200);
  const third = await startReplica();
  await syncAll(first, second, third);
  assert.equal((await get(third, "/readyz")).status, 200);

  const all = [first.kid, second.kid, third.kid].sort();
  for (const replica of [first, second, third]) {
    assert.deepEqual(await kids(replica), all);
  }
  // Other people's verifiers: jose, with a key set fetched from another replica than the token's.
  const token = await workloadToken(first);
  const keySet = createLocalJWKSet((await get(third, "/certs")).body as JSONWebKeySet);
  const { payload } = await jwtVerify(token, keySet, { currentDate: clock });
  assert.equal(payload["x-ms-sgx-mrenclave"], "aa".repeat(32));
  assert.match(logged, /"audit":"peers.key-learnt"/);

  // A replica that has gone: its key is served until its last tokens have expired, and not after, even by a
  // replica that learnt it later from another one.
  await second.app.close();
  addresses.splice(addresses.indexOf(second.url), 1);
  clock = new Date(clock.getTime() + 60_000);
  await syncAll(first, third);
  const fourth = await startReplica();
  await syncAll(fourth, first, third, fourth);
  assert.ok((await kids(fourth)).includes(second.kid), "learnt from the others");
  clock = new Date(clock.getTime() + (lifetimeSeconds - 60) * 1000 + 1000);
  await syncAll(first, third, fourth);
  for (const replica of [first, third, fourth]) {
    assert.ok(!(await kids(replica)).includes(second.kid), "gone once its tokens have expired");
    assert.ok((await kids(replica)).includes(first.kid), "the live replicas' keys stay");
  }
  clock = new Date();
});

test("a peer's key is refused unless its evidence verifies, binds the key and names this service's signer", async () => {
  addresses.length = 0;
  const replica = await startReplica();
  const stranger = createSimulationPlatform();
  const evidenceFor = (from: SimulationPlatform, identity: typeof serviceIdentity, bind = true) => {
    return async (runtimeData: Uint8Array): Promise<Uint8Array> => {
      const reportData = new Uint8Array(64);
      reportData.set(
        createHash("sha256")
          .update(bind ? runtimeData : Buffer.from("another key"))
          .digest(),
      );
      return from.quote({ ...identity, reportData });
    };
  };
  const bad: { reason: RegExp; jwk: JWK }[] = [
    {
      reason: /another service \(x-ms-sgx-mrsigner\)/,
      jwk: await jwkFor(
        await createSigningKey(
          evidenceFor(platform, { ...serviceIdentity, mrsigner: "66".repeat(32) }),
          clock,
        ),
      ),
    },
    {
      reason: /does not bind the key/,
      jwk: await jwkFor(await createSigningKey(evidenceFor(platform, serviceIdentity, false), clock)),
    },
    {
      reason: /does not verify \(ERR_EVIDENCE_INVALID\)/,
      jwk: await jwkFor(await createSigningKey(evidenceFor(stranger, serviceIdentity), clock)),
    },
  ];
  // A key from a genuine replica with its modulus swapped: the certificate no longer matches the JWK.
  const genuine = await jwkFor(await createSigningKey(evidenceFor(platform, serviceIdentity), clock));
  const swapped = await jwkFor(await createSigningKey(evidenceFor(platform, serviceIdentity), clock));
  bad.push({ reason: /not the certificate's RS256 key/, jwk: { ...genuine, n: swapped.n } });

  const impostor = Fastify({ https: tls });
  impostor.get("/peers/state", async () => ({
    keys: bad.map(({ jwk }) => ({ jwk, expiresAt: new Date(clock.getTime() + 60_000).toISOString() })),
    policies: [],
  }));
  const { url } = await listenOnLoopback(async () => impostor);
  after(() => impostor.close());
  addresses.push(url);
  await syncAll(replica, replica);

  assert.deepEqual(await kids(replica), [replica.kid], "no refused key is served");
  for (const { reason } of bad) {
    assert.match(logged, new RegExp(`"audit":"peers.key-refused".*${reason.source}`));
  }
  const text = Buffer.from(
    (await requestBytes("GET", `${replica.url}/metrics`, undefined, client)).body,
  ).toString("utf8");
  assert.match(
    text,
    /attestation_peer_refused_total\{kind="key"\} 4\b/,
    "each refused once, not every round",
  );
});

test("a policy set on one replica reaches the others and a replica started later; a peer's unsigned one is refused in production", async () => {
  addresses.length = 0;
  const manager = createPolicyManager();
  const production = { policyMode: "production" as const, policySigners: [manager.certificatePem] };
  const first = await startReplica(production);
  const second = await startReplica(production);
  await syncAll(first, second, first, second);

  const strict = `version=1.0; authorizationrules{ [type=="x-ms-sgx-svn", value>=9] => permit(); }; issuancerules{ => issue(type="strict", value="yes"); };`;
  const put = await requestJson("PUT", `${first.url}/policies/SgxEnclave`, await manager.signed(strict), {
    ...client,
  });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const policyText = async (replica: Replica): Promise<string> => {
    const token = ((await get(replica, "/policies/SgxEnclave")).body as { token: string }).token;
    const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      "x-ms-policy": string;
    };
    return Buffer.from(claims["x-ms-policy"], "base64url").toString("utf8");
  };
  assert.notEqual(await policyText(second), strict);
  await syncAll(second);
  assert.equal(await policyText(second), strict, "reached the other replica");
  const later = await startReplica(production);
  await syncAll(later);
  assert.equal(await policyText(later), strict, "a replica started later learns it");

  // A peer offering a newer, unsigned policy: refused by each replica's own policy store.
  const lax = `version=1.0; authorizationrules{ => permit(); }; issuancerules{ };`;
  const impostor = Fastify({ https: tls });
  const unsigned = manager.unsigned(lax);
  impostor.get("/peers/state", async () => ({
    keys: [],
    policies: [
      { type: "SgxEnclave", envelope: unsigned, setAt: new Date(clock.getTime() + 1000).toISOString() },
    ],
  }));
  const { url } = await listenOnLoopback(async () => impostor);
  after(() => impostor.close());
  addresses.push(url);
  await syncAll(first, second, later);
  for (const replica of [first, second, later]) {
    assert.equal(await policyText(replica), strict);
  }
  assert.match(logged, /"audit":"peers.policy-refused"[^\n]*"reason":"ERR_FORBIDDEN"/);

  // A reset on one replica, later, is a newer version too, and reaches the others.
  clock = new Date(clock.getTime() + 5000);
  const reset = await requestJson("POST", `${second.url}/policies/SgxEnclave:reset`, undefined, client);
  assert.equal(reset.status, 200);
  await syncAll(first, later);
  assert.notEqual(await policyText(first), strict);
  assert.equal(await policyText(first), await policyText(second));
});

test("a policy declared in configuration is not replaced by a replica's newer one, and survives every replica's restart", async () => {
  addresses.length = 0;
  const manager = createPolicyManager();
  const production = { policyMode: "production" as const, policySigners: [manager.certificatePem] };
  const declaredText = `version=1.0; authorizationrules{ [type=="x-ms-sgx-svn", value>=4] => permit(); }; issuancerules{ => issue(type="declared", value="yes"); };`;
  const declaredPolicies = { SgxEnclave: await manager.signed(declaredText) };
  const policyText = async (replica: Replica, type: string): Promise<string> => {
    const token = ((await get(replica, `/policies/${type}`)).body as { token: string }).token;
    const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      "x-ms-policy": string;
    };
    return Buffer.from(claims["x-ms-policy"], "base64url").toString("utf8");
  };
  const declaring = await startReplica({ ...production, declaredPolicies });
  // A replica without the declaration (a half-finished roll-out) sets a newer policy of that type by the API.
  const undeclared = await startReplica(production);
  const newer = `version=1.0; authorizationrules{ => permit(); }; issuancerules{ };`;
  clock = new Date(clock.getTime() + 1000);
  const put = await requestJson(
    "PUT",
    `${undeclared.url}/policies/SgxEnclave`,
    await manager.signed(newer),
    client,
  );
  assert.equal(put.status, 200, JSON.stringify(put.body));
  // Types not declared still travel between replicas.
  const tdx = `version=1.0; authorizationrules{ => permit(); }; issuancerules{ => issue(type="tdx", value="yes"); };`;
  await requestJson("PUT", `${undeclared.url}/policies/TdxVm`, await manager.signed(tdx), client);
  await syncAll(declaring, undeclared, declaring);
  assert.equal(await policyText(declaring, "SgxEnclave"), declaredText, "the declared policy stays");
  assert.equal(await policyText(declaring, "TdxVm"), tdx, "an undeclared type is learnt");
  // Every replica restarted: the declared policy is back at once, with nothing to learn from anyone.
  addresses.length = 0;
  const restarted = await startReplica({ ...production, declaredPolicies });
  assert.equal(await policyText(restarted, "SgxEnclave"), declaredText);
});
