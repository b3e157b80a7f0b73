// Staff accounts as a hospital's admin manages them: add a member of staff with a temporary password they
// replace at their first sign-in, change a role, disable the account of someone who left (their sessions end
// at once on this replica and within seconds on the others, their event stream too), unlock, reset a
// forgotten password; the tenant always keeps an admin, even when two admins act at once; and every change
// is in the tenant's audit trail.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AccountService } from "./auth/accounts.js";
import { blindIndexes, deriveTenantKeyring } from "./storage/record-crypto.js";
import { openSqliteStore } from "./storage/sqlite-store.js";
import { slowSearches } from "./test-support/slow-store.js";
import { startTestPlatform, type TestPlatform } from "./test-support/test-platform.js";

const password = "correct horse battery staple";
const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
const sessionSecret = randomBytes(32);
const tenantKeyring = deriveTenantKeyring(randomBytes(32), "hospital-a");
const shared = { systemKeyring, sessionSecret, tenantKeyring: async () => tenantKeyring };
let replicaA: TestPlatform;
let replicaB: TestPlatform;

before(async () => {
  replicaA = await startTestPlatform({ ...shared, eventHeartbeatMs: 100 });
  // The second replica trusts what it read of an account for 300 ms, as a replica trusts it for 5 s.
  replicaB = await startTestPlatform({
    ...shared,
    store: replicaA.store,
    sessionCheckMs: 300,
  });
  await replicaA.accounts.create({ email: "admin@a.test", password, tenantId: "hospital-a", role: "admin" });
  await replicaA.accounts.create({ email: "clerk@a.test", password, tenantId: "hospital-a", role: "clerk" });
  await replicaA.accounts.create({ email: "admin@b.test", password, tenantId: "hospital-b", role: "admin" });
});

after(async () => {
  await replicaB.close();
  await replicaA.close();
});

async function signIn(
  email: string,
  pass: string,
  newPassword?: string,
  platform: TestPlatform = replicaA,
): Promise<{ status: number; code?: string; token?: string }> {
  const answer = await platform.app.inject({
    method: "POST",
    url: "/auth/login",
    payload: { email, password: pass, ...(newPassword === undefined ? {} : { newPassword }) },
  });
  const body = answer.json<{ accessToken?: string; code?: string }>();
  return {
    status: answer.statusCode,
    ...(body.code === undefined ? {} : { code: body.code }),
    ...(body.accessToken === undefined ? {} : { token: body.accessToken }),
  };
}

async function tokenOf(email: string, pass = password): Promise<string> {
  const answer = await signIn(email, pass);
  assert.equal(answer.status, 200, `${email} signs in`);
  return answer.token ?? "";
}

async function call(
  token: string,
  method: "GET" | "POST" | "PATCH",
  url: string,
  payload?: unknown,
  platform: TestPlatform = replicaA,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const answer = await platform.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
  return { status: answer.statusCode, body: answer.json<Record<string, unknown>>() };
}

/** A staff member's everyday request: a patient search. */
async function searchPatients(token: string, platform: TestPlatform = replicaA): Promise<number> {
  const answer = await platform.app.inject({
    method: "GET",
    url: "/fhir/Patient?_count=1",
    headers: { authorization: `Bearer ${token}` },
  });
  return answer.statusCode;
}

async function accountsSeenBy(adminToken: string): Promise<Record<string, unknown>[]> {
  const listed = await call(adminToken, "GET", "/admin/accounts");
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  return listed.body.accounts as Record<string, unknown>[];
}

async function idOf(adminToken: string, email: string): Promise<string> {
  const found = (await accountsSeenBy(adminToken)).find((account) => account.email === email);
  assert.ok(found, `${email} is listed`);
  return found.id as string;
}

describe("staff accounts", () => {
  it("lists accounts stored before accounts were listed by tenant", async () => {
    // An account as an earlier version stored it: found by its email only.
    const id = await replicaA.accounts.create({
      email: "veteran@a.test",
      password,
      tenantId: "hospital-a",
      role: "clinician",
    });
    const stored = await replicaA.store.current("_system", "Account", id);
    assert.ok(stored);
    assert.equal(
      await replicaA.store.reseal(
        "_system",
        stored,
        stored.body,
        blindIndexes(systemKeyring, "Account", "email", "veteran@a.test"),
      ),
      true,
    );
    // A restarted replica changes it before anyone listed the accounts, then lists them.
    const restarted = new AccountService(replicaA.store, systemKeyring);
    const adminId = (await replicaA.store.search("_system", "Account", [], 10, "oldest"))[0]?.id ?? "";
    assert.equal(
      (await restarted.update("hospital-a", id, { unlock: true }, adminId)).email,
      "veteran@a.test",
    );
    assert.deepEqual(
      (await restarted.list("hospital-a")).map((account) => account.email),
      ["admin@a.test", "clerk@a.test", "veteran@a.test"],
    );
  });

  it("lets an admin list their tenant's staff only, and nobody else list them", async () => {
    const admin = await tokenOf("admin@a.test");
    assert.deepEqual(
      (await accountsSeenBy(admin)).map(({ email, role, active, locked, passwordChangeRequired }) => ({
        email,
        role,
        active,
        locked,
        passwordChangeRequired,
      })),
      [
        { email: "admin@a.test", role: "admin", active: true, locked: false, passwordChangeRequired: false },
        { email: "clerk@a.test", role: "clerk", active: true, locked: false, passwordChangeRequired: false },
        {
          email: "veteran@a.test",
          role: "clinician",
          active: true,
          locked: false,
          passwordChangeRequired: false,
        },
      ],
    );
    // When each last signed in (to the hour), for reviews of accounts no one uses: the admin just did.
    const signIns = new Map(
      (await accountsSeenBy(admin)).map((account) => [account.email, account.lastSignInAt]),
    );
    assert.ok(
      Date.now() - Date.parse(String(signIns.get("admin@a.test"))) < 60_000,
      String(signIns.get("admin@a.test")),
    );
    assert.equal(signIns.get("veteran@a.test"), null, "never signed in");
    const listed = JSON.stringify(await accountsSeenBy(admin));
    assert.doesNotMatch(listed, /scrypt|passwordHash|hospital-b/);
    const clerk = await tokenOf("clerk@a.test");
    assert.equal((await call(clerk, "GET", "/admin/accounts")).status, 403);
    const adminB = await tokenOf("admin@b.test");
    const clerkId = await idOf(admin, "clerk@a.test");
    const across = await call(adminB, "PATCH", `/admin/accounts/${clerkId}`, { active: false });
    assert.equal(across.status, 404, "another tenant's admin does not find the account");
    assert.equal(await searchPatients(clerk), 200);
  });

  it("adds a member of staff, who replaces the temporary password at the first sign-in", async () => {
    const admin = await tokenOf("admin@a.test");
    const temporary = "temporary pass 7 words";
    const created = await call(admin, "POST", "/admin/accounts", {
      email: "New.Nurse@A.test",
      role: "clerk",
      temporaryPassword: temporary,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.email, "new.nurse@a.test");
    assert.equal(created.body.passwordChangeRequired, true);
    const again = await call(admin, "POST", "/admin/accounts", {
      email: "new.nurse@a.test",
      role: "clinician",
      temporaryPassword: temporary,
    });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, "ERR_DUPLICATE");
    const short = await call(admin, "POST", "/admin/accounts", {
      email: "short@a.test",
      role: "clerk",
      temporaryPassword: "too short",
    });
    assert.equal(short.body.code, "ERR_PASSWORD_POLICY");
    const common = await call(admin, "POST", "/admin/accounts", {
      email: "common@a.test",
      role: "clerk",
      temporaryPassword: "password1234",
    });
    assert.equal(common.body.code, "ERR_PASSWORD_POLICY");
    assert.match(String(common.body.title), /too easy to guess/);
    assert.doesNotMatch(JSON.stringify(common.body), /password1234/);

    assert.deepEqual(await signIn("new.nurse@a.test", temporary), {
      status: 403,
      code: "ERR_PASSWORD_CHANGE_REQUIRED",
    });
    assert.equal((await signIn("new.nurse@a.test", temporary, temporary)).code, "ERR_PASSWORD_POLICY");
    assert.equal(
      (await signIn("new.nurse@a.test", temporary, "new.nurse@a.test")).code,
      "ERR_PASSWORD_POLICY",
    );
    assert.equal((await signIn("new.nurse@a.test", temporary, "qwertyuiop12")).code, "ERR_PASSWORD_POLICY");
    assert.equal((await signIn("new.nurse@a.test", "wrong password!!", "my own long secret")).status, 401);
    const chosen = await signIn("new.nurse@a.test", temporary, "my own long secret");
    assert.equal(chosen.status, 200);
    assert.equal(await searchPatients(chosen.token ?? ""), 200);
    assert.equal((await signIn("new.nurse@a.test", temporary)).status, 401, "the temporary one is gone");
    assert.equal((await signIn("new.nurse@a.test", "my own long secret")).status, 200);
    const listed = (await accountsSeenBy(admin)).find((account) => account.email === "new.nurse@a.test");
    assert.equal(listed?.passwordChangeRequired, false);
  });

  it("ends every session of a disabled account, on this replica at once and on another within its check", async () => {
    const admin = await tokenOf("admin@a.test");
    const clerkId = await idOf(admin, "clerk@a.test");
    const onA = await tokenOf("clerk@a.test");
    const onB = (await signIn("clerk@a.test", password, undefined, replicaB)).token ?? "";
    assert.equal(await searchPatients(onA), 200);
    const first = await replicaB.app.inject({
      method: "GET",
      url: "/fhir/Patient?_count=1",
      headers: { authorization: `Bearer ${onB}` },
    });
    assert.equal(first.statusCode, 200, first.body);

    const disabled = await call(admin, "PATCH", `/admin/accounts/${clerkId}`, { active: false });
    assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
    assert.equal(disabled.body.active, false);
    const refused = await replicaA.app.inject({
      method: "GET",
      url: "/fhir/Patient?_count=1",
      headers: { authorization: `Bearer ${onA}` },
    });
    assert.equal(refused.statusCode, 401);
    assert.match(refused.body, /ERR_SESSION_ENDED/);
    await new Promise((resolve) => setTimeout(resolve, 350));
    assert.equal(await searchPatients(onB, replicaB), 401, "replica B read the account again");

    assert.deepEqual(await signIn("clerk@a.test", password), { status: 403, code: "ERR_ACCOUNT_DISABLED" });
    assert.equal((await signIn("clerk@a.test", "wrong password!!")).code, "ERR_LOGIN_FAILED");
    const enabled = await call(admin, "PATCH", `/admin/accounts/${clerkId}`, { active: true });
    assert.equal(enabled.body.active, true);
    assert.equal(await searchPatients(onA), 401, "an ended session stays ended");
    assert.equal(await searchPatients(await tokenOf("clerk@a.test")), 200);
  });

  it("ends the event stream of a disabled account's session", async () => {
    const admin = await tokenOf("admin@a.test");
    const id = await idOf(admin, "veteran@a.test");
    const clinician = await tokenOf("veteran@a.test");
    const address = await replicaA.app.listen({ port: 0, host: "127.0.0.1" });
    const ended = new Promise<string>((resolve, reject) => {
      get(`${address}/events`, { headers: { authorization: `Bearer ${clinician}` } }, (response) => {
        let received = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => {
          received += chunk;
        });
        response.on("end", () => {
          resolve(received);
        });
      }).on("error", reject);
    });
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal((await call(admin, "PATCH", `/admin/accounts/${id}`, { active: false })).status, 200);
    const received = await ended;
    assert.match(received, /: connected/);
    assert.equal((await call(admin, "PATCH", `/admin/accounts/${id}`, { active: true })).status, 200);
  });

  it("ends sessions on a new role, unlocks, and resets a forgotten password", async () => {
    const admin = await tokenOf("admin@a.test");
    const clerkId = await idOf(admin, "clerk@a.test");
    const before = await tokenOf("clerk@a.test");
    const promoted = await call(admin, "PATCH", `/admin/accounts/${clerkId}`, { role: "clinician" });
    assert.equal(promoted.body.role, "clinician");
    assert.equal(await searchPatients(before), 401, "the session as a clerk ended");
    const asClinician = await tokenOf("clerk@a.test");
    const claims = JSON.parse(Buffer.from(asClinician.split(".")[1] ?? "", "base64url").toString()) as {
      role: string;
    };
    assert.equal(claims.role, "clinician");

    for (let i = 0; i < 5; i++) {
      await signIn("clerk@a.test", "wrong password!!");
    }
    assert.equal((await signIn("clerk@a.test", password)).code, "ERR_LOCKED");
    const listed = (await accountsSeenBy(admin)).find((account) => account.id === clerkId);
    assert.equal(listed?.locked, true);
    assert.equal(
      (await call(admin, "PATCH", `/admin/accounts/${clerkId}`, { unlock: true })).body.locked,
      false,
    );
    assert.equal((await signIn("clerk@a.test", password)).status, 200);

    const reset = await call(admin, "PATCH", `/admin/accounts/${clerkId}`, {
      temporaryPassword: "reset by the admin 42",
    });
    assert.equal(reset.body.passwordChangeRequired, true);
    assert.equal(await searchPatients(asClinician), 401, "a reset ends the sessions");
    assert.equal((await signIn("clerk@a.test", password)).status, 401, "the forgotten password is gone");
    assert.equal(
      (await signIn("clerk@a.test", "reset by the admin 42")).code,
      "ERR_PASSWORD_CHANGE_REQUIRED",
    );
    assert.equal((await signIn("clerk@a.test", "reset by the admin 42", password + "!")).status, 200);
  });

  it("refuses changes that are not understood, and the admin's own role or status", async () => {
    const admin = await tokenOf("admin@a.test");
    const adminId = await idOf(admin, "admin@a.test");
    const clerkId = await idOf(admin, "clerk@a.test");
    for (const [body, code] of [
      [{ active: false, email: "x@a.test" }, "ERR_BAD_REQUEST"],
      [{ role: "superuser" }, "ERR_BAD_REQUEST"],
      [{ active: "no" }, "ERR_BAD_REQUEST"],
      [{}, "ERR_BAD_REQUEST"],
      [{ temporaryPassword: "short" }, "ERR_PASSWORD_POLICY"],
    ] as const) {
      const refused = await call(admin, "PATCH", `/admin/accounts/${clerkId}`, body);
      assert.equal(refused.body.code, code, JSON.stringify(body));
    }
    for (const body of [{ active: false }, { role: "clerk" }]) {
      const refused = await call(admin, "PATCH", `/admin/accounts/${adminId}`, body);
      assert.equal(refused.status, 409);
      assert.equal(refused.body.code, "ERR_LAST_ADMIN");
    }
    assert.equal(await searchPatients(admin), 200);
  });

  it("keeps an active admin when two admins disable each other at once, on two replicas", async () => {
    // Two replicas over one database whose searches answer 50 ms late: both check the rule before either
    // writes, and the guard makes the later one check again.
    const scratch = mkdtempSync(join(tmpdir(), "cloister-admins-"));
    const store = openSqliteStore(join(scratch, "records.db"));
    const replicas = [
      await startTestPlatform({ ...shared, store: slowSearches(store) }),
      await startTestPlatform({ ...shared, store: slowSearches(store) }),
    ] as const;
    try {
      const ids = [
        await replicas[0].accounts.create({
          email: "one@a.test",
          password,
          tenantId: "hospital-a",
          role: "admin",
        }),
        await replicas[0].accounts.create({
          email: "two@a.test",
          password,
          tenantId: "hospital-a",
          role: "admin",
        }),
      ];
      const tokens = [
        (await signIn("one@a.test", password, undefined, replicas[0])).token ?? "",
        (await signIn("two@a.test", password, undefined, replicas[1])).token ?? "",
      ];
      const answers = await Promise.all([
        call(tokens[0] ?? "", "PATCH", `/admin/accounts/${ids[1] ?? ""}`, { active: false }, replicas[0]),
        call(tokens[1] ?? "", "PATCH", `/admin/accounts/${ids[0] ?? ""}`, { active: false }, replicas[1]),
      ]);
      assert.deepEqual(answers.map((answer) => answer.status).sort(), [200, 409], JSON.stringify(answers));
      assert.equal(answers.find((answer) => answer.status === 409)?.body.code, "ERR_LAST_ADMIN");
      const admins = (await new AccountService(store, systemKeyring).list("hospital-a")).filter(
        (account) => account.role === "admin" && account.active,
      );
      assert.equal(admins.length, 1);
    } finally {
      for (const replica of replicas) {
        await replica.close();
      }
      rmSync(scratch, { recursive: true, force: true });
    }
  });

  it("records every change in the tenant's audit trail, by the admin who made it", async () => {
    const admin = await tokenOf("admin@a.test");
    const adminId = await idOf(admin, "admin@a.test");
    const clerkId = await idOf(admin, "clerk@a.test");
    const trail = await replicaA.app.inject({
      method: "GET",
      url: `/fhir/AuditEvent?agent=${adminId}&_sort=_lastUpdated&_count=100`,
      headers: { authorization: `Bearer ${admin}` },
    });
    assert.equal(trail.statusCode, 200, trail.body);
    const events = (trail.json<{ entry?: { resource: Record<string, unknown> }[] }>().entry ?? []).map(
      ({ resource }) => ({
        subtype: (resource.subtype as { code: string }[] | undefined)?.[0]?.code ?? "",
        outcome: resource.outcome as string,
        entity: ((resource.entity ?? []) as { what: { reference: string } }[])[0]?.what.reference,
      }),
    );
    const about = (entity: string): string[] =>
      events
        .filter((event) => event.entity === entity && event.outcome === "0")
        .map((event) => event.subtype);
    assert.deepEqual(about(`Account/${clerkId}`), [
      "account-disable",
      "account-enable",
      "account-role",
      "account-unlock",
      "account-password-reset",
    ]);
    assert.ok(
      events.some((event) => event.subtype === "account-disable" && event.outcome === "4"),
      "a refused change is recorded too",
    );
    assert.ok(events.some((event) => event.subtype === "account-create" && event.outcome === "0"));
    assert.ok(events.some((event) => event.subtype === "account-search"));
    // The staff member's own password change is found by their id.
    const ownChange = await replicaA.app.inject({
      method: "GET",
      url: `/fhir/AuditEvent?agent=${clerkId}&_count=100`,
      headers: { authorization: `Bearer ${admin}` },
    });
    assert.match(ownChange.body, /password-change/);
    // No event names an email or a password.
    assert.doesNotMatch(trail.body + ownChange.body, /@a\.test|reset by the admin|temporary/);
  });

  it("log-in monitoring: every refused sign-in of a staff account is in their tenant's trail, and the admin's list counts wrong passwords", async () => {
    await replicaA.accounts.create({
      email: "monitored@a.test",
      password,
      tenantId: "hospital-a",
      role: "clerk",
    });
    await replicaA.accounts.create({ email: "gone@a.test", password, tenantId: "hospital-a", role: "clerk" });
    const admin = await tokenOf("admin@a.test");
    const monitoredId = await idOf(admin, "monitored@a.test");
    const goneId = await idOf(admin, "gone@a.test");
    const failedSignIns = async () =>
      (
        (await call(admin, "GET", "/admin/accounts")).body.accounts as { id: string; failedSignIns: number }[]
      ).find((account) => account.id === monitoredId)?.failedSignIns;

    assert.equal((await signIn("monitored@a.test", "a wrong password")).code, "ERR_LOGIN_FAILED");
    assert.equal((await signIn("monitored@a.test", "another wrong one")).code, "ERR_LOGIN_FAILED");
    assert.equal(await failedSignIns(), 2);
    for (let i = 0; i < 2; i++) {
      assert.equal((await signIn("monitored@a.test", "still wrong")).code, "ERR_LOGIN_FAILED");
    }
    assert.equal((await signIn("monitored@a.test", "the fifth")).code, "ERR_LOCKED", "locked by the fifth");
    assert.equal((await signIn("monitored@a.test", password)).code, "ERR_LOCKED", "tried while locked");
    assert.equal((await call(admin, "PATCH", `/admin/accounts/${goneId}`, { active: false })).status, 200);
    assert.equal((await signIn("gone@a.test", password)).code, "ERR_ACCOUNT_DISABLED");

    const refusals = async (id: string) =>
      (
        ((await call(admin, "GET", `/fhir/AuditEvent?agent=${id}&_sort=_lastUpdated&_count=100`)).body
          .entry ?? []) as { resource: Record<string, unknown> }[]
      ).map(({ resource }) => ({
        type: (resource.type as { code: string }).code,
        outcome: resource.outcome,
        code: resource.outcomeDesc,
        entity: ((resource.entity ?? []) as { what: { reference: string } }[])[0]?.what.reference,
      }));
    const refused = (code: string, id: string) => ({
      type: "110114",
      outcome: "4",
      code,
      entity: `Account/${id}`,
    });
    assert.deepEqual(await refusals(monitoredId), [
      ...Array.from({ length: 4 }, () => refused("ERR_LOGIN_FAILED", monitoredId)),
      refused("ERR_LOCKED", monitoredId),
      refused("ERR_LOCKED", monitoredId),
    ]);
    assert.deepEqual(await refusals(goneId), [refused("ERR_ACCOUNT_DISABLED", goneId)]);
    // The lockout restarted the count; an unlock by the admin is recorded as before.
    assert.equal(await failedSignIns(), 0);
    assert.equal(
      (await call(admin, "PATCH", `/admin/accounts/${monitoredId}`, { unlock: true })).status,
      200,
    );
    assert.equal((await signIn("monitored@a.test", password)).status, 200);
  });

  it("leaves staff accounts to the identity provider when staff sign in through OpenID Connect", async () => {
    const federated = await startTestPlatform({
      sessionVerifier: {
        verify: async (token) => {
          if (token !== "entra-admin") {
            throw new Error("not a token");
          }
          return { subject: "oid-1", tenantId: "hospital-a", role: "admin" };
        },
      },
    });
    try {
      const answer = await call("entra-admin", "GET", "/admin/accounts", undefined, federated);
      assert.equal(answer.status, 409);
      assert.equal(answer.body.code, "ERR_ACCOUNTS_EXTERNAL");
    } finally {
      await federated.close();
    }
  });
});
