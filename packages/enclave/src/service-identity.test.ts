import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { createSimulationPlatform } from "@cloister/attestation";
import { EnclaveError } from "./errors.js";
import { measureService, serviceCodeFolders, serviceTee } from "./service-identity.js";

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

test("each service is measured over its own code and the packages it runs", () => {
  assert.deepEqual(serviceCodeFolders("inference-server"), [
    "services/inference-server/dist",
    "packages/attestation/dist",
    "packages/enclave/dist",
    "packages/imaging/dist",
    "packages/ohttp/dist",
    "packages/service-kit/dist",
  ]);
  const measurements = new Set(
    (["attestation-service", "key-broker", "inference-server", "platform-api"] as const).map((service) =>
      measureService(repositoryRoot, service),
    ),
  );
  assert.equal(measurements.size, 4, "four services, four measurements");
});

test("CLOISTER_TEE_PROVIDER picks the simulated, Gramine or configfs-tsm provider, and nothing else", () => {
  const directory = mkdtempSync(join(tmpdir(), "cloister-tee-"));
  try {
    createSimulationPlatform().save(directory);
    assert.equal(serviceTee(repositoryRoot, "platform-api", directory, {}).name, "sim");
    assert.equal(
      serviceTee(repositoryRoot, "platform-api", directory, { CLOISTER_TEE_PROVIDER: "gramine" }).name,
      "gramine",
    );
    assert.equal(
      serviceTee(repositoryRoot, "platform-api", directory, { CLOISTER_TEE_PROVIDER: "tsm" }).name,
      "tsm",
    );
    assert.throws(
      () => serviceTee(repositoryRoot, "platform-api", directory, { CLOISTER_TEE_PROVIDER: "none" }),
      (error) => error instanceof EnclaveError && error.code === "ERR_PROVIDER_UNAVAILABLE",
    );
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
