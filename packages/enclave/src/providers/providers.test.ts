import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createSimulationPlatform,
  parseQuote,
  verifyQuote,
  verifyRuntimeDataBinding,
  verifySnpReport,
} from "@cloister/attestation";
import {
  EnclaveError,
  gramineProvider,
  measureCode,
  reportDataFor,
  simulationProvider,
  tsmProvider,
  vcekFromCertificateTable,
} from "../index.js";

const vectors = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../../shared/attestation-vectors");
const vector = (path: string): Buffer => readFileSync(join(vectors, path));
const scratch = mkdtempSync(join(tmpdir(), "cloister-enclave-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});
const runtimeData = new TextEncoder().encode('{"keys":[],"ohttp":"AA"}');
const expectedReportData = Buffer.concat([
  createHash("sha256").update(runtimeData).digest(),
  Buffer.alloc(32),
]);

async function rejectsWith(action: () => Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(action, (error: unknown) => error instanceof EnclaveError && error.code === code);
}

describe("measureCode", () => {
  test("is deterministic, changes with one byte, and ignores source maps", () => {
    const base = join(scratch, "code");
    mkdirSync(join(base, "dist/lib"), { recursive: true });
    writeFileSync(join(base, "dist/main.js"), "console.log(1);\n");
    writeFileSync(join(base, "dist/lib/util.js"), "export const x = 1;\n");
    const first = measureCode(base, ["dist"]);
    assert.match(first, /^[0-9a-f]{64}$/);
    assert.equal(measureCode(base, ["dist"]), first);
    writeFileSync(join(base, "dist/main.js.map"), "{}");
    assert.equal(measureCode(base, ["dist"]), first, "source maps do not count");
    writeFileSync(join(base, "dist/lib/util.js"), "export const x = 2;\n");
    assert.notEqual(measureCode(base, ["dist"]), first);
    assert.throws(
      () => measureCode(base, ["missing"]),
      (error: unknown) => error instanceof EnclaveError,
    );
  });
});

describe("sim provider", () => {
  const platform = createSimulationPlatform();
  const identity = { mrenclave: "aa".repeat(32), mrsigner: "bb".repeat(32), productId: 1, svn: 1 };
  const provider = simulationProvider(platform, identity);

  test("evidence is a simulated SGX quote binding the runtime data", async () => {
    const evidence = await provider.getEvidence(runtimeData);
    assert.equal(evidence.type, "sgx");
    const verified = verifyQuote(evidence.quote, {
      collateral: platform.collateral(),
      trustedRoots: [platform.rootSpkiSha256],
    });
    assert.equal(verified.claims["x-ms-sgx-mrenclave"], identity.mrenclave);
    verifyRuntimeDataBinding(runtimeData, verified.reportData);
  });

  test("sealing keys are bound to the measurement", async () => {
    const key = await provider.sealingKey("db");
    assert.equal(key.length, 32);
    assert.deepEqual(await provider.sealingKey("db"), key);
    assert.notDeepEqual(await provider.sealingKey("redis"), key);
    const other = simulationProvider(platform, { ...identity, mrenclave: "cc".repeat(32) });
    assert.notDeepEqual(await other.sealingKey("db"), key);
  });

  test("signer-bound sealing keys survive a new measurement, not a new signer", async () => {
    const key = await provider.sealingKey("db", "signer");
    assert.notDeepEqual(key, await provider.sealingKey("db"), "signer and measurement keys differ");
    const upgraded = simulationProvider(platform, { ...identity, mrenclave: "cc".repeat(32) });
    assert.deepEqual(await upgraded.sealingKey("db", "signer"), key);
    const otherSigner = simulationProvider(platform, { ...identity, mrsigner: "dd".repeat(32) });
    assert.notDeepEqual(await otherSigner.sealingKey("db", "signer"), key);
  });
});

describe("gramine provider (fake /dev/attestation with a real quote)", () => {
  const root = join(scratch, "gramine");
  mkdirSync(join(root, "keys"), { recursive: true });
  writeFileSync(join(root, "attestation_type"), "dcap\n");
  writeFileSync(join(root, "quote"), vector("dcap-qvl/sgx_quote"));
  writeFileSync(join(root, "keys/_sgx_mrenclave"), Buffer.alloc(16, 7));
  const provider = gramineProvider({ root });

  test("writes SHA-256(runtimeData) ‖ 0³² to user_report_data and returns the quote", async () => {
    const evidence = await provider.getEvidence(runtimeData);
    assert.deepEqual(readFileSync(join(root, "user_report_data")), expectedReportData);
    assert.ok(evidence.type === "sgx");
    assert.deepEqual(Buffer.from(evidence.quote), vector("dcap-qvl/sgx_quote"));
    assert.equal(parseQuote(evidence.quote).tee, "sgx");
  });

  test("derives sealing keys from Gramine's MRENCLAVE key", async () => {
    const key = await provider.sealingKey("db");
    assert.equal(key.length, 32);
    assert.notDeepEqual(await provider.sealingKey("other"), key);
  });

  test("fails closed: other attestation types, missing files", async () => {
    const epid = join(scratch, "gramine-epid");
    mkdirSync(epid, { recursive: true });
    writeFileSync(join(epid, "attestation_type"), "epid");
    await rejectsWith(
      () => gramineProvider({ root: epid }).getEvidence(runtimeData),
      "ERR_PROVIDER_UNAVAILABLE",
    );
    await rejectsWith(
      () => gramineProvider({ root: join(scratch, "nope") }).getEvidence(runtimeData),
      "ERR_PROVIDER_IO",
    );
    await rejectsWith(() => gramineProvider({ root: epid }).sealingKey("x"), "ERR_SEALING_UNAVAILABLE");
  });
});

describe("tsm provider (fake configfs-tsm with real evidence)", () => {
  test("TDX: writes inblob and returns the quote from outblob", async () => {
    const root = join(scratch, "tsm-tdx");
    const entry = join(root, "entry");
    mkdirSync(entry, { recursive: true });
    writeFileSync(join(entry, "provider"), "tdx_guest\n");
    writeFileSync(join(entry, "generation"), "1\n");
    writeFileSync(join(entry, "outblob"), vector("dcap-qvl/tdx_quote"));
    const evidence = await tsmProvider({ root, entryName: "entry" }).getEvidence(runtimeData);
    assert.deepEqual(readFileSync(join(entry, "inblob")), expectedReportData);
    assert.ok(evidence.type === "tdx");
    assert.equal(parseQuote(evidence.quote).tee, "tdx");
  });

  test("SEV-SNP: returns the report and the VCEK from the auxblob certificate table", async () => {
    const root = join(scratch, "tsm-snp");
    const entry = join(root, "entry");
    mkdirSync(entry, { recursive: true });
    writeFileSync(join(entry, "provider"), "sev_guest\n");
    writeFileSync(join(entry, "generation"), "4\n");
    writeFileSync(join(entry, "outblob"), vector("sev-snp-go-sev-guest/attestation.bin"));
    const vcek = vector("sev-snp-go-sev-guest/vcek.testcer");
    // Certificate table: one VCEK entry (GUID 63da758d-e664-4564-adc5-f4b93be8accd), then a zero entry.
    const table = Buffer.alloc(48 + vcek.length);
    Buffer.from("8d75da6364e66445adc5f4b93be8accd", "hex").copy(table, 0);
    table.writeUInt32LE(48, 16);
    table.writeUInt32LE(vcek.length, 20);
    vcek.copy(table, 48);
    writeFileSync(join(entry, "auxblob"), table);
    const evidence = await tsmProvider({ root, entryName: "entry" }).getEvidence(runtimeData);
    assert.ok(evidence.type === "sevsnp" && evidence.vcek !== undefined);
    assert.deepEqual(Buffer.from(evidence.vcek), vcek);
    const verified = verifySnpReport(evidence.report, {
      vcek: evidence.vcek,
      chain: vector("sev-snp-go-sev-guest/ask_ark_milan.pem").toString("utf8"),
      now: new Date("2025-01-01T00:00:00Z"),
    });
    assert.equal(verified.tee, "sevsnp");
    assert.equal(vcekFromCertificateTable(new Uint8Array(48)), undefined);
  });

  test("unknown providers and missing trees fail closed; there is no sealing key", async () => {
    const root = join(scratch, "tsm-other");
    mkdirSync(join(root, "entry"), { recursive: true });
    writeFileSync(join(root, "entry/provider"), "arm_cca_guest\n");
    writeFileSync(join(root, "entry/generation"), "1\n");
    writeFileSync(join(root, "entry/outblob"), "x");
    await rejectsWith(
      () => tsmProvider({ root, entryName: "entry" }).getEvidence(runtimeData),
      "ERR_PROVIDER_UNAVAILABLE",
    );
    writeFileSync(join(scratch, "not-a-directory"), "");
    await rejectsWith(
      () => tsmProvider({ root: join(scratch, "not-a-directory") }).getEvidence(runtimeData),
      "ERR_PROVIDER_IO",
    );
    await rejectsWith(() => tsmProvider({ root }).sealingKey("x"), "ERR_SEALING_UNAVAILABLE");
  });

  test("reportDataFor is SHA-256 followed by 32 zero bytes", () => {
    assert.deepEqual(Buffer.from(reportDataFor(runtimeData)), expectedReportData);
  });
});
