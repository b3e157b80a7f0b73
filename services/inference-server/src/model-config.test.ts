// config.json's patientAge: the ages of the patients a model is for, checked like the rest of the config.
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

test("a model's patientAge is read with its config, and a malformed one stops the repository loading", () => {
  assert.deepEqual(parseModelConfig(committed, folder).patientAge, { minYears: 1, maxYears: 5 });
  const { patientAge, ...anyAge } = committed;
  assert.ok(patientAge !== undefined);
  assert.equal(parseModelConfig(anyAge, folder).patientAge, undefined, "no range: any age");
  for (const bad of [{ minYears: 5, maxYears: 1 }, { minYears: "1" }, {}]) {
    assert.throws(
      () => parseModelConfig({ ...committed, patientAge: bad }, folder),
      (error: unknown) =>
        error instanceof InferenceError &&
        error.code === "ERR_MODEL_REPOSITORY" &&
        /patientAge/.test(error.message),
      JSON.stringify(bad),
    );
  }
});
