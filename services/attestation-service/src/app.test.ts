import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CompactSign, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from "jose";
import {
  createSimulationPlatform,
  parseCertificate,
  parseQuote,
  simulationClaim,
  toPem,
} from "@cloister/attestation";
import { simulationProvider } from "@cloister/enclave";
import { buildApp, kidFor, type AttestationServiceConfig } from "./app.js";
import { readDeclaredPolicies } from "./policies.js";
import { createPolicyManager } from "./test-support.js";

const vectors = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../shared/attestation-vectors");
const vector = (path: string): Buffer => readFileSync(join(vectors, path));
const issuer = "https://attest.cloister.test";
const platform = createSimulationPlatform();
const serviceIdentity = { mrenclave: "5e".repeat(32), mrsigner: "51".repeat(32), productId: 1, svn: 1 };
const workload = { mrenclave: "aa".repeat(32), mrsigner: "bb".repeat(32), productId: 2, svn: 3 };
const runtime = {
  keys: [
    {
      kty: "EC",
      crv: "P-256",
      x: "18wHLeIgW9wVN6VD1Txgpqy2LszYkMf6J8njVAibvhM",
      y: "cV4dS4UaLMgP_4fY4j8ir7cl1TXlFdAgcx55o7TkcSA",
    },
  ],
};
const runtimeBytes = Buffer.from(JSON.stringify(runtime));
const scratch = mkdtempSync(join(tmpdir(), "cloister-attest-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

function reportData(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(64);
  out.set(createHash("sha256").update(data).digest());
  return out;
}

const workloadQuote = platform.quote({ ...workload, reportData: reportData(runtimeBytes) });

function config(overrides: Partial<AttestationServiceConfig> = {}): AttestationServiceConfig {
  return {
    issuer,
    provider: simulationProvider(platform, serviceIdentity),
    policyMode: "dev",
    simulationPlatform: platform,
    ...overrides,
  };
}

async function jwksOf(app: Awaited<ReturnType<typeof buildApp>>): Promise<JSONWebKeySet> {
  return (await app.inject({ method: "GET", url: "/certs" })).json<JSONWebKeySet>();
}

function b64url(bytes: Uint8Array | Buffer): string {
  return Buffer.from(bytes).toString("base64url");
}

describe("attestation service (MAA REST API)", async () => {
  const app = await buildApp(config());
  after(() => app.close());

  test("POST /attest/SgxEnclave: a simulated quote with JSON runtime data gets an MAA-shaped token", async () => {
    for (const url of ["/attest/SgxEnclave?api-version=2022-08-01", "/attest/SgxEnclave"]) {
      const response = await app.inject({
        method: "POST",
        url,
        payload: {
          quote: b64url(workloadQuote),
          runtimeData: { data: b64url(runtimeBytes), dataType: "JSON" },
          nonce: "n-1",
        },
      });
      assert.equal(response.statusCode, 200, response.body);
      const { token } = response.json<{ token: string }>();
      const header = decodeProtectedHeader(token);
      assert.equal(header.alg, "RS256");
      assert.equal(header.jku, `${issuer}/certs`);
      assert.equal(header.typ, "JWT");
      const { payload } = await jwtVerify(token, createLocalJWKSet(await jwksOf(app)), { issuer });
      assert.equal(payload["x-ms-sgx-mrenclave"], workload.mrenclave);
      assert.equal(payload["x-ms-sgx-is-debuggable"], true);
      assert.equal(payload["x-ms-sgx-product-id"], 2);
      assert.deepEqual(payload["x-ms-runtime"], runtime);
      assert.equal(payload[simulationClaim], true);
      assert.equal(payload["x-ms-attestation-type"], "sgx");
      assert.equal(payload["x-ms-ver"], "1.0");
      assert.equal(payload.nonce, "n-1");
      assert.equal(typeof payload["x-ms-policy-hash"], "string");
      assert.equal(payload["sgx-mrenclave"], workload.mrenclave, "issued by the default policy");
      assert.equal(typeof (payload["x-ms-sgx-collateral"] as Record<string, string>).quotehash, "string");
      assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 3600);
    }
  });

  test("Binary runtime data gives x-ms-sgx-ehd; OpenEnclave reports are accepted", async () => {
    const binary = Uint8Array.of(1, 2, 3);
    const quote = platform.quote({ ...workload, reportData: reportData(binary) });
    const response = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(quote), runtimeData: { data: b64url(binary), dataType: "Binary" } },
    });
    assert.equal(response.statusCode, 200, response.body);
    const claims = JSON.parse(
      Buffer.from(response.json<{ token: string }>().token.split(".")[1] ?? "", "base64url").toString(),
    ) as Record<string, unknown>;
    assert.equal(claims["x-ms-sgx-ehd"], "AQID");
    const header = Buffer.alloc(16);
    header.writeUInt32LE(1, 0);
    header.writeUInt32LE(2, 4);
    header.writeBigUInt64LE(BigInt(quote.length), 8);
    const oe = await app.inject({
      method: "POST",
      url: "/attest/OpenEnclave",
      payload: { report: b64url(Buffer.concat([header, quote])) },
    });
    assert.equal(oe.statusCode, 200, oe.body);
  });

  test("unbound runtime data, tampered quotes and malformed requests are rejected with typed errors", async () => {
    const unbound = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: {
        quote: b64url(workloadQuote),
        runtimeData: { data: b64url(Buffer.from("{}")), dataType: "JSON" },
      },
    });
    assert.equal(unbound.statusCode, 400);
    assert.equal(unbound.headers["x-ms-error-code"], "ERR_RUNTIME_DATA_BINDING");
    assert.equal(unbound.json<{ error: { code: string } }>().error.code, "ERR_RUNTIME_DATA_BINDING");
    const tampered = Buffer.from(workloadQuote);
    tampered[100] = (tampered[100] ?? 0) ^ 1;
    const bad = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(tampered) },
    });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json<{ error: { code: string } }>().error.code, "ERR_EVIDENCE_INVALID");
    assert.match(bad.json<{ error: { message: string } }>().error.message, /ERR_QUOTE_SIGNATURE/);
    for (const payload of [
      {},
      { quote: 5 },
      { quote: "!!" },
      { quote: b64url(workloadQuote), runtimeData: { data: "AA", dataType: "XML" } },
    ]) {
      const response = await app.inject({ method: "POST", url: "/attest/SgxEnclave", payload });
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
    }
    const unknown = await app.inject({ method: "POST", url: "/attest/Nitro", payload: {} });
    assert.equal(unknown.statusCode, 404);
    const notJson = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      headers: { "content-type": "application/json" },
      payload: "{",
    });
    assert.equal(notJson.statusCode, 400);
    assert.equal(notJson.headers["x-ms-error-code"], "ERR_BAD_REQUEST");
  });

  test("init-time data must be bound (SGX CONFIGID); unbound init-time data is refused", async () => {
    const response = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: {
        quote: b64url(workloadQuote),
        initTimeData: { data: b64url(Buffer.from('{"config":1}')), dataType: "JSON" },
      },
    });
    assert.equal(response.statusCode, 400);
    assert.equal(
      response.json<{ error: { code: string; message: string } }>().error.code,
      "ERR_RUNTIME_DATA_BINDING",
    );
    assert.match(response.json<{ error: { message: string } }>().error.message, /init-time/);
  });

  test("GET /certs: every key has a kid and an x5c self-signed certificate carrying the service's own quote", async () => {
    const { keys } = await jwksOf(app);
    assert.equal(keys.length, 1);
    const key = keys[0];
    assert.ok(key?.x5c?.[0] !== undefined && typeof key.kid === "string");
    const pem = toPem(Buffer.from(key.x5c[0], "base64"));
    const certificate = new X509Certificate(pem);
    assert.ok(certificate.verify(certificate.publicKey), "self-signed");
    assert.equal(kidFor(certificate.publicKey), key.kid);
    const parsed = parseCertificate(Buffer.from(key.x5c[0], "base64"));
    const extension = parsed.extensions.get("1.3.6.1.4.1.311.105.1");
    assert.ok(extension !== undefined);
    const quote = parseQuote(extension.value);
    assert.ok(quote.tee === "sgx");
    // The quote binds the key: report data = SHA-256(SPKI PEM + NUL), whose base64 is the kid.
    assert.equal(Buffer.from(quote.body.reportData.subarray(0, 32)).toString("base64"), key.kid);
    assert.equal(Buffer.from(quote.body.mrEnclave).toString("hex"), serviceIdentity.mrenclave);
  });

  test("GET /.well-known/openid-configuration", async () => {
    const metadata = (await app.inject({ method: "GET", url: "/.well-known/openid-configuration" })).json<
      Record<string, unknown>
    >();
    assert.equal(metadata.issuer, issuer);
    assert.equal(metadata.jwks_uri, `${issuer}/certs`);
    assert.deepEqual(metadata.id_token_signing_alg_values_supported, ["RS256"]);
  });

  test("key rotation keeps the old public key in /certs, so its tokens still verify", async () => {
    const rotating = await buildApp(config());
    const before = (
      await rotating.inject({
        method: "POST",
        url: "/attest/SgxEnclave",
        payload: { quote: b64url(workloadQuote) },
      })
    ).json<{ token: string }>().token;
    await rotating.attestationService.rotateSigningKey();
    const jwks = await jwksOf(rotating);
    assert.equal(jwks.keys.length, 2);
    await jwtVerify(before, createLocalJWKSet(jwks), { issuer });
    await rotating.close();
  });

  test("the signing key survives a restart sealed to the service's signer; another signer gets a new key", async () => {
    const folder = mkdtempSync(join(tmpdir(), "cloister-signing-key-"));
    try {
      const signingKeyFile = join(folder, "signing-key.sealed");
      const first = await buildApp(config({ signingKeyFile }));
      const token = (
        await first.inject({
          method: "POST",
          url: "/attest/SgxEnclave",
          payload: { quote: b64url(workloadQuote) },
        })
      ).json<{ token: string }>().token;
      const [firstKey] = (await jwksOf(first)).keys;
      await first.close();
      assert.ok(!readFileSync(signingKeyFile).includes(Buffer.from("PRIVATE KEY")), "the key file is sealed");
      // Restarted (an upgrade: another measurement, the same signer): the same key, so the token verifies.
      const restarted = await buildApp(
        config({
          signingKeyFile,
          provider: simulationProvider(platform, { ...serviceIdentity, mrenclave: "77".repeat(32) }),
        }),
      );
      const jwks = await jwksOf(restarted);
      assert.deepEqual(
        jwks.keys.map((key) => key.kid),
        [firstKey?.kid],
      );
      // Its certificate is issued again, carrying the upgraded code's evidence.
      assert.notEqual(jwks.keys[0]?.x5c?.[0], firstKey?.x5c?.[0]);
      await jwtVerify(token, createLocalJWKSet(jwks), { issuer });
      await restarted.close();
      // Code from another signer cannot open it and signs with a new key of its own.
      const stranger = await buildApp(
        config({
          signingKeyFile,
          provider: simulationProvider(platform, { ...serviceIdentity, mrsigner: "78".repeat(32) }),
        }),
      );
      assert.notEqual((await jwksOf(stranger)).keys[0]?.kid, firstKey?.kid);
      await stranger.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("a kept signing key lives a year: with less than 30 days left on its first certificate, a start makes a new one", async () => {
    const folder = mkdtempSync(join(tmpdir(), "cloister-signing-key-age-"));
    try {
      const signingKeyFile = join(folder, "signing-key.sealed");
      const madeAt = Date.now();
      const startAt = async (days: number): Promise<string | undefined> => {
        const app = await buildApp(
          config({ signingKeyFile, now: () => new Date(madeAt + days * 24 * 3600 * 1000) }),
        );
        const kid = (await jwksOf(app)).keys[0]?.kid;
        await app.close();
        return kid;
      };
      const first = await startAt(0);
      assert.equal(await startAt(300), first, "kept at 300 days");
      const renewed = await startAt(340);
      assert.notEqual(renewed, first, "replaced with 25 days left");
      assert.equal(await startAt(341), renewed, "and the new key is kept");
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("health, readiness and Prometheus metrics by route template and outcome", async () => {
    assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
    const metrics = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(metrics, /attestation_results_total\{type="SgxEnclave",outcome="OK"\} \d+/);
    assert.match(metrics, /attestation_results_total\{type="SgxEnclave",outcome="ERR_QUOTE_SIGNATURE"\} 1/);
    assert.match(metrics, /http_requests_total\{method="POST",route="\/attest\/:type",status="200"\}/);
  });
});

describe("policies", async () => {
  test("production denies simulated (debuggable) evidence", async () => {
    const app = await buildApp(config({ policyMode: "production" }));
    const response = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(workloadQuote) },
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json<{ error: { code: string } }>().error.code, "ERR_POLICY_DENIED");
    await app.close();
  });

  test("without the simulation root configured, simulated quotes are rejected", async () => {
    const app = await buildApp(config({ simulationPlatform: undefined }));
    const response = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(workloadQuote) },
    });
    assert.equal(response.statusCode, 400);
    assert.equal(response.json<{ error: { code: string } }>().error.code, "ERR_COLLATERAL_UNAVAILABLE");
    await app.close();
  });

  test("declared policies (CLOISTER_POLICIES_DIR): checked at start, in force, and changed only there", async () => {
    const manager = createPolicyManager();
    const policy = `version=1.0; authorizationrules{ [type=="x-ms-sgx-svn", value>=3] => permit(); }; issuancerules{ => issue(type="declared", value="yes"); };`;
    const folder = mkdtempSync(join(tmpdir(), "cloister-declared-"));
    after(() => {
      rmSync(folder, { recursive: true, force: true });
    });
    writeFileSync(join(folder, "SgxEnclave.jws"), `${await manager.signed(policy)}\n`);
    // A Kubernetes ConfigMap mount's own entries are skipped.
    writeFileSync(join(folder, "..data"), "");
    const declaredPolicies = readDeclaredPolicies(folder);
    assert.deepEqual(Object.keys(declaredPolicies), ["SgxEnclave"]);
    const production = { policyMode: "production" as const, policySigners: [manager.certificatePem] };
    const app = await buildApp(config({ ...production, declaredPolicies }));
    // In force from the start: svn 3 passes although the evidence is debuggable, and the claim is issued.
    const token = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(workloadQuote) },
    });
    assert.equal(token.statusCode, 200, token.body);
    assert.match(
      Buffer.from(token.json<{ token: string }>().token.split(".")[1] ?? "", "base64url").toString(),
      /"declared":"yes"/,
    );
    // The API does not change a declared type, even with a validly signed envelope; other types it does.
    const replaced = await app.inject({
      method: "PUT",
      url: "/policies/SgxEnclave",
      headers: { "content-type": "text/plain" },
      payload: await manager.signed("version=1.0; authorizationrules{ => permit(); }; issuancerules{};"),
    });
    assert.equal(replaced.statusCode, 409);
    assert.equal(replaced.json<{ error: { code: string } }>().error.code, "ERR_POLICY_DECLARED");
    const reset = await app.inject({ method: "POST", url: "/policies/SgxEnclave:reset" });
    assert.equal(reset.json<{ error: { code: string } }>().error.code, "ERR_POLICY_DECLARED");
    const other = await app.inject({
      method: "PUT",
      url: "/policies/TdxVm",
      headers: { "content-type": "text/plain" },
      payload: await manager.signed("version=1.0; authorizationrules{ => permit(); }; issuancerules{};"),
    });
    assert.equal(other.statusCode, 200, other.body);
    await app.close();

    // Fail closed at start: an envelope no policy signer signed, or a misspelt type, stops the service.
    const stranger = createPolicyManager();
    await assert.rejects(
      buildApp(config({ ...production, declaredPolicies: { SgxEnclave: await stranger.signed(policy) } })),
      /declared SgxEnclave policy is refused \(ERR_FORBIDDEN/,
    );
    await assert.rejects(
      buildApp(config({ ...production, declaredPolicies: { SgxEnclave: manager.unsigned(policy) } })),
      /ERR_FORBIDDEN/,
      "unsigned only in dev mode",
    );
    writeFileSync(join(folder, "SGXEnclave.jws"), await manager.signed(policy));
    assert.throws(() => readDeclaredPolicies(folder), /SGXEnclave\.jws in the declared policies/);
  });

  test("GET, PUT (MAA JWS envelope) and :reset; signed by a configured certificate, unsigned only in dev", async () => {
    const manager = createPolicyManager();
    const certificate = manager.certificatePem;
    const policy = `version=1.0; authorizationrules{ [type=="x-ms-sgx-svn", value>=3] => permit(); }; issuancerules{ => issue(type="custom", value="yes"); };`;
    const payload = manager.payload(policy);
    const signed = await manager.signed(policy);
    const unsigned = manager.unsigned(policy);

    const production = await buildApp(config({ policyMode: "production", policySigners: [certificate] }));
    const forbidden = await production.inject({
      method: "PUT",
      url: "/policies/SgxEnclave",
      headers: { "content-type": "text/plain" },
      payload: unsigned,
    });
    assert.equal(forbidden.statusCode, 403);
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const forged = await new CompactSign(payload).setProtectedHeader({ alg: "ES256" }).sign(other.privateKey);
    assert.equal(
      (
        await production.inject({
          method: "PUT",
          url: "/policies/SgxEnclave",
          headers: { "content-type": "text/plain" },
          payload: forged,
        })
      ).statusCode,
      403,
    );
    const accepted = await production.inject({
      method: "PUT",
      url: "/policies/SgxEnclave",
      headers: { "content-type": "text/plain" },
      payload: signed,
    });
    assert.equal(accepted.statusCode, 200, accepted.body);
    const read = await production.inject({
      method: "GET",
      url: "/policies/SgxEnclave?api-version=2022-08-01",
    });
    const readClaims = JSON.parse(
      Buffer.from(read.json<{ token: string }>().token.split(".")[1] ?? "", "base64url").toString(),
    ) as Record<string, string>;
    assert.equal(Buffer.from(readClaims["x-ms-policy"] ?? "", "base64url").toString(), policy);
    // The custom policy now governs: svn 3 passes even though the evidence is debuggable.
    const token = await production.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(workloadQuote) },
    });
    assert.equal(token.statusCode, 200, token.body);
    const reset = await production.inject({ method: "POST", url: "/policies/SgxEnclave:reset" });
    assert.equal(reset.statusCode, 200);
    assert.equal(
      (
        await production.inject({
          method: "POST",
          url: "/attest/SgxEnclave",
          payload: { quote: b64url(workloadQuote) },
        })
      ).statusCode,
      400,
    );
    await production.close();

    const dev = await buildApp(config({ policyMode: "dev" }));
    assert.equal(
      (await dev.inject({ method: "PUT", url: "/policies/SgxEnclave", payload: { policy: unsigned } }))
        .statusCode,
      200,
    );
    const broken = `${b64url(Buffer.from('{"alg":"none"}'))}.${b64url(Buffer.from(JSON.stringify({ AttestationPolicy: b64url(Buffer.from("version=1.0; nonsense")) })))}.`;
    const invalid = await dev.inject({
      method: "PUT",
      url: "/policies/SgxEnclave",
      payload: { policy: broken },
    });
    assert.equal(invalid.statusCode, 400);
    assert.equal(invalid.json<{ error: { code: string } }>().error.code, "ERR_POLICY_INVALID");
    const noSigners = await buildApp(config({ policyMode: "production" }));
    assert.equal(
      (await noSigners.inject({ method: "PUT", url: "/policies/SgxEnclave", payload: { policy: signed } }))
        .statusCode,
      401,
    );
    await noSigners.close();
    await dev.close();
  });
});

describe("real evidence", () => {
  test("a real TDX quote with its collateral gets a token (service clock at the vector's time)", async () => {
    const collateralDirectory = join(scratch, "collateral");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(collateralDirectory, { recursive: true });
    writeFileSync(join(collateralDirectory, "tdx.json"), vector("dcap-qvl/tdx_quote_collateral.json"));
    const app = await buildApp(
      config({ collateralDirectory, now: () => new Date("2025-07-04T10:24:15Z"), policyMode: "production" }),
    );
    const response = await app.inject({
      method: "POST",
      url: "/attest/TdxVm",
      payload: { quote: b64url(vector("dcap-qvl/tdx_quote")) },
    });
    assert.equal(response.statusCode, 200, response.body);
    const claims = JSON.parse(
      Buffer.from(response.json<{ token: string }>().token.split(".")[1] ?? "", "base64url").toString(),
    ) as Record<string, unknown>;
    assert.equal(claims["x-ms-attestation-type"], "tdxvm");
    assert.equal(claims.attester_tcb_status, "UpToDate");
    assert.equal(claims[simulationClaim], undefined);
    await app.close();
    const expired = await buildApp(
      config({ collateralDirectory, now: () => new Date("2025-09-01T00:00:00Z") }),
    );
    const stale = await expired.inject({
      method: "POST",
      url: "/attest/TdxVm",
      payload: { quote: b64url(vector("dcap-qvl/tdx_quote")) },
    });
    assert.equal(stale.json<{ error: { code: string } }>().error.code, "ERR_COLLATERAL_EXPIRED");
    await expired.close();
  });

  test("a real SEV-SNP report with its VCEK gets a token", async () => {
    const app = await buildApp(
      config({
        amdChains: [vector("sev-snp-go-sev-guest/ask_ark_milan.pem").toString()],
        now: () => new Date("2025-01-01T00:00:00Z"),
      }),
    );
    const report = b64url(
      Buffer.from(
        JSON.stringify({
          SnpReport: b64url(vector("sev-snp-go-sev-guest/attestation.bin")),
          VcekCertChain: b64url(vector("sev-snp-go-sev-guest/vcek.testcer")),
        }),
      ),
    );
    const response = await app.inject({ method: "POST", url: "/attest/SevSnpVm", payload: { report } });
    assert.equal(response.statusCode, 200, response.body);
    const claims = JSON.parse(
      Buffer.from(response.json<{ token: string }>().token.split(".")[1] ?? "", "base64url").toString(),
    ) as Record<string, unknown>;
    assert.equal(claims["x-ms-sevsnpvm-snpfw-svn"], 5);
    await app.close();
  });
});

describe("logs", () => {
  test("no token, evidence or runtime data reaches a log line", async () => {
    let logged = "";
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged += chunk.toString();
        done();
      },
    });
    const app = await buildApp(config({ logger: { level: "trace", stream } }));
    const response = await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave?secret-query=1",
      payload: {
        quote: b64url(workloadQuote),
        runtimeData: { data: b64url(runtimeBytes), dataType: "JSON" },
      },
    });
    const { token } = response.json<{ token: string }>();
    await app.inject({
      method: "POST",
      url: "/attest/SgxEnclave",
      payload: { quote: b64url(workloadQuote.subarray(0, 500)) },
    });
    await app.close();
    assert.ok(logged.length > 0, "the logger ran");
    for (const secret of [
      token,
      token.split(".")[2] ?? "",
      b64url(workloadQuote).slice(0, 40),
      b64url(runtimeBytes).slice(0, 20),
      "secret-query",
      runtime.keys[0]?.x ?? "",
    ]) {
      assert.ok(!logged.includes(secret), `log contains ${secret.slice(0, 12)}…`);
    }
  });
});
