import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import { exportJWK, type JWK } from "jose";
import { issueAttestationToken, simulationClaim } from "@cloister/attestation";
import { generateOhttpKeyPair } from "@cloister/ohttp";
import { EnclaveError, verifyPeer, type PeerExpectations } from "./index.js";

const issuer = "https://attest.cloister.test";
const signing = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwks = { keys: [{ ...(await exportJWK(signing.publicKey)), kid: "k1", alg: "RS256" }] };
const signer = { privateKey: signing.privateKey, kid: "k1", issuer };
const mrenclave = "ab".repeat(32);
const peerKey = generateKeyPairSync("rsa", { modulusLength: 2048 });
const peerJwk: JWK = await exportJWK(peerKey.publicKey);
const ohttp = await generateOhttpKeyPair();
const ohttpConfig = Buffer.from(ohttp.keyConfig).toString("base64url");

function sgxClaims(overrides: Record<string, unknown> = {}): Record<string, never> {
  return {
    "x-ms-attestation-type": "sgx",
    "x-ms-sgx-mrenclave": mrenclave,
    "x-ms-sgx-mrsigner": "cd".repeat(32),
    "x-ms-sgx-is-debuggable": false,
    "x-ms-runtime": { keys: [peerJwk], ohttp: ohttpConfig },
    ...overrides,
  } as unknown as Record<string, never>;
}

const expectations: PeerExpectations = {
  jwks,
  issuer,
  measurements: [mrenclave],
  boundKey: peerJwk,
  ohttpKeyConfig: ohttpConfig,
};

async function rejectsWith(token: Promise<string>, options: PeerExpectations, code: string): Promise<void> {
  const jwt = await token;
  await assert.rejects(
    verifyPeer(jwt, options),
    (error: unknown) => error instanceof EnclaveError && error.code === code,
  );
}

describe("verifyPeer", () => {
  test("accepts an allowed, non-debug peer whose keys are bound", async () => {
    const peer = await verifyPeer(await issueAttestationToken(sgxClaims(), signer), expectations);
    assert.equal(peer.attestationType, "sgx");
    assert.equal(peer.measurement, mrenclave);
    assert.equal(peer.debuggable, false);
    assert.equal(peer.simulated, false);
    assert.equal(peer.runtime.ohttp, ohttpConfig);
  });

  test("rejects another measurement or signer", async () => {
    await rejectsWith(
      issueAttestationToken(sgxClaims({ "x-ms-sgx-mrenclave": "00".repeat(32) }), signer),
      expectations,
      "ERR_PEER_MEASUREMENT",
    );
    await rejectsWith(
      issueAttestationToken(sgxClaims(), signer),
      { ...expectations, signers: ["ee".repeat(32)] },
      "ERR_PEER_MEASUREMENT",
    );
  });

  test("rejects debuggable and simulated peers unless allowed", async () => {
    const debug = issueAttestationToken(sgxClaims({ "x-ms-sgx-is-debuggable": true }), signer);
    await rejectsWith(debug, expectations, "ERR_PEER_DEBUG");
    assert.equal((await verifyPeer(await debug, { ...expectations, allowDebug: true })).debuggable, true);
    const simulated = issueAttestationToken(
      sgxClaims({ "x-ms-sgx-is-debuggable": true, [simulationClaim]: true }),
      signer,
    );
    await rejectsWith(simulated, { ...expectations, allowDebug: true }, "ERR_PEER_SIMULATION");
    assert.equal(
      (await verifyPeer(await simulated, { ...expectations, allowDebug: true, allowSimulation: true }))
        .simulated,
      true,
    );
  });

  test("rejects a token for measurement A presented with keys of B", async () => {
    const otherKey: JWK = await exportJWK(generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey);
    await rejectsWith(
      issueAttestationToken(sgxClaims(), signer),
      { ...expectations, boundKey: otherKey },
      "ERR_PEER_KEY_BINDING",
    );
    await rejectsWith(
      issueAttestationToken(sgxClaims(), signer),
      {
        ...expectations,
        ohttpKeyConfig: Buffer.from((await generateOhttpKeyPair()).keyConfig).toString("base64url"),
      },
      "ERR_PEER_KEY_BINDING",
    );
  });

  test("rejects other TEE types, bad tokens, and a missing measurement", async () => {
    await rejectsWith(
      issueAttestationToken(sgxClaims(), signer),
      { ...expectations, attestationTypes: ["tdxvm"] },
      "ERR_PEER_TEE",
    );
    await rejectsWith(
      issueAttestationToken(sgxClaims(), signer),
      { ...expectations, issuer: "https://other" },
      "ERR_PEER_TOKEN",
    );
    await rejectsWith(
      issueAttestationToken(sgxClaims({ "x-ms-sgx-mrenclave": 5 }), signer),
      expectations,
      "ERR_PEER_MEASUREMENT",
    );
    await assert.rejects(
      verifyPeer("not.a.token", expectations),
      (error: unknown) => error instanceof EnclaveError && error.code === "ERR_PEER_TOKEN",
    );
  });

  test('"any" measurement must be said explicitly and then accepts every measurement', async () => {
    const token = await issueAttestationToken(sgxClaims({ "x-ms-sgx-mrenclave": "11".repeat(32) }), signer);
    assert.equal(
      (await verifyPeer(token, { ...expectations, measurements: "any" })).measurement,
      "11".repeat(32),
    );
  });

  test("TDX and SEV-SNP peers use their own measurement and debug claims", async () => {
    const tdx = await issueAttestationToken(
      { "x-ms-attestation-type": "tdxvm", tdx_mrtd: "cd".repeat(48), tdx_td_attributes_debug: false },
      signer,
    );
    assert.equal(
      (await verifyPeer(tdx, { jwks, issuer, measurements: ["CD".repeat(48)] })).attestationType,
      "tdxvm",
    );
    const snp = await issueAttestationToken(
      {
        "x-ms-attestation-type": "sevsnpvm",
        "x-ms-sevsnpvm-launchmeasurement": "ef".repeat(48),
        "x-ms-sevsnpvm-is-debuggable": true,
      },
      signer,
    );
    await rejectsWith(
      Promise.resolve(snp),
      { jwks, issuer, measurements: ["ef".repeat(48)] },
      "ERR_PEER_DEBUG",
    );
  });

  test("the verify-peer module is browser-safe: no node: imports on its path", async () => {
    const { readFileSync } = await import("node:fs");
    const source = readFileSync(new URL("./verify-peer.ts", import.meta.url), "utf8");
    const imports = [...source.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)";/gms)].map(
      (match) => match[1],
    );
    assert.deepEqual(
      imports.sort(),
      ["./errors.js", "./errors.js", "@cloister/attestation/token-verify", "jose"].sort(),
    );
    const errors = readFileSync(new URL("./errors.ts", import.meta.url), "utf8");
    assert.doesNotMatch(errors, /from "node:/);
  });
});
