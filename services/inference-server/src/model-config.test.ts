// config.json's intendedPatients: the patients a model is for, checked like the rest of the config.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { InferenceError } from "./errors.js";
import { parseModelConfig } from "./model-config.js";

const committed = JSON.parse(
  readFileSync(
    new URL("../../../models/repository/chest-xray-pneumonia/1/config.json", import.meta.url),
    "utf8",
  ),
) as Record<string, unknown>;
const folder = { name: "chest-xray-pneumonia", version: "1" };

test("a model's intendedPatients is read with its config, and a malformed one stops the repository loading", () => {
  assert.deepEqual(parseModelConfig(committed, folder).intendedPatients, { minAgeYears: 1, maxAgeYears: 5 });
  const { intendedPatients, ...anyone } = committed;
  assert.ok(intendedPatients !== undefined);
  assert.equal(parseModelConfig(anyone, folder).intendedPatients, undefined, "none: anyone");
  for (const bad of [{ minAgeYears: 5, maxAgeYears: 1 }, { minAgeYears: "1" }, { sex: ["woman"] }, {}]) {
    assert.throws(
      () => parseModelConfig({ ...committed, intendedPatients: bad }, folder),
      (error: unknown) =>
        error instanceof InferenceError &&
        error.code === "ERR_MODEL_REPOSITORY" &&
        /intendedPatients/.test(error.message),
      JSON.stringify(bad),
    );
  }
});
