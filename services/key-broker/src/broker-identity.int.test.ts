// Workloads verify the key broker before they take a key from it: its attestation token must pass their
// expectations and bind the key that signs its answers. TLS alone would not do, since the host provides the
// TLS keys: a host posing as the broker could hand a workload data keys it knows.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  EnclaveError,
  keyBrokerExpectationsFromEnv,
  PeerVerifier,
  releaseKey,
  requestJson,
  simulationProvider,
  type Attestation,
  type KeyBrokerClient,
  type SimulatedIdentity,
} from "@cloister/enclave";
import { listenOnLoopback } from "@cloister/service-kit";
import { buildApp as buildAttestationService } from "../../attestation-service/src/app.js";
import { buildApp, createBrokerSigningKey, type BrokerIdentity } from "./app.js";
import { attestBroker, brokerTestBed, startAttestedWorkload, verifiedBrokerClient } from "./test-support.js";

const bed = brokerTestBed("BrokerIdentity");
const { scratch, platform, ca, tls, logStream, logged } = bed;
const adminToken = "test-admin-token-identity-0123456789";
const signer = "51".repeat(32);
const genuine = { mrenclave: "b2".repeat(32), mrsigner: signer, productId: 2, svn: 1 };
const workloadMeasurement = "7c".repeat(32);
let attestationService = { url: "", ca: ca.certificatePem };
let workload: Attestation;
const closers: (() => unknown)[] = [];

before(async () => {
  const started = await startAttestedWorkload(bed, buildAttestationService, workloadMeasurement);
  attestationService = { url: started.url, ca: ca.certificatePem };
  workload = started.workload;
  closers.push(started.close);
});
after(async () => {
  for (const close of closers.reverse()) {
    await close();
  }
  rmSync(scratch, { recursive: true, force: true });
});

/** A broker over HTTPS holding the named secret `db-password` = `value` for the workload. */
async function startBroker(value: string, identity: BrokerIdentity | undefined): Promise<string> {
  const { app, url } = await listenOnLoopback(async () =>
    buildApp({
      provider: simulationProvider(platform, genuine),
      ...(identity === undefined ? {} : { identity }),
      dataDirectory: join(scratch, `keys-${randomBytes(4).toString("hex")}`),
      adminToken,
      authorityCa: ca.certificatePem,
      logger: { level: "info", stream: logStream },
      https: tls,
    }),
  );
  closers.push(() => app.close());
  const created = await app.inject({
    method: "PUT",
    url: "/keys/db-password",
    headers: { authorization: `Bearer ${adminToken}` },
    payload: {
      value: Buffer.from(value).toString("base64"),
      policy: {
        version: "1.0.0",
        anyOf: [
          {
            authority: attestationService.url,
            allOf: [{ claim: "x-ms-sgx-mrenclave", equals: workloadMeasurement }],
          },
        ],
      },
    },
  });
  assert.equal(created.statusCode, 201, created.body);
  return url;
}

/** A broker attested from a TEE with `tee` (the genuine one by default). */
async function attestedBroker(value: string, tee: SimulatedIdentity = genuine): Promise<string> {
  const attested = await attestBroker(simulationProvider(platform, tee), attestationService);
  closers.push(attested.stop);
  return startBroker(value, attested.identity);
}

async function releasedValue(client: KeyBrokerClient): Promise<string> {
  const value = await releaseKey(client, "db-password", workload.token(), workload.keys.release.privateKey);
  return Buffer.from(value).toString();
}

async function refusal(client: KeyBrokerClient): Promise<string> {
  const error = await releasedValue(client).then(
    () => undefined,
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof EnclaveError, `refused with an EnclaveError, not ${String(error)}`);
  assert.equal(error.code, "ERR_KEY_BROKER_IDENTITY", error.message);
  return error.message;
}

function signerClient(url: string, environment: Record<string, string>): KeyBrokerClient {
  return {
    url,
    ca: ca.certificatePem,
    identity: new PeerVerifier({
      attestationService,
      expectations: keyBrokerExpectationsFromEnv({
        CLOISTER_PEER_ALLOW_SIMULATION: "true",
        CLOISTER_PEER_ALLOW_DEBUG: "true",
        ...environment,
      }),
    }),
  };
}

describe("the key broker's identity, as workloads verify it", () => {
  test("the attested broker's keys are taken: by its measurement, or by its signer and product id", async () => {
    const url = await attestedBroker("genuine-secret");
    assert.equal(
      await releasedValue(verifiedBrokerClient(url, genuine.mrenclave, attestationService)),
      "genuine-secret",
    );
    assert.equal(
      await releasedValue(signerClient(url, { CLOISTER_KEY_BROKER_SIGNERS: signer.toUpperCase() })),
      "genuine-secret",
      "any broker enclave the configured key signed (an upgrade keeps working)",
    );
  });

  test("a broker with another measurement, signer or product id is refused before any key is asked for", async () => {
    const other = await attestedBroker("rogue-secret", { ...genuine, mrenclave: "ee".repeat(32) });
    const releaseAttempts = (): number => (logged().match(/"audit":"key\.release/g) ?? []).length;
    const attemptsBefore = releaseAttempts();
    assert.match(
      await refusal(verifiedBrokerClient(other, genuine.mrenclave, attestationService)),
      /ERR_PEER_MEASUREMENT/,
    );
    const otherSigner = await attestedBroker("rogue-secret", { ...genuine, mrsigner: "99".repeat(32) });
    await refusal(signerClient(otherSigner, { CLOISTER_KEY_BROKER_SIGNERS: signer }));
    // The same signer's other enclaves (here the inference server's product id) are not the key broker.
    const otherProduct = await attestedBroker("rogue-secret", { ...genuine, productId: 3 });
    await refusal(signerClient(otherProduct, { CLOISTER_KEY_BROKER_SIGNERS: signer }));
    assert.equal(releaseAttempts(), attemptsBefore, "no release was asked of a broker that did not verify");
  });

  test("a host posing as the broker is refused: with the genuine token but its own signing key, or no token", async () => {
    const genuineUrl = await attestedBroker("genuine-secret");
    const served = await requestJson("GET", new URL("/attestation", genuineUrl), undefined, {
      ca: ca.certificatePem,
    });
    const genuineToken = (served.body as { token: string }).token;
    // A broker of the host's own, answering with keys the host knows and replaying the genuine broker's token:
    // the token binds the genuine broker's signing key, not this one.
    const impostor = await startBroker("host-known-secret", {
      signing: await createBrokerSigningKey(),
      token: () => genuineToken,
    });
    assert.match(
      await refusal(verifiedBrokerClient(impostor, genuine.mrenclave, attestationService)),
      /ERR_PEER_KEY_BINDING/,
    );
    const unattested = await startBroker("host-known-secret", undefined);
    assert.match(
      await refusal(verifiedBrokerClient(unattested, genuine.mrenclave, attestationService)),
      /\/attestation answered 503/,
    );
  });

  test("simulated or debuggable brokers are refused unless the development stack allows them", async () => {
    const url = await attestedBroker("genuine-secret");
    assert.match(
      await refusal({
        url,
        ca: ca.certificatePem,
        identity: new PeerVerifier({
          attestationService,
          expectations: { measurements: [genuine.mrenclave], allowDebug: true },
        }),
      }),
      /ERR_PEER_SIMULATION/,
    );
    assert.match(
      await refusal(
        signerClient(url, { CLOISTER_KEY_BROKER_SIGNERS: signer, CLOISTER_PEER_ALLOW_DEBUG: "" }),
      ),
      /ERR_PEER_DEBUG/,
    );
  });

  test("a workload without expectations of the broker does not start", () => {
    assert.throws(
      () => keyBrokerExpectationsFromEnv({ CLOISTER_KEY_BROKER_SIGNERS: " , " }),
      (error: unknown) => error instanceof EnclaveError && error.code === "ERR_KEY_BROKER_IDENTITY",
    );
  });
});
