import assert from "node:assert/strict";
import { test } from "node:test";
import { ImagingError } from "./errors.js";
import { ageInYears, describePatientAge, fitsPatientAge, parsePatientAge } from "./intended-use.js";

const at = new Date("2026-11-30T12:00:00Z");

test("a patient's age in full years, from a full or a partial FHIR birth date", () => {
  assert.deepEqual(ageInYears("2021-11-30", at), { min: 5, max: 5 }, "the birthday itself");
  assert.deepEqual(ageInYears("2021-12-01", at), { min: 4, max: 4 }, "the day before the birthday");
  assert.deepEqual(ageInYears("2021-11", at), { min: 5, max: 5 }, "born in November 2021: five by today");
  assert.deepEqual(ageInYears("2021-12", at), { min: 4, max: 4 });
  assert.deepEqual(ageInYears("2021-11", new Date("2026-11-15T00:00:00Z")), { min: 4, max: 5 }, "mid-month");
  assert.deepEqual(ageInYears("2021", at), { min: 4, max: 5 });
  assert.deepEqual(ageInYears("2026-11-30", at), { min: 0, max: 0 }, "born today");
  assert.deepEqual(ageInYears("2026", at), { min: 0, max: 0 }, "born this year, maybe later this year");
  assert.deepEqual(ageInYears("1961-04-12", at), { min: 65, max: 65 });
  for (const unknown of [undefined, "", "2026-12-01", "2027", "61-04-12", "2021-13-01", "2021-02-32"]) {
    assert.equal(ageInYears(unknown, at), undefined, String(unknown));
  }
});

test("whether a patient fits a model's ages: outside only when certainly outside", () => {
  const children = { minYears: 1, maxYears: 5 };
  assert.equal(fitsPatientAge(children, "2023-04-12", at), "within");
  assert.equal(fitsPatientAge(children, "1961-04-12", at), "outside");
  assert.equal(fitsPatientAge(children, "2026-06-01", at), "outside", "an infant under one");
  assert.equal(fitsPatientAge(children, "2021-11-30", at), "within", "five today");
  assert.equal(fitsPatientAge(children, "2020-11-29", at), "outside", "six since yesterday");
  assert.equal(fitsPatientAge(children, undefined, at), "unknown", "no birth date recorded");
  assert.equal(fitsPatientAge(children, "2021", at), "within", "4 or 5");
  assert.equal(fitsPatientAge(children, "2020", at), "unknown", "5 or 6");
  assert.equal(fitsPatientAge({ minYears: 18 }, "1961", at), "within");
  assert.equal(fitsPatientAge({ maxYears: 17 }, "1961", at), "outside");
  assert.equal(fitsPatientAge(undefined, undefined, at), "within", "a model for any age");
});

test("a config's patientAge is checked; its words say the range", () => {
  assert.deepEqual(parsePatientAge({ minYears: 1, maxYears: 5 }), { minYears: 1, maxYears: 5 });
  assert.deepEqual(parsePatientAge({ minYears: 18 }), { minYears: 18 });
  assert.equal(parsePatientAge(undefined), undefined);
  for (const bad of [
    {},
    { minYears: 5, maxYears: 1 },
    { minYears: -1 },
    { maxYears: 1.5 },
    { years: 3 },
    5,
    null,
  ]) {
    assert.throws(
      () => parsePatientAge(bad),
      (error: unknown) => error instanceof ImagingError && error.code === "ERR_IMAGE_CONFIG",
      JSON.stringify(bad),
    );
  }
  assert.equal(describePatientAge({ minYears: 1, maxYears: 5 }), "aged 1 to 5 years");
  assert.equal(describePatientAge({ minYears: 18 }), "aged 18 years and older");
  assert.equal(describePatientAge({ maxYears: 17 }), "aged up to 17 years");
});
