import assert from "node:assert/strict";
import { generateKeyPairSync, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { exportJWK, jwtVerify, createLocalJWKSet, SignJWT, type JWK } from "jose";
import { issueAttestationToken, verifyAttestationToken } from "../index.js";
import { assertAttestationError } from "../test-support/assert-error.js";

const issuer = "https://attest.cloister.test";
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const kid = "test-key-1";
const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
const jwks = { keys: [publicJwk] };
const signer = { privateKey, kid, issuer, jku: `${issuer}/certs`, lifetimeSeconds: 600 };
const now = new Date("2026-06-01T12:00:00Z");
const claims = { "x-ms-sgx-mrenclave": "aa".repeat(32), "x-ms-sgx-is-debuggable": false };

function b64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

describe("attestation tokens", () => {
  test("issue → verify round trip, and another JOSE verifier agrees", async () => {
    const token = await issueAttestationToken(claims, signer, { now });
    const [header] = token.split(".");
    assert.deepEqual(JSON.parse(Buffer.from(header ?? "", "base64url").toString()), {
      alg: "RS256",
      typ: "JWT",
      kid,
      jku: `${issuer}/certs`,
    });
    const verified = await verifyAttestationToken(token, {
      jwks,
      issuer,
      now,
      expect: { "x-ms-sgx-is-debuggable": false },
    });
    assert.equal(verified["x-ms-sgx-mrenclave"], claims["x-ms-sgx-mrenclave"]);
    assert.equal(verified.exp, Math.floor(now.getTime() / 1000) + 600);
    assert.match(String(verified.jti), /^[0-9a-f]{64}$/);
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer, currentDate: now });
    assert.equal(payload.iss, issuer);
  });

  test("expired and not-yet-valid tokens → ERR_TOKEN_EXPIRED", async () => {
    const token = await issueAttestationToken(claims, signer, { now });
    await assertAttestationError(
      () => verifyAttestationToken(token, { jwks, issuer, now: new Date(now.getTime() + 601_000) }),
      "ERR_TOKEN_EXPIRED",
    );
    await assertAttestationError(
      () => verifyAttestationToken(token, { jwks, issuer, now: new Date(now.getTime() - 60_000) }),
      "ERR_TOKEN_EXPIRED",
    );
  });

  test("wrong issuer, audience or expected claim → ERR_TOKEN_CLAIM", async () => {
    const token = await issueAttestationToken(claims, signer, { now });
    await assertAttestationError(
      () => verifyAttestationToken(token, { jwks, issuer: "https://other", now }),
      "ERR_TOKEN_CLAIM",
    );
    await assertAttestationError(
      () => verifyAttestationToken(token, { jwks, issuer, now, audience: "platform" }),
      "ERR_TOKEN_CLAIM",
    );
    await assertAttestationError(
      () =>
        verifyAttestationToken(token, {
          jwks,
          issuer,
          now,
          expect: { "x-ms-sgx-mrenclave": "bb".repeat(32) },
        }),
      "ERR_TOKEN_CLAIM",
    );
  });

  test("alg: none → ERR_TOKEN_INVALID", async () => {
    const iat = Math.floor(now.getTime() / 1000);
    const unsigned = `${b64url({ alg: "none", kid })}.${b64url({ ...claims, iss: issuer, iat, exp: iat + 60 })}.`;
    await assertAttestationError(
      () => verifyAttestationToken(unsigned, { jwks, issuer, now }),
      "ERR_TOKEN_INVALID",
    );
  });

  test("HS256 signed with the RSA public key as the secret → ERR_TOKEN_INVALID", async () => {
    const iat = Math.floor(now.getTime() / 1000);
    const input = `${b64url({ alg: "HS256", kid })}.${b64url({ ...claims, iss: issuer, iat, exp: iat + 60 })}`;
    const secret = publicKey.export({ format: "pem", type: "spki" });
    const forged = `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    await assertAttestationError(
      () => verifyAttestationToken(forged, { jwks, issuer, now }),
      "ERR_TOKEN_INVALID",
    );
  });

  test("unknown kid, and a jku pointing elsewhere, → ERR_TOKEN_KEY_UNKNOWN", async () => {
    const attacker = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const iat = Math.floor(now.getTime() / 1000);
    const forged = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: "RS256", kid: "attacker", jku: "https://attacker.example/certs" })
      .setIssuer(issuer)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 60)
      .sign(attacker.privateKey);
    await assertAttestationError(
      () => verifyAttestationToken(forged, { jwks, issuer, now }),
      "ERR_TOKEN_KEY_UNKNOWN",
    );
  });

  test("our kid but another key's signature, stripped or re-encoded signatures → ERR_TOKEN_SIGNATURE", async () => {
    const attacker = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const forged = await issueAttestationToken(
      claims,
      { ...signer, privateKey: attacker.privateKey },
      { now },
    );
    await assertAttestationError(
      () => verifyAttestationToken(forged, { jwks, issuer, now }),
      "ERR_TOKEN_SIGNATURE",
    );
    const token = await issueAttestationToken(claims, signer, { now });
    const [header, payload, signature] = token.split(".") as [string, string, string];
    await assertAttestationError(
      () => verifyAttestationToken(`${header}.${payload}.`, { jwks, issuer, now }),
      ["ERR_TOKEN_SIGNATURE", "ERR_TOKEN_INVALID"],
    );
    const reencoded = Buffer.from(signature, "base64url").toString("base64");
    await assertAttestationError(
      () => verifyAttestationToken(`${header}.${payload}.${reencoded}`, { jwks, issuer, now }),
      ["ERR_TOKEN_SIGNATURE", "ERR_TOKEN_INVALID"],
    );
    const tamperedPayload = b64url({
      ...JSON.parse(Buffer.from(payload, "base64url").toString()),
      "x-ms-sgx-is-debuggable": true,
    });
    await assertAttestationError(
      () => verifyAttestationToken(`${header}.${tamperedPayload}.${signature}`, { jwks, issuer, now }),
      "ERR_TOKEN_SIGNATURE",
    );
  });

  test("garbage never escapes as anything but an AttestationError", async () => {
    for (const garbage of [
      "",
      "a.b",
      "a.b.c",
      "....",
      `${b64url({ alg: "RS256" })}.e30.AAAA`,
      42 as unknown as string,
    ]) {
      await assertAttestationError(
        () => verifyAttestationToken(garbage, { jwks, issuer, now }),
        ["ERR_TOKEN_INVALID", "ERR_TOKEN_KEY_UNKNOWN"],
      );
    }
  });

  test("issuing refuses to let claims override registered claims", async () => {
    await assertAttestationError(() => issueAttestationToken({ exp: 1 }, signer, { now }), "ERR_TOKEN_CLAIM");
  });

  test("jwksUri: keys are fetched from the issuer's JWKS endpoint", async () => {
    const server = createServer((request, response) => {
      response.writeHead(request.url === "/certs" ? 200 : 404, { "content-type": "application/json" });
      response.end(request.url === "/certs" ? JSON.stringify(jwks) : "{}");
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    try {
      const { port } = server.address() as AddressInfo;
      const token = await issueAttestationToken(claims, signer, { now });
      const verified = await verifyAttestationToken(token, {
        jwksUri: `http://127.0.0.1:${port}/certs`,
        issuer,
        now,
      });
      assert.equal(verified.iss, issuer);
      await assertAttestationError(
        () => verifyAttestationToken(token, { jwksUri: `http://127.0.0.1:${port}/missing`, issuer, now }),
        "ERR_TOKEN_KEY_UNKNOWN",
      );
    } finally {
      server.close();
    }
  });

  test("issuing with an unusable key is a typed error", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    await assertAttestationError(
      () => issueAttestationToken(claims, { ...signer, privateKey: ec.privateKey }, { now }),
      "ERR_TOKEN_INVALID",
    );
  });

  test("the verify module is browser-safe: no node: imports on its path", () => {
    const directory = dirname(fileURLToPath(import.meta.url));
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) {
        return;
      }
      seen.add(file);
      const source = readFileSync(file, "utf8");
      for (const match of source.matchAll(/^import\s+(type\s+)?[^;]*?from\s+"([^"]+)";/gms)) {
        const [, typeOnly, specifier = ""] = match;
        if (typeOnly !== undefined) {
          continue;
        }
        assert.ok(!specifier.startsWith("node:"), `${file} imports ${specifier}`);
        if (specifier.startsWith(".")) {
          visit(join(dirname(file), specifier.replace(/\.js$/, ".ts")));
        } else {
          assert.equal(specifier, "jose", `${file} imports ${specifier}`);
        }
      }
    };
    visit(join(directory, "verify-token.ts"));
    assert.ok(seen.size >= 2);
  });
});
