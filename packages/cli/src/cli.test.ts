import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createSimulationPlatform } from "@cloister/attestation";
import {
  approverId,
  checkKeyChangeApprovals,
  createDevCertificateAuthority,
  issueServerCertificate,
  policyDigest,
  simulationProvider,
  type KeyChange,
} from "@cloister/enclave";
import { buildApp as buildAttestationService } from "../../../services/attestation-service/src/app.js";
import { readDeclaredPolicies } from "../../../services/attestation-service/src/policies.js";
import { createPolicyManager } from "../../../services/attestation-service/src/test-support.js";
import { openSqliteStore } from "@cloister/platform-api/sqlite-store";
import { startTestPlatform } from "../../../services/platform-api/src/test-support/test-platform.js";
import { runCli, type CliIo } from "./index.js";
import { longestRestartPauseMs, restartPolicy } from "./up-processes.js";

type Jwk = Parameters<typeof approverId>[0];

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const vectors = resolve(repositoryRoot, "../shared/attestation-vectors");
const vector = (path: string): string => join(vectors, path);

function run(argv: string[]): { code: number; stdout: string; stderr: string } {
  let stdout = "";
  let stderr = "";
  const io: CliIo = { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) };
  const code = runCli(argv, io);
  assert.equal(typeof code, "number", "this command runs synchronously");
  return { code: code as number, stdout, stderr };
}

/** Runs a command that may be asynchronous. */
async function runAsync(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(argv, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
  });
  return { code, stdout, stderr };
}

const sgxArgs = [
  "verify-quote",
  vector("dcap-qvl/sgx_quote"),
  "--collateral",
  vector("dcap-qvl/sgx_quote_collateral.json"),
];

describe("cloister verify-quote", () => {
  test("accepts the SGX vector at its time: exit 0 and the JSON result", () => {
    const { code, stdout } = run([...sgxArgs, "--at", "2025-07-04T10:28:44Z", "--json"]);
    assert.equal(code, 0);
    const result = JSON.parse(stdout) as Record<string, unknown>;
    assert.equal(result.ok, true);
    assert.equal(result.tee, "sgx");
    assert.equal(result.tcbStatus, "ConfigurationAndSWHardeningNeeded");
    assert.deepEqual(result.advisoryIds, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert.equal(result.error, null);
    assert.equal(
      (result.claims as Record<string, unknown>)["x-ms-sgx-mrenclave"],
      "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
    );
  });

  test("rejects expired collateral: exit 1 with the error code", () => {
    const { code, stdout } = run([...sgxArgs, "--at", "2025-09-01T00:00:00Z", "--json"]);
    assert.equal(code, 1);
    const result = JSON.parse(stdout) as { ok: boolean; tee: string; error: { code: string } };
    assert.equal(result.ok, false);
    assert.equal(result.tee, "sgx");
    assert.equal(result.error.code, "ERR_COLLATERAL_EXPIRED");
  });

  test("detects TDX v5 and SEV-SNP from the bytes", () => {
    const tdx = run([
      "verify-quote",
      vector("dcap-qvl/tdx_quote_outdated"),
      "--collateral",
      vector("dcap-qvl/tdx_quote_outdated_collateral.json"),
      "--at",
      "2026-03-05T10:50:33Z",
      "--json",
    ]);
    assert.equal(tdx.code, 1);
    const tdxResult = JSON.parse(tdx.stdout) as { tee: string; error: { code: string } };
    assert.equal(tdxResult.error.code, "ERR_TCB_NO_MATCH");
    assert.equal(tdxResult.tee, "tdx");
    const snp = run([
      "verify-quote",
      vector("sev-snp-go-sev-guest/attestation.bin"),
      "--vcek",
      vector("sev-snp-go-sev-guest/vcek.testcer"),
      "--chain",
      vector("sev-snp-go-sev-guest/ask_ark_milan.pem"),
      "--at",
      "2025-01-01T00:00:00Z",
    ]);
    assert.equal(snp.code, 0);
    assert.match(snp.stdout, /^accepted: SEV-SNP evidence/);
  });

  test("an OpenEnclave report (16-byte header) verifies like its quote", () => {
    const { code, stdout } = run([
      "verify-quote",
      vector("maa-sgx-2022/oe_report.bin"),
      "--skip-tcb",
      "--at",
      "2022-01-28T23:44:36Z",
      "--json",
    ]);
    assert.equal(code, 0);
    assert.equal((JSON.parse(stdout) as { tcbStatus: string }).tcbStatus, "NotEvaluated");
  });

  test("usage errors exit 2", () => {
    assert.equal(run(["verify-quote"]).code, 2);
    assert.equal(
      run(["verify-quote", vector("dcap-qvl/sgx_quote")]).code,
      2,
      "no collateral and no --skip-tcb",
    );
    assert.equal(run([...sgxArgs, "--at", "yesterday"]).code, 2);
    assert.equal(run([...sgxArgs, "--bogus"]).code, 2);
    assert.equal(run(["verify-quote", "/no/such/file", "--skip-tcb"]).code, 2);
    assert.equal(run(["frobnicate"]).code, 2);
  });
});

describe("cloister up (argument handling; the running stack is tested in services/portal/test)", () => {
  test("refuses bad ports and unknown options with a usage error", async () => {
    for (const argv of [
      ["up", "--port-base", "80"],
      ["up", "--port-base", "seven"],
      ["up", "--bogus"],
    ]) {
      let stderr = "";
      const code = await runCli(argv, { stdout: () => undefined, stderr: (text) => (stderr += text) });
      assert.equal(code, 2, argv.join(" "));
      assert.match(stderr, /Usage: cloister up/);
    }
  });
});

describe("cloister keys and audit (argument handling; the running stack is tested in services/portal/test)", () => {
  test("a wrong action, a bad batch size or a missing stack is a usage error", async () => {
    const empty = mkdtempSync(join(tmpdir(), "cloister-cli-"));
    try {
      for (const [argv, expected] of [
        [["keys", "spin"], /Usage: cloister keys/],
        [["keys", "rotate", "--batch", "0"], /Usage: cloister keys/],
        [["keys", "rotate", "--batch", "many"], /Usage: cloister keys/],
        [["keys", "rotate", "--data-dir", empty], /stack\.json is missing/],
        [["keys", "reencrypt", "--data-dir", empty], /stack\.json is missing/],
        [["audit", "verify", "--data-dir", empty], /stack\.json is missing/],
        [["audit", "check"], /Usage: cloister audit/],
      ] as const) {
        let stderr = "";
        const code = await runCli([...argv], { stdout: () => undefined, stderr: (text) => (stderr += text) });
        assert.equal(code, 2, argv.join(" "));
        assert.match(stderr, expected, argv.join(" "));
      }
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

test("cloister approvals: an approver's key, and approvals the key broker's check accepts for that change only", async () => {
  const folder = mkdtempSync(join(tmpdir(), "cloister-approvals-"));
  try {
    const keyFile = join(folder, "approver.jwk");
    const made = await runAsync(["approvals", "approver-key", "--out", keyFile]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const publicJwk = JSON.parse(made.stdout) as Jwk;
    assert.equal(publicJwk.d, undefined, "the public key only is printed");
    assert.equal(publicJwk.kid, await approverId(publicJwk));
    assert.equal(
      (await runAsync(["approvals", "approver-key", "--out", keyFile])).code,
      2,
      "never overwritten",
    );

    const policy = {
      version: "1.0.0",
      anyOf: [{ authority: "https://a.test", allOf: [{ claim: "c", equals: 1 }] }],
    };
    const policyFile = join(folder, "policy.json");
    writeFileSync(policyFile, JSON.stringify(policy, null, 2));
    const approve = (...args: string[]) =>
      runAsync(["approvals", "approve", "--approver", keyFile, "--key", "tenant-a", ...args]);
    const approved = await approve("--set-policy", "--policy", policyFile);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stderr, new RegExp(`policy SHA-256 \\(canonical JSON\\): ${policyDigest(policy)}`));
    const check = async (change: KeyChange, approval: string) =>
      (await checkKeyChangeApprovals(change, [approval.trim()], [publicJwk], new Date())).approvedBy.length;
    assert.equal(await check({ action: "set-policy", key: "tenant-a", policy }, approved.stdout), 1);
    assert.equal(await check({ action: "create", key: "tenant-a", policy }, approved.stdout), 0);
    assert.equal(await check({ action: "set-policy", key: "tenant-b", policy }, approved.stdout), 0);
    const destroy = await approve("--destroy-version", "3");
    assert.equal(destroy.code, 0, destroy.stderr);
    assert.equal(await check({ action: "destroy-version", key: "tenant-a", version: 3 }, destroy.stdout), 1);
    for (const args of [
      [],
      ["--create", "--destroy-version", "2"],
      ["--destroy-version", "two"],
      ["--destroy-version", "2", "--valid-hours", "200"],
    ]) {
      assert.equal((await approve(...args)).code, 2, args.join(" "));
    }
    for (const argv of [["approvals", "sign"]]) {
      assert.equal((await runAsync(argv)).code, 2, argv.join(" "));
    }
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test("the installed `cloister` binary works from the repository root", () => {
  const binary = join(repositoryRoot, "node_modules/.bin/cloister");
  assert.ok(existsSync(binary), "node_modules/.bin/cloister is missing: run `npm ci`");
  assert.ok(
    existsSync(join(repositoryRoot, "packages/cli/dist/bin.js")),
    "the CLI is not built: run `npm run build`",
  );
  const result = spawnSync(binary, [...sgxArgs, "--at", "2025-07-04T10:28:44Z", "--json"], {
    cwd: repositoryRoot,
    encoding: "utf8",
  });
  assert.equal(result.status, 0, result.stderr);
  assert.equal((JSON.parse(result.stdout) as { ok: boolean }).ok, true);
});

test("cloister up's restart policy: a growing pause while a service keeps dying soon after starting, never giving up", () => {
  const start = 1_000_000;
  let failures: number[] = [];
  const delays: number[] = [];
  const looping: boolean[] = [];
  for (let exit = 0; exit < 8; exit++) {
    const decision = restartPolicy(failures, start + exit * 1000, true);
    failures = decision.failures;
    delays.push(decision.delayMs);
    looping.push(decision.crashLooping);
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  assert.deepEqual(looping, [false, false, false, false, true, true, true, true]);
  assert.equal(Math.max(...delays), longestRestartPauseMs);
  // A service that stayed up a while starts again after 1 s, its count cleared.
  assert.deepEqual(restartPolicy(failures, start + 9000, false), {
    failures: [],
    delayMs: 1000,
    crashLooping: false,
  });
  // Early exits older than a minute no longer count.
  assert.equal(restartPolicy(failures, start + 8000 + 61_000, true).delayMs, 1000);
});

test("cloister policy sign: an envelope the attestation service takes as a declared policy in production", async () => {
  const folder = mkdtempSync(join(tmpdir(), "cloister-policy-"));
  try {
    const manager = createPolicyManager();
    const keyFile = join(folder, "signer.pem");
    writeFileSync(keyFile, manager.privateKey.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    const policy = `version=1.0; authorizationrules{ [type=="x-ms-sgx-is-debuggable", value==false] => permit(); }; issuancerules{ => issue(type="site", value="st-elsewhere"); };`;
    const policyFile = join(folder, "sgx.policy");
    writeFileSync(policyFile, policy);
    // The folder the service reads (CLOISTER_POLICIES_DIR), one envelope per attestation type.
    const declared = join(folder, "declared");
    mkdirSync(declared);
    const signed = await runAsync([
      "policy",
      "sign",
      "--policy",
      policyFile,
      "--key",
      keyFile,
      "--out",
      join(declared, "SgxEnclave.jws"),
    ]);
    assert.equal(signed.code, 0, signed.stderr);
    const platform = createSimulationPlatform();
    const app = await buildAttestationService({
      issuer: "https://attestation.test",
      provider: simulationProvider(platform, {
        mrenclave: "5e".repeat(32),
        mrsigner: "51".repeat(32),
        productId: 1,
        svn: 1,
      }),
      policyMode: "production",
      policySigners: [manager.certificatePem],
      declaredPolicies: readDeclaredPolicies(declared),
    });
    try {
      const read = await app.inject({ method: "GET", url: "/policies/SgxEnclave" });
      const claims = JSON.parse(
        Buffer.from(read.json<{ token: string }>().token.split(".")[1] ?? "", "base64url").toString(),
      ) as { "x-ms-policy": string };
      assert.equal(Buffer.from(claims["x-ms-policy"], "base64url").toString(), policy);
    } finally {
      await app.close();
    }

    // To standard output as well; a policy that does not parse, or a key that cannot sign, is refused here.
    const printed = await runAsync(["policy", "sign", "--policy", policyFile, "--key", keyFile]);
    assert.match(printed.stdout, /^eyJ[\w-]+\.[\w-]+\.[\w-]+\n$/);
    writeFileSync(policyFile, "version=1.0; authorizationrules{ => permit() }");
    const broken = await runAsync(["policy", "sign", "--policy", policyFile, "--key", keyFile]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /the policy does not parse/);
    writeFileSync(policyFile, policy);
    const edwards = join(folder, "ed25519.pem");
    writeFileSync(
      edwards,
      generateKeyPairSync("ed25519").privateKey.export({ format: "pem", type: "pkcs8" }),
    );
    const wrongKey = await runAsync(["policy", "sign", "--policy", policyFile, "--key", edwards]);
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stderr, /neither RSA nor EC P-256/);
    assert.equal((await runAsync(["policy", "sign", "--policy", policyFile])).code, 2, "--key is required");
    assert.equal((await runAsync(["policy", "seal"])).code, 2);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test("cloister backup: a checked online copy of the embedded record store in a new file, never over an existing one", async () => {
  const scratch = mkdtempSync(join(tmpdir(), "cloister-backup-cli-"));
  try {
    const dataDirectory = join(scratch, "data");
    mkdirSync(dataDirectory);
    const missing = await runAsync([
      "backup",
      "--data-dir",
      dataDirectory,
      "--out",
      join(scratch, "none.db"),
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no embedded record store/);
    assert.equal(existsSync(join(scratch, "none.db")), false);
    assert.equal((await runAsync(["backup", "--data-dir", dataDirectory])).code, 2, "--out is required");

    // The store stays open (as the running platform holds it) while it is backed up.
    const store = openSqliteStore(join(dataDirectory, "records.db"));
    await store.migrate();
    try {
      const out = join(scratch, "backup.db");
      const done = await runAsync(["backup", "--data-dir", dataDirectory, "--out", out, "--json"]);
      assert.equal(done.code, 0, done.stderr);
      const answer = JSON.parse(done.stdout) as { backup: string; pages: number; integrity: string };
      assert.equal(answer.backup, out);
      assert.equal(answer.integrity, "ok");
      assert.ok(answer.pages > 0);
      assert.equal(readFileSync(out).subarray(0, 16).toString("latin1"), "SQLite format 3\0");
      const copy = openSqliteStore(out);
      await copy.migrate();
      await copy.close();

      writeFileSync(join(scratch, "taken.db"), "someone else's file");
      const refused = await runAsync([
        "backup",
        "--data-dir",
        dataDirectory,
        "--out",
        join(scratch, "taken.db"),
      ]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /exists already/);
      assert.equal(readFileSync(join(scratch, "taken.db"), "utf8"), "someone else's file");
    } finally {
      await store.close();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test("cloister accounts: an admin lists staff, disables leavers, changes a role, over TLS to the running platform; refusals are reported one by one", async () => {
  const scratch = mkdtempSync(join(tmpdir(), "cloister-accounts-cli-"));
  const ca = createDevCertificateAuthority("Accounts test CA");
  writeFileSync(join(scratch, "ca.pem"), ca.certificatePem);
  const platform = await startTestPlatform({ https: issueServerCertificate(ca, { ips: ["127.0.0.1"] }) });
  const password = "correct horse battery staple";
  const previousPassword = process.env.CLOISTER_ADMIN_PASSWORD;
  try {
    for (const [email, role] of [
      ["admin@t.test", "admin"],
      ["clerk@t.test", "clerk"],
      ["leaver@t.test", "clerk"],
    ] as const) {
      await platform.accounts.create({ email, password, tenantId: "hospital-a", role });
    }
    const url = await platform.app.listen({ port: 0, host: "127.0.0.1" });
    writeFileSync(
      join(scratch, "stack.json"),
      JSON.stringify({ platform: url, keyBroker: url, caCert: join(scratch, "ca.pem") }),
    );
    process.env.CLOISTER_ADMIN_PASSWORD = password;
    const accounts = (...args: string[]) =>
      runAsync(["accounts", ...args, "--data-dir", scratch, "--email", "admin@t.test"]);

    const listed = await accounts("list");
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^leaver@t\.test\tclerk\tactive\tlast sign-in never$/m);
    assert.match(listed.stdout, /^admin@t\.test\tadmin\tactive\tlast sign-in 20/m);

    // A leaver and a mistyped email: the one is disabled, the other refused, and the exit code says so.
    const disabled = await accounts("disable", "leaver@t.test", "nobody@t.test");
    assert.equal(disabled.code, 1);
    assert.equal(disabled.stdout, "leaver@t.test: clerk, disabled\nnobody@t.test: refused (ERR_NOT_FOUND)\n");
    const leaverId = (await platform.accounts.list("hospital-a")).find(
      (account) => account.email === "leaver@t.test",
    )?.id;
    assert.equal((await platform.accounts.summary("hospital-a", leaverId ?? ""))?.active, false);
    await assert.rejects(
      platform.accounts.login("leaver@t.test", password, "test"),
      (error: unknown) => (error as { code?: string }).code === "ERR_ACCOUNT_DISABLED",
    );

    const moved = await accounts("role", "clerk@t.test", "clinician", "--json");
    assert.equal(moved.code, 0, moved.stderr);
    const [result] = JSON.parse(moved.stdout) as { email: string; ok: boolean; account: { role: string } }[];
    assert.equal(result?.ok, true);
    assert.equal(result.account.role, "clinician");
    // The platform's rules hold: an admin does not disable their own account.
    const self = await accounts("disable", "admin@t.test");
    assert.equal(self.code, 1);
    assert.match(self.stdout, /admin@t\.test: refused \(ERR_LAST_ADMIN\)/);

    for (const usage of [
      ["role", "clerk@t.test"],
      ["role", "clerk@t.test", "surgeon"],
      ["disable"],
      ["list", "x"],
      ["frobnicate"],
    ]) {
      assert.equal((await accounts(...usage)).code, 2, usage.join(" "));
    }
    process.env.CLOISTER_ADMIN_PASSWORD = "not the password at all";
    const refused = await accounts("list");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /sign-in refused \(HTTP 401\)/);
    for (const output of [listed, disabled, moved, self, refused]) {
      assert.ok(!`${output.stdout}${output.stderr}`.includes(password), "the password is never printed");
    }
  } finally {
    if (previousPassword === undefined) {
      delete process.env.CLOISTER_ADMIN_PASSWORD;
    } else {
      process.env.CLOISTER_ADMIN_PASSWORD = previousPassword;
    }
    await platform.close();
    rmSync(scratch, { recursive: true, force: true });
  }
});
