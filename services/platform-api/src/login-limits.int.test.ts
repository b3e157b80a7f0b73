// Sign-in limits as a hospital meets them: every member of staff signs in from the hospital's one NAT
// address, through an ingress controller. Successful sign-ins do not count against their address; failed
// ones do, attempts sent at once included; and the client address is taken from X-Forwarded-For only when
// the trusted proxy sent it.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const ingress = "10.0.0.1";
// The first six sign in as a shift; the others are used by the limit tests.
const staff = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"].map((name) => `${name}@ward.test`);
let platform: TestPlatform;

before(async () => {
  platform = await startTestPlatform({
    trustedProxies: [ingress],
    loginPolicy: {
      maxFailures: 10,
      lockoutMs: 60_000,
      maxAttempts: 3,
      maxClientFailures: 4,
      windowMs: 60_000,
    },
  });
  for (const email of staff) {
    await platform.accounts.create({ email, password, tenantId: "hospital-a", role: "clerk" });
  }
});

after(async () => {
  await platform.close();
});

function signIn(
  email: string,
  pass: string,
  from: { remoteAddress: string; forwardedFor?: string },
): Promise<LightMyRequestResponse> {
  return platform.app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email, password: pass },
    remoteAddress: from.remoteAddress,
    ...(from.forwardedFor === undefined ? {} : { headers: { "x-forwarded-for": from.forwardedFor } }),
  });
}

describe("sign-in limits", () => {
  it("lets a whole shift sign in from one address: successes are not counted against it", async () => {
    const hospital = { remoteAddress: ingress, forwardedFor: "198.51.100.10" };
    // 24 sign-ins from one address: more than four times its failure limit, more than the 5 × 3 attempts a
    // per-address attempt limit would allow, and more per email than its failure limit (3).
    for (const email of staff.slice(0, 6)) {
      for (let i = 0; i < 4; i++) {
        assert.equal((await signIn(email, password, hospital)).statusCode, 200);
      }
    }
  });

  it("limits failed sign-ins per client address, and only that address", async () => {
    const guesser = { remoteAddress: ingress, forwardedFor: "203.0.113.5" };
    // Four failures spread over accounts (and one unknown email): under every per-account limit.
    for (const email of [staff[6], staff[7], staff[8], "nobody@ward.test"]) {
      const refused = await signIn(email ?? "", "wrong password!!", guesser);
      assert.equal(refused.statusCode, 401);
    }
    const limited = await signIn(staff[9] ?? "", password, guesser);
    assert.equal(limited.statusCode, 429, "the address used up its failures: even a right password waits");
    assert.equal(limited.json<{ code: string }>().code, "ERR_RATE_LIMITED");
    assert.ok(Number(limited.headers["retry-after"]) > 0);
    const colleague = { remoteAddress: ingress, forwardedFor: "198.51.100.11" };
    assert.equal((await signIn(staff[9] ?? "", password, colleague)).statusCode, 200);
  });

  it("counts attempts sent at once before their passwords are checked", async () => {
    const burst = { remoteAddress: ingress, forwardedFor: "203.0.113.77" };
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => signIn(`burst${i}@ward.test`, "wrong password!!", burst)),
    );
    const statuses = answers.map((answer) => answer.statusCode).sort();
    assert.deepEqual(
      statuses,
      [401, 401, 401, 401, 429, 429, 429, 429, 429, 429],
      "no more failures than the limit (4), however many arrive together",
    );
  });

  it("believes X-Forwarded-For from the trusted ingress only", async () => {
    // Not from the ingress: the header is ignored, so changing it does not give a fresh address.
    const direct = "10.9.9.9";
    for (let i = 0; i < 4; i++) {
      const refused = await signIn(`stranger${i}@ward.test`, "wrong password!!", {
        remoteAddress: direct,
        forwardedFor: `192.0.2.${i + 1}`,
      });
      assert.equal(refused.statusCode, 401);
    }
    const spoofed = await signIn(staff[10] ?? "", password, {
      remoteAddress: direct,
      forwardedFor: "192.0.2.200",
    });
    assert.equal(spoofed.statusCode, 429, "the failures counted against the real peer, not the header");
  });
});
