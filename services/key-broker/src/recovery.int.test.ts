// The key broker's keys survive the loss of its node. Its store is sealed with a key SGX derives per CPU, so a
// broker on another node cannot open it; a recovery backup, encrypted to custodians 2-of-3, restores it into a
// fresh broker on the other node once two custodians have verified that broker's evidence with the attestation
// service and handed it their shares. Everything over HTTPS, against a real attestation service.
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CompactEncrypt, exportJWK, importJWK, type JWK } from "jose";
import {
  EnclaveError,
  parseRecoveryBackup,
  releaseKeyVersion,
  requestBytes,
  requestJson,
  simulationProvider,
  submitRecoveryShare,
  type Attestation,
  type RecoveryBackup,
  type TeeProvider,
} from "@cloister/enclave";
import { listenOnLoopback } from "@cloister/service-kit";
import { buildApp as buildAttestationService } from "../../attestation-service/src/app.js";
import { buildApp, type RecoveryConfig } from "./app.js";
import { attestBroker, brokerTestBed, startAttestedWorkload, verifiedBrokerClient } from "./test-support.js";
import { SealedKeyStore } from "./key-store.js";
import { recoveryConfigFromEnv } from "./recovery-routes.js";

const bed = brokerTestBed("Recovery");
const { scratch, platform, ca, tls, logStream, logged: loggedSoFar } = bed;
const adminToken = "test-admin-token-recovery-0123456789";
const brokerIdentity = { mrenclave: "b1".repeat(32), mrsigner: "51".repeat(32), productId: 2, svn: 1 };
const workloadMeasurement = "7a".repeat(32);
let attestationUrl = "";
let workload: Attestation;
const closers: (() => Promise<unknown>)[] = [];
let custodians: { publicJwk: JWK; privateJwk: JWK }[] = [];

before(async () => {
  const started = await startAttestedWorkload(bed, buildAttestationService, workloadMeasurement);
  attestationUrl = started.url;
  workload = started.workload;
  closers.push(started.close);
  custodians = await Promise.all(
    [
      generateKeyPairSync("rsa", { modulusLength: 2048 }),
      generateKeyPairSync("ec", { namedCurve: "P-256" }),
      generateKeyPairSync("ec", { namedCurve: "P-384" }),
    ].map(async (pair) => ({
      publicJwk: await exportJWK(pair.publicKey),
      privateJwk: await exportJWK(pair.privateKey),
    })),
  );
});
after(async () => {
  for (const close of closers.reverse()) {
    await close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

/** The broker's TEE on one node: the same code and evidence anywhere, a sealing key of that node's CPU. */
function nodeProvider(sealingSecret: Uint8Array): TeeProvider {
  const provider = simulationProvider(platform, brokerIdentity);
  return {
    name: provider.name,
    getEvidence: (runtimeData) => provider.getEvidence(runtimeData),
    sealingKey: async () => sealingSecret,
  };
}

async function startBroker(
  provider: TeeProvider,
  directory: string,
  recovery?: RecoveryConfig,
): Promise<{ url: string; close: () => Promise<unknown> }> {
  const attested = await attestBroker(provider, { url: attestationUrl, ca: ca.certificatePem });
  closers.push(async () => {
    attested.stop();
  });
  const { app, url } = await listenOnLoopback(async () =>
    buildApp({
      provider,
      identity: attested.identity,
      dataDirectory: directory,
      adminToken,
      authorityCa: ca.certificatePem,
      logger: { level: "info", stream: logStream },
      https: tls,
      ...(recovery === undefined ? {} : { recovery }),
    }),
  );
  closers.push(() => app.close());
  return { url, close: () => app.close() };
}

const admin = { ca: ca.certificatePem, headers: { authorization: `Bearer ${adminToken}` } };
const releasePolicy = (): object => ({
  version: "1.0.0",
  anyOf: [
    { authority: attestationUrl, allOf: [{ claim: "x-ms-sgx-mrenclave", equals: workloadMeasurement }] },
  ],
});

/** What the workload gets from a broker for `name` (one version, or the newest). */
async function released(url: string, name: string, version?: number): Promise<string> {
  const answer = await releaseKeyVersion(
    verifiedBrokerClient(url, brokerIdentity.mrenclave, { url: attestationUrl, ca: ca.certificatePem }),
    name,
    workload.token(),
    workload.keys.release.privateKey,
    version,
  );
  return Buffer.from(answer.value).toString("base64");
}

const expectations = () => ({
  issuer: attestationUrl,
  measurements: [brokerIdentity.mrenclave],
  // The test's TEE is the simulation (simulated enclaves are debuggable); production custodians leave these off.
  allowSimulation: true,
  allowDebug: true,
});

test("a lost node's keys come back: a backup after every change, restored into a broker on another node by 2 of 3 custodians who verified it", async () => {
  const recovery: RecoveryConfig = {
    custodians: custodians.map((custodian) => custodian.publicJwk),
    quorum: 2,
    backupFile: join(scratch, "backups", "key-broker-backup.json"),
  };
  const firstNode = new Uint8Array(randomBytes(32));
  const lostDirectory = join(scratch, "node-1-keys");
  const lost = await startBroker(nodeProvider(firstNode), lostDirectory, recovery);
  for (const [name, value] of [
    ["tenant-hospital-a", undefined],
    ["redis-credentials", Buffer.from("redis://:sentinel-password@redis:6380").toString("base64")],
  ] as const) {
    const created = await requestJson(
      "PUT",
      `${lost.url}/keys/${name}`,
      { policy: releasePolicy(), ...(value === undefined ? {} : { value }) },
      admin,
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
  }
  const rotated = await requestJson("POST", `${lost.url}/keys/tenant-hospital-a/rotate`, {}, admin);
  assert.equal(rotated.status, 201);
  const metadataBefore = (await requestJson("GET", `${lost.url}/keys/tenant-hospital-a`, undefined, admin))
    .body;
  const before = {
    tenantV1: await released(lost.url, "tenant-hospital-a", 1),
    tenantV2: await released(lost.url, "tenant-hospital-a", 2),
    redis: await released(lost.url, "redis-credentials"),
  };

  // The backup: served to the admin and written to the backup file after the last change; ciphertext only.
  const served = await requestJson("GET", `${lost.url}/recovery/backup`, undefined, admin);
  assert.equal(served.status, 200);
  const backup: RecoveryBackup = parseRecoveryBackup(served.body);
  assert.equal(backup.quorum, 2);
  assert.equal(backup.shares.length, 3);
  assert.ok(existsSync(recovery.backupFile ?? ""));
  const fromFile = parseRecoveryBackup(JSON.parse(readFileSync(recovery.backupFile ?? "", "utf8")));
  assert.equal(fromFile.shares.length, 3);
  const text = JSON.stringify(backup) + readFileSync(recovery.backupFile ?? "", "utf8");
  for (const value of Object.values(before)) {
    assert.ok(!text.includes(value), "no key value in a backup");
  }
  assert.ok(!text.includes("sentinel-password"));
  await lost.close();

  // The node is gone. Another node's CPU derives another sealing key: the old store does not open there.
  const secondNode = new Uint8Array(randomBytes(32));
  assert.throws(() => new SealedKeyStore(lostDirectory, secondNode));
  const freshDirectory = join(scratch, "node-2-keys");
  const backupText = readFileSync(recovery.backupFile ?? "", "utf8");
  const fresh = await startBroker(nodeProvider(secondNode), freshDirectory, recovery);
  // Started empty, it neither replaces the backup it is to be restored from nor serves an empty one.
  const emptyBackup = await requestJson("GET", `${fresh.url}/recovery/backup`, undefined, admin);
  assert.equal(emptyBackup.status, 409);
  assert.equal(readFileSync(recovery.backupFile ?? "", "utf8"), backupText);
  const dated = readdirSync(join(scratch, "backups")).filter((name) =>
    /^key-broker-backup-\d+T\d+Z\.json$/.test(name),
  );
  assert.ok(dated.length >= 1, "dated copies are kept beside the latest");
  await assert.rejects(released(fresh.url, "tenant-hospital-a"), (error: unknown) => {
    return error instanceof EnclaveError && error.code === "ERR_KEY_NOT_FOUND";
  });

  // No share is accepted before a restore begins; the admin begins one with the backup.
  const custodian = (index: number, overrides: { measurements?: string[] } = {}) =>
    submitRecoveryShare({
      brokerUrl: fresh.url,
      ca: ca.certificatePem,
      attestationService: { url: attestationUrl, ca: ca.certificatePem },
      expectations: { ...expectations(), ...overrides },
      backup,
      custodianKey: custodians[index]?.privateJwk ?? {},
    });
  await assert.rejects(custodian(0), (error: unknown) => error instanceof EnclaveError);
  const begun = await requestJson("POST", `${fresh.url}/recovery`, { backup }, admin);
  assert.equal(begun.status, 200, JSON.stringify(begun.body));
  assert.equal((begun.body as { quorum: number }).quorum, 2);
  const unauthorized = await requestJson(
    "POST",
    `${fresh.url}/recovery`,
    { backup },
    { ca: ca.certificatePem },
  );
  assert.equal(unauthorized.status, 401);

  // A custodian who expects another measurement sends nothing.
  await assert.rejects(
    custodian(0, { measurements: ["00".repeat(32)] }),
    (error: unknown) => error instanceof EnclaveError && error.code === "ERR_PEER_MEASUREMENT",
  );
  // One verified custodian: not yet enough.
  assert.deepEqual(await custodian(0), { received: 1, quorum: 2, restored: false });
  // A forged share (random bytes sealed to the exchange key) is refused.
  const { exchangeKey } = (
    await requestJson("GET", `${fresh.url}/recovery`, undefined, { ca: ca.certificatePem })
  ).body as { exchangeKey: JWK };
  const forged = await new CompactEncrypt(
    new TextEncoder().encode(JSON.stringify({ x: 2, y: randomBytes(32).toString("base64url") })),
  )
    .setProtectedHeader({ alg: "ECDH-ES", enc: "A256GCM" })
    .encrypt(
      await importJWK(
        { kty: exchangeKey.kty, crv: exchangeKey.crv, x: exchangeKey.x, y: exchangeKey.y },
        "ECDH-ES",
      ),
    );
  const refused = await requestJson(
    "POST",
    `${fresh.url}/recovery/shares`,
    { share: forged },
    { ca: ca.certificatePem },
  );
  assert.equal(refused.status, 400);
  assert.equal((refused.body as { error: { code: string } }).error.code, "ERR_RECOVERY_INVALID");
  await assert.rejects(released(fresh.url, "tenant-hospital-a"));

  // The store's volume fails just as the quorum is reached (here its folder is replaced by a file): nothing is
  // kept, the broker says so, and the restore stays open for the share to be sent again.
  renameSync(freshDirectory, `${freshDirectory}-away`);
  writeFileSync(freshDirectory, "not a folder");
  await assert.rejects(
    custodian(2),
    (error: unknown) => error instanceof EnclaveError && /ERR_INTERNAL/.test(error.message),
  );
  assert.match(loggedSoFar(), /"errorCode":"ENOTDIR"[^\n]*the restored keys could not be written/);
  const stillOpen = await requestJson("GET", `${fresh.url}/recovery`, undefined, { ca: ca.certificatePem });
  assert.equal((stillOpen.body as { received: number }).received, 2);
  rmSync(freshDirectory);
  renameSync(`${freshDirectory}-away`, freshDirectory);

  // The volume is back: the second custodian's share again completes the quorum, and the store is rebuilt
  // and sealed on this node.
  const done = await custodian(2);
  assert.deepEqual(done, { received: 2, quorum: 2, restored: true, keys: 2 });
  assert.deepEqual(
    {
      tenantV1: await released(fresh.url, "tenant-hospital-a", 1),
      tenantV2: await released(fresh.url, "tenant-hospital-a", 2),
      redis: await released(fresh.url, "redis-credentials"),
    },
    before,
    "every version of every key, as before",
  );
  const metadata = await requestJson("GET", `${fresh.url}/keys/tenant-hospital-a`, undefined, admin);
  assert.deepEqual(metadata.body, metadataBefore, "policies, versions and dates kept");

  // A restore never overwrites: this broker holds keys now.
  const again = await requestJson("POST", `${fresh.url}/recovery`, { backup }, admin);
  assert.equal(again.status, 409);
  // Restarted on the same node, it opens what it sealed.
  await fresh.close();
  const restarted = await startBroker(nodeProvider(secondNode), freshDirectory, recovery);
  assert.equal(await released(restarted.url, "tenant-hospital-a"), before.tenantV2);

  // No value, share or password reached a log line.
  for (const value of [...Object.values(before), "sentinel-password"]) {
    assert.ok(!loggedSoFar().includes(value), "a key value in the broker's log");
  }
  assert.match(loggedSoFar(), /recovery\.restored/);
});

test("a backup that cannot be written is reported (key_broker_recovery_backup_behind), and cleared by the next write", async () => {
  // The backup's folder is a file: every write fails until it is a folder again.
  const blocked = join(scratch, "blocked-backups");
  writeFileSync(blocked, "not a folder");
  const recovery: RecoveryConfig = {
    custodians: custodians.map((custodian) => custodian.publicJwk),
    quorum: 2,
    backupFile: join(blocked, "key-broker-backup.json"),
  };
  const broker = await startBroker(
    nodeProvider(new Uint8Array(randomBytes(32))),
    join(scratch, "behind"),
    recovery,
  );
  const behind = async (): Promise<string | undefined> => {
    const metrics = await requestBytes("GET", `${broker.url}/metrics`, undefined, { ca: ca.certificatePem });
    return /^key_broker_recovery_backup_behind (\d)$/m.exec(Buffer.from(metrics.body).toString("utf8"))?.[1];
  };
  const create = async (name: string): Promise<void> => {
    const created = await requestJson(
      "PUT",
      `${broker.url}/keys/${name}`,
      { policy: releasePolicy() },
      admin,
    );
    assert.equal(created.status, 201);
    // The backup follows the change in the background.
    const served = await requestJson("GET", `${broker.url}/recovery/backup`, undefined, admin);
    assert.equal(served.status, 200);
  };
  await create("first-key");
  assert.equal(await behind(), "1");
  assert.match(loggedSoFar(), /the recovery backup could not be written/);
  rmSync(blocked);
  await create("second-key");
  assert.equal(await behind(), "0");
  assert.ok(existsSync(recovery.backupFile ?? ""));
});

test("without custodians there is no backup to read and no restore to begin", async () => {
  const broker = await startBroker(nodeProvider(new Uint8Array(randomBytes(32))), join(scratch, "bare"));
  const backup = await requestJson("GET", `${broker.url}/recovery/backup`, undefined, admin);
  assert.equal(backup.status, 409);
  assert.equal((backup.body as { error: { code: string } }).error.code, "ERR_RECOVERY_STATE");
});

test("the recovery configuration: public custodian keys only, a quorum within their number, a default backup file", () => {
  const files: Record<string, string> = {
    "public.json": JSON.stringify({ keys: custodians.map((custodian) => custodian.publicJwk) }),
    "private.json": JSON.stringify({ keys: [custodians[1]?.privateJwk] }),
    "empty.json": JSON.stringify({ keys: [] }),
  };
  const read = (path: string): string => files[path] ?? "";
  assert.equal(recoveryConfigFromEnv({}, read, "/data/backup.json"), undefined);
  assert.deepEqual(
    recoveryConfigFromEnv({ CLOISTER_RECOVERY_CUSTODIANS_FILE: "public.json" }, read, "/data/backup.json"),
    {
      custodians: custodians.map((custodian) => custodian.publicJwk),
      quorum: 2,
      backupFile: "/data/backup.json",
    },
  );
  assert.equal(
    recoveryConfigFromEnv(
      { CLOISTER_RECOVERY_CUSTODIANS_FILE: "public.json", CLOISTER_RECOVERY_QUORUM: "3" },
      read,
      "/data/backup.json",
    )?.quorum,
    3,
  );
  for (const env of [
    { CLOISTER_RECOVERY_CUSTODIANS_FILE: "private.json" },
    { CLOISTER_RECOVERY_CUSTODIANS_FILE: "empty.json" },
    { CLOISTER_RECOVERY_CUSTODIANS_FILE: "public.json", CLOISTER_RECOVERY_QUORUM: "4" },
    { CLOISTER_RECOVERY_CUSTODIANS_FILE: "public.json", CLOISTER_RECOVERY_QUORUM: "0" },
  ]) {
    assert.throws(() => recoveryConfigFromEnv(env, read, "/data/backup.json"), JSON.stringify(env));
  }
});
