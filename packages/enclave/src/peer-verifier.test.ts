// PeerVerifier: the JWKS is fetched once and again only for an unknown kid; decisions are cached per exact
// token until its exp, and never past it.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { exportJWK } from "jose";
import { issueAttestationToken } from "@cloister/attestation";
import { EnclaveError, PeerVerifier } from "./index.js";

const first = generateKeyPairSync("rsa", { modulusLength: 2048 });
const second = generateKeyPairSync("rsa", { modulusLength: 2048 });
let keys = [{ ...(await exportJWK(first.publicKey)), kid: "k1", alg: "RS256" }];
let fetches = 0;
const server = createServer((_request, response) => {
  fetches++;
  response.setHeader("content-type", "application/json");
  response.end(JSON.stringify({ keys }));
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
after(() => server.close());
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const mrenclave = "ab".repeat(32);
const claims = {
  "x-ms-attestation-type": "sgx",
  "x-ms-sgx-mrenclave": mrenclave,
  "x-ms-sgx-is-debuggable": false,
} as unknown as Record<string, never>;

test("caches the key set and each decision until the token expires, and refetches keys for a new kid", async () => {
  let now = new Date("2026-11-29T12:00:00Z");
  const verifier = new PeerVerifier({
    attestationService: { url },
    expectations: { measurements: [mrenclave] },
    now: () => now,
    jwksRefetchIntervalMs: 0,
  });
  const token = await issueAttestationToken(
    claims,
    { privateKey: first.privateKey, kid: "k1", issuer: url, lifetimeSeconds: 600 },
    { now },
  );
  const identity = await verifier.verify(token);
  assert.equal(identity.measurement, mrenclave);
  assert.equal(await verifier.verify(token), identity, "the second check is the cached decision");
  assert.equal(fetches, 1);

  // The issuer rotates its signing key: an unknown kid makes the verifier fetch /certs again.
  keys = [...keys, { ...(await exportJWK(second.publicKey)), kid: "k2", alg: "RS256" }];
  const rotated = await issueAttestationToken(
    claims,
    { privateKey: second.privateKey, kid: "k2", issuer: url, lifetimeSeconds: 600 },
    { now },
  );
  assert.equal((await verifier.verify(rotated)).measurement, mrenclave);
  assert.equal(fetches, 2);

  // Past exp the cached decision is dropped and the token is refused.
  now = new Date(now.getTime() + 601_000);
  await assert.rejects(
    verifier.verify(token),
    (error: unknown) => error instanceof EnclaveError && error.code === "ERR_PEER_TOKEN",
  );
});

test("a key id not yet fetched for refetches within the interval (a new replica's key), once; a repeated one waits", async () => {
  const third = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const fourth = generateKeyPairSync("rsa", { modulusLength: 2048 });
  keys = [{ ...(await exportJWK(first.publicKey)), kid: "k1", alg: "RS256" }];
  const verifier = new PeerVerifier({
    attestationService: { url },
    expectations: { measurements: [mrenclave] },
    jwksRefetchIntervalMs: 3_600_000,
    jwksNewKidIntervalMs: 0,
  });
  const tokenOf = (privateKey: typeof first.privateKey, kid: string) =>
    issueAttestationToken(claims, { privateKey, kid, issuer: url });
  const before = fetches;
  await verifier.verify(await tokenOf(first.privateKey, "k1"));
  assert.equal(fetches, before + 1);
  // Another replica starts: its key id is new, so the set is fetched again at once.
  keys = [...keys, { ...(await exportJWK(third.publicKey)), kid: "k3", alg: "RS256" }];
  assert.equal((await verifier.verify(await tokenOf(third.privateKey, "k3"))).measurement, mrenclave);
  assert.equal(fetches, before + 2);
  // A key id the service does not serve: one fetch, then refused without fetching again.
  const stranger = await tokenOf(fourth.privateKey, "k4");
  for (let attempt = 0; attempt < 3; attempt++) {
    await assert.rejects(
      verifier.verify(stranger),
      (error: unknown) => error instanceof EnclaveError && error.code === "ERR_PEER_TOKEN",
    );
  }
  assert.equal(fetches, before + 3);
});

test("refuses tokens for other measurements, and does not cache refusals", async () => {
  const verifier = new PeerVerifier({
    attestationService: { url },
    expectations: { measurements: ["cd".repeat(32)] },
  });
  const token = await issueAttestationToken(claims, { privateKey: first.privateKey, kid: "k1", issuer: url });
  for (let attempt = 0; attempt < 2; attempt++) {
    await assert.rejects(
      verifier.verify(token),
      (error: unknown) => error instanceof EnclaveError && error.code === "ERR_PEER_MEASUREMENT",
    );
  }
});
