import assert from "node:assert/strict";
import { test } from "node:test";
import { ImagingError } from "./errors.js";
import {
  ageInYears,
  completeFromImage,
  describeIntendedPatients,
  fitsIntendedPatients,
  imageContradictsRecord,
  parseIntendedPatients,
} from "./intended-use.js";

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

test("whether a patient is one a model is for: outside only when certainly outside, by age or by sex", () => {
  const children = { minAgeYears: 1, maxAgeYears: 5 };
  const fits = (birthDate?: string, gender?: string, intended: object = children) =>
    fitsIntendedPatients(intended, { birthDate, gender }, at);
  assert.equal(fits("2023-04-12"), "within");
  assert.equal(fits("1961-04-12"), "outside");
  assert.equal(fits("2026-06-01"), "outside", "an infant under one");
  assert.equal(fits("2021-11-30"), "within", "five today");
  assert.equal(fits("2020-11-29"), "outside", "six since yesterday");
  assert.equal(fits(undefined), "unknown", "no birth date recorded");
  assert.equal(fits("2021"), "within", "4 or 5");
  assert.equal(fits("2020"), "unknown", "5 or 6");
  assert.equal(fits("1961", undefined, { minAgeYears: 18 }), "within");
  assert.equal(fits("1961", undefined, { maxAgeYears: 17 }), "outside");

  const women = { minAgeYears: 25, maxAgeYears: 75, sex: ["female"] };
  assert.equal(fits("1961-04-12", "female", women), "within");
  assert.equal(fits("1961-04-12", "male", women), "outside");
  assert.equal(fits("2020-01-01", "female", women), "outside", "too young");
  assert.equal(fits("1961-04-12", "other", women), "unknown", "the record does not say");
  assert.equal(fits("1961-04-12", undefined, women), "unknown");
  assert.equal(fits(undefined, "male", women), "outside", "certainly outside by sex, whatever the age");
  assert.equal(fitsIntendedPatients(undefined, {}, at), "within", "a model for anyone");
});

test("a config's intendedPatients is checked; its words say whom", () => {
  assert.deepEqual(parseIntendedPatients({ minAgeYears: 1, maxAgeYears: 5 }), {
    minAgeYears: 1,
    maxAgeYears: 5,
  });
  assert.deepEqual(parseIntendedPatients({ sex: ["female"], minAgeYears: 25 }), {
    minAgeYears: 25,
    sex: ["female"],
  });
  assert.equal(parseIntendedPatients(undefined), undefined);
  for (const bad of [
    {},
    { minAgeYears: 5, maxAgeYears: 1 },
    { minAgeYears: -1 },
    { maxAgeYears: 1.5 },
    { ageYears: 3 },
    { sex: [] },
    { sex: ["woman"] },
    { sex: "female" },
    5,
    null,
  ]) {
    assert.throws(
      () => parseIntendedPatients(bad),
      (error: unknown) => error instanceof ImagingError && error.code === "ERR_IMAGE_CONFIG",
      JSON.stringify(bad),
    );
  }
  assert.equal(describeIntendedPatients({ minAgeYears: 1, maxAgeYears: 5 }), "patients aged 1 to 5 years");
  assert.equal(
    describeIntendedPatients({ minAgeYears: 25, maxAgeYears: 75, sex: ["female"] }),
    "female patients aged 25 to 75 years",
  );
  assert.equal(describeIntendedPatients({ minAgeYears: 18 }), "patients aged 18 years and older");
  assert.equal(describeIntendedPatients({ maxAgeYears: 17 }), "patients aged up to 17 years");
  assert.equal(describeIntendedPatients({ sex: ["male"] }), "male patients");
});

test("an image's header against the record: a contradiction, and what it adds where the record says nothing", () => {
  const record = { birthDate: "1961-04-12", gender: "female" };
  assert.equal(imageContradictsRecord({ birthDate: "1961-04-12", sex: "F" }, record), false);
  assert.equal(imageContradictsRecord({}, record), false, "a header that says nothing");
  assert.equal(imageContradictsRecord({ sex: "O" }, record), false);
  assert.equal(imageContradictsRecord({ birthDate: "1961-04-21" }, record), true);
  assert.equal(imageContradictsRecord({ sex: "M" }, record), true);
  assert.equal(imageContradictsRecord({ birthDate: "1961-04-21" }, { birthDate: "1961" }), false, "partial");
  assert.equal(imageContradictsRecord({ birthDate: "1962-01-01" }, { birthDate: "1961" }), true);
  assert.equal(imageContradictsRecord({ sex: "M" }, { gender: "unknown" }), false);
  assert.deepEqual(completeFromImage({}, { birthDate: "1961-04-12", sex: "M" }), {
    birthDate: "1961-04-12",
    gender: "male",
  });
  assert.deepEqual(
    completeFromImage(record, { birthDate: "2001-01-01", sex: "M" }),
    record,
    "the record wins",
  );
  assert.deepEqual(completeFromImage({ gender: "other" }, { sex: "F" }), { gender: "other" });
  // A header's age when the image was taken counts where no birth date is known.
  const children = { minAgeYears: 1, maxAgeYears: 5 };
  assert.deepEqual(completeFromImage({}, { ageYears: 45 }), { ageYears: 45 });
  assert.deepEqual(completeFromImage({ birthDate: "2023-01-01" }, { ageYears: 45 }), {
    birthDate: "2023-01-01",
  });
  assert.equal(fitsIntendedPatients(children, { ageYears: 45 }, at), "outside");
  assert.equal(fitsIntendedPatients(children, { ageYears: 3 }, at), "within");
  assert.equal(
    fitsIntendedPatients(children, { birthDate: "2023-01-01", ageYears: 45 }, at),
    "within",
    "a birth date wins",
  );
});
