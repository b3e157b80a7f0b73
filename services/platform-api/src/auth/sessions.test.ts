// Sessions: local ES256 tokens (the same key in every replica when derived from a shared secret), and an external OpenID Connect provider (Entra ID style) whose tenant and
// role claims map to Cloister's; tokens of other issuers, audiences or unmapped tenants are refused.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { randomBytes } from "node:crypto";
import { exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT } from "jose";
import { PlatformError } from "../errors.js";
import { createLocalSessions, createOidcSessions, oidcOptionsFromEnvironment } from "./sessions.js";

test("local sessions carry subject, tenant, role and generation, and refuse tampering", async () => {
  const sessions = await createLocalSessions({ issuer: "https://platform.test", lifetimeSeconds: 60 });
  const { accessToken, expiresIn } = await sessions.issue({
    subject: "acct-1",
    tenantId: "t1",
    role: "clerk",
    sessionGeneration: 3,
  });
  assert.equal(expiresIn, 60);
  assert.deepEqual(await sessions.verify(accessToken), {
    subject: "acct-1",
    tenantId: "t1",
    role: "clerk",
    sessionGeneration: 3,
  });
  const [header = "", payload = "", signature = ""] = accessToken.split(".");
  const elevated = Buffer.from(
    JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), role: "admin" }),
  ).toString("base64url");
  await assert.rejects(sessions.verify(`${header}.${elevated}.${signature}`), PlatformError);
  const renewed = Buffer.from(
    JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), gen: 4 }),
  ).toString("base64url");
  await assert.rejects(sessions.verify(`${header}.${renewed}.${signature}`), PlatformError);
  const other = await createLocalSessions({ issuer: "https://platform.test" });
  await assert.rejects(other.verify(accessToken), PlatformError, "another process's key does not verify");
});

test("local sessions signed under a shared secret verify at every replica, and under no other secret", async () => {
  const secret = randomBytes(32);
  const [first, second] = [
    await createLocalSessions({ issuer: "https://platform.test", signingSecret: secret }),
    await createLocalSessions({ issuer: "https://platform.test", signingSecret: secret }),
  ];
  const { accessToken } = await first.issue({ subject: "acct-2", tenantId: "t1", role: "clinician" });
  assert.deepEqual(await second.verify(accessToken), {
    subject: "acct-2",
    tenantId: "t1",
    role: "clinician",
    sessionGeneration: 0,
  });
  assert.deepEqual(first.jwks(), second.jwks(), "the same key, under the same kid");
  // Any JOSE library verifies it against the published key set.
  const [published] = first.jwks().keys;
  assert.ok(published !== undefined);
  const { protectedHeader } = await jwtVerify(accessToken, await importJWK(published, "ES256"));
  assert.equal(protectedHeader.alg, "ES256");
  assert.equal(protectedHeader.kid, published.kid);
  const other = await createLocalSessions({
    issuer: "https://platform.test",
    signingSecret: randomBytes(32),
  });
  await assert.rejects(other.verify(accessToken), PlatformError, "another secret's key does not verify");
  assert.notEqual(other.jwks().keys[0]?.kid, published.kid);
});

test("an OpenID Connect provider's tokens map to a tenant and the strongest mapped role", async () => {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "idp-1", alg: "RS256" };
  const server = createServer((_request, response) => {
    response.setHeader("content-type", "application/json");
    response.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  after(() => server.close());
  const issuer = "https://login.microsoftonline.com/hospital-tid/v2.0";
  const sessions = createOidcSessions({
    issuer,
    jwksUri: `http://127.0.0.1:${(server.address() as AddressInfo).port}/keys`,
    audience: "api://cloister",
    tenantClaim: "tid",
    tenants: { "hospital-tid": "demo" },
    roleClaim: "roles",
    roles: { "Cloister.Clerk": "clerk", "Cloister.Clinician": "clinician" },
  });
  const token = async (
    claims: Record<string, unknown>,
    options: { issuer?: string; audience?: string } = {},
  ) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: "RS256", kid: "idp-1" })
      .setSubject("entra-object-id")
      .setIssuer(options.issuer ?? issuer)
      .setAudience(options.audience ?? "api://cloister")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);
  assert.deepEqual(
    await sessions.verify(
      await token({ tid: "hospital-tid", roles: ["Cloister.Clerk", "Cloister.Clinician"] }),
    ),
    {
      subject: "entra-object-id",
      tenantId: "demo",
      role: "clinician",
    },
  );
  const refused = async (jwt: Promise<string>, code: string) => {
    await assert.rejects(
      sessions.verify(await jwt),
      (error: unknown) => error instanceof PlatformError && error.code === code,
    );
  };
  await refused(token({ tid: "other-hospital", roles: ["Cloister.Clerk"] }), "ERR_FORBIDDEN");
  await refused(token({ tid: "hospital-tid", roles: ["Some.Other.Role"] }), "ERR_FORBIDDEN");
  await refused(
    token({ tid: "hospital-tid", roles: ["Cloister.Clerk"] }, { audience: "api://elsewhere" }),
    "ERR_UNAUTHENTICATED",
  );
  await refused(
    token({ tid: "hospital-tid", roles: ["Cloister.Clerk"] }, { issuer: "https://evil.example" }),
    "ERR_UNAUTHENTICATED",
  );
});

test("OpenID Connect from configuration: Entra defaults, mappings, and refusals", () => {
  assert.equal(oidcOptionsFromEnvironment({}), undefined, "no issuer: local accounts");
  const options = oidcOptionsFromEnvironment({
    CLOISTER_OIDC_ISSUER: "https://login.microsoftonline.com/1111/v2.0",
    CLOISTER_OIDC_AUDIENCE: "api://cloister",
    CLOISTER_OIDC_TENANTS: "1111=st-marys, 2222=general",
    CLOISTER_OIDC_ROLES: "Cloister.Clerk=clerk,Cloister.Clinician=clinician",
  });
  assert.deepEqual(options, {
    issuer: "https://login.microsoftonline.com/1111/v2.0",
    audience: "api://cloister",
    jwksUri: "https://login.microsoftonline.com/1111/discovery/v2.0/keys",
    tenantClaim: "tid",
    tenants: { "1111": "st-marys", "2222": "general" },
    roleClaim: "roles",
    roles: { "Cloister.Clerk": "clerk", "Cloister.Clinician": "clinician" },
  });
  const base = {
    CLOISTER_OIDC_ISSUER: "https://idp.example",
    CLOISTER_OIDC_TENANTS: "a=b",
    CLOISTER_OIDC_ROLES: "x=clerk",
  };
  assert.throws(() => oidcOptionsFromEnvironment(base), /AUDIENCE/);
  assert.throws(
    () => oidcOptionsFromEnvironment({ ...base, CLOISTER_OIDC_AUDIENCE: "x", CLOISTER_OIDC_ROLES: "x=root" }),
    /not clerk/,
  );
  assert.throws(
    () => oidcOptionsFromEnvironment({ ...base, CLOISTER_OIDC_AUDIENCE: "x", CLOISTER_OIDC_TENANTS: "" }),
    /TENANTS is empty/,
  );
  assert.throws(
    () => oidcOptionsFromEnvironment({ ...base, CLOISTER_OIDC_AUDIENCE: "x", CLOISTER_OIDC_TENANTS: "nope" }),
    /pairs/,
  );
});
