// Whom a model is for: the patients it was trained on (its config.json's `intendedPatients`:
// `{minAgeYears?, maxAgeYears?, sex?}`), and whether a patient is among them. The inference server publishes it
// with the model's metadata, the platform's workflow refuses to analyse the image of a patient outside it (a
// model says nothing reliable about patients unlike those it learned from), and the portal says so before the
// order is placed. Browser-safe: no Node APIs.
import { ImagingError } from "./errors.js";

/** Ages in whole years, inclusive, either end open; and the sexes it learned from (absent: any). */
export interface IntendedPatients {
  readonly minAgeYears?: number;
  readonly maxAgeYears?: number;
  readonly sex?: readonly ("male" | "female")[];
}

/** What the platform knows of a patient: FHIR Patient.birthDate and Patient.gender. */
export interface PatientFacts {
  readonly birthDate?: string | undefined;
  readonly gender?: string | undefined;
  /** The age in whole years when the image was taken (a DICOM header's), used when no birth date is known. */
  readonly ageYears?: number | undefined;
}

/** How a patient fits a model's intended patients. */
export type PatientFit = "within" | "outside" | "unknown";

function wholeYears(value: unknown): value is number | undefined {
  return (
    value === undefined || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 150)
  );
}

const keys = new Set(["minAgeYears", "maxAgeYears", "sex"]);

/** A config.json's `intendedPatients` (absent: anyone); anything malformed is ERR_IMAGE_CONFIG. */
export function parseIntendedPatients(value: unknown): IntendedPatients | undefined {
  if (value === undefined) {
    return undefined;
  }
  const given =
    typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  const { minAgeYears, maxAgeYears, sex } = given;
  const sexes = Array.isArray(sex) ? (sex as unknown[]) : undefined;
  if (
    !wholeYears(minAgeYears) ||
    !wholeYears(maxAgeYears) ||
    (minAgeYears !== undefined && maxAgeYears !== undefined && minAgeYears > maxAgeYears) ||
    (sex !== undefined &&
      (sexes === undefined ||
        sexes.length === 0 ||
        !sexes.every((entry) => entry === "male" || entry === "female"))) ||
    Object.keys(given).length === 0 ||
    Object.keys(given).some((key) => !keys.has(key))
  ) {
    throw new ImagingError(
      "ERR_IMAGE_CONFIG",
      "intendedPatients is {minAgeYears?, maxAgeYears?, sex?}: whole years from 0 to 150, the minimum not above the maximum, and sex a list of male and female",
    );
  }
  return {
    ...(minAgeYears === undefined ? {} : { minAgeYears }),
    ...(maxAgeYears === undefined ? {} : { maxAgeYears }),
    ...(sexes === undefined ? {} : { sex: sexes as ("male" | "female")[] }),
  };
}

/** Full years from a birth date (year, month 1–12, day) to `at` (UTC). */
function yearsOld(year: number, month: number, day: number, at: Date): number {
  const beforeBirthday =
    at.getUTCMonth() + 1 < month || (at.getUTCMonth() + 1 === month && at.getUTCDate() < day);
  return at.getUTCFullYear() - year - (beforeBirthday ? 1 : 0);
}

/**
 * A patient's age in full years on `at`, from a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD): a range when the date
 * is partial. Undefined when there is none, it is malformed, or it lies after `at`.
 */
export function ageInYears(
  birthDate: string | undefined,
  at: Date,
): { readonly min: number; readonly max: number } | undefined {
  const match = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(birthDate ?? "");
  if (match === null) {
    return undefined;
  }
  const year = Number(match[1]);
  const month = match[2] === undefined ? undefined : Number(match[2]);
  const day = match[3] === undefined ? undefined : Number(match[3]);
  if ((month !== undefined && (month < 1 || month > 12)) || (day !== undefined && (day < 1 || day > 31))) {
    return undefined;
  }
  // The earliest and the latest day the patient can have been born on.
  const daysIn = (m: number): number => new Date(Date.UTC(year, m, 0)).getUTCDate();
  const max = yearsOld(year, month ?? 1, day ?? 1, at);
  const min = yearsOld(year, month ?? 12, day ?? daysIn(month ?? 12), at);
  return max < 0 ? undefined : { min: Math.max(0, min), max };
}

function ageFit(intended: IntendedPatients, patient: PatientFacts, at: Date): PatientFit {
  if (intended.minAgeYears === undefined && intended.maxAgeYears === undefined) {
    return "within";
  }
  const age =
    ageInYears(patient.birthDate, at) ??
    (patient.ageYears === undefined ? undefined : { min: patient.ageYears, max: patient.ageYears });
  if (age === undefined) {
    return "unknown";
  }
  const { minAgeYears = 0, maxAgeYears = Number.POSITIVE_INFINITY } = intended;
  if (age.max < minAgeYears || age.min > maxAgeYears) {
    return "outside";
  }
  return age.min >= minAgeYears && age.max <= maxAgeYears ? "within" : "unknown";
}

function sexFit(intended: IntendedPatients, gender: string | undefined): PatientFit {
  if (intended.sex === undefined) {
    return "within";
  }
  if (gender === "male" || gender === "female") {
    return intended.sex.includes(gender) ? "within" : "outside";
  }
  // Not recorded, "other" or "unknown": the record does not say.
  return "unknown";
}

/**
 * How a patient fits a model's intended patients on `at`: "outside" only when certainly outside (by age or by
 * sex), "unknown" when the record does not show (no birth date or sex recorded, or a partial birth date across
 * a limit).
 */
export function fitsIntendedPatients(
  intended: IntendedPatients | undefined,
  patient: PatientFacts,
  at: Date,
): PatientFit {
  if (intended === undefined) {
    return "within";
  }
  const fits = [ageFit(intended, patient, at), sexFit(intended, patient.gender)];
  return fits.includes("outside") ? "outside" : fits.includes("unknown") ? "unknown" : "within";
}

/** Whom a model is for, in words: "patients aged 1 to 5 years", "female patients aged 25 to 75 years". */
export function describeIntendedPatients(intended: IntendedPatients): string {
  const { minAgeYears, maxAgeYears, sex } = intended;
  const who = sex === undefined || sex.length === 2 ? "patients" : `${sex.join(" or ")} patients`;
  if (minAgeYears !== undefined && maxAgeYears !== undefined) {
    return `${who} aged ${String(minAgeYears)} to ${String(maxAgeYears)} years`;
  }
  if (minAgeYears !== undefined) {
    return `${who} aged ${String(minAgeYears)} years and older`;
  }
  return maxAgeYears !== undefined ? `${who} aged up to ${String(maxAgeYears)} years` : who;
}

/** What a DICOM image's own header says of its patient, as FHIR codes (see `readDicomPatient`). */
export interface ImagePatient {
  /** YYYY-MM-DD. */
  readonly birthDate?: string;
  readonly sex?: "M" | "F" | "O";
  /** Whole years, when the image was taken. */
  readonly ageYears?: number;
}

function genderOf(sex: ImagePatient["sex"]): "male" | "female" | undefined {
  return sex === "M" ? "male" : sex === "F" ? "female" : undefined;
}

/**
 * Whether an image's header contradicts the record it is filed in: a different birth date (compared as far as
 * a partial one in the record goes) or sex (male or female on both sides). Probably another patient's image.
 */
export function imageContradictsRecord(image: ImagePatient, record: PatientFacts): boolean {
  const birthDiffers =
    image.birthDate !== undefined &&
    record.birthDate !== undefined &&
    !image.birthDate.startsWith(record.birthDate);
  const imageGender = genderOf(image.sex);
  const recordGender = record.gender === "male" || record.gender === "female" ? record.gender : undefined;
  return (
    birthDiffers || (imageGender !== undefined && recordGender !== undefined && imageGender !== recordGender)
  );
}

/** A patient's recorded facts, completed from an image's header where the record has none. */
export function completeFromImage(record: PatientFacts, image: ImagePatient): PatientFacts {
  const gender = genderOf(image.sex);
  return {
    ...record,
    ...(record.birthDate === undefined && image.birthDate !== undefined
      ? { birthDate: image.birthDate }
      : {}),
    ...(record.gender === undefined && gender !== undefined ? { gender } : {}),
    ...(record.birthDate === undefined && image.birthDate === undefined && image.ageYears !== undefined
      ? { ageYears: image.ageYears }
      : {}),
  };
}
