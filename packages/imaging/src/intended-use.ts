// Whom a model is for: the ages of the patients it was trained on (its config.json's `patientAge`,
// `{minYears?, maxYears?}`), and whether a patient is among them. The inference server publishes the range
// with the model's metadata, the platform's workflow refuses to analyse the image of a patient outside it (a
// model says nothing reliable about patients unlike those it learned from), and the portal says so before the
// order is placed. Browser-safe: no Node APIs.
import { ImagingError } from "./errors.js";

/** Whole years, inclusive; either end may be open. */
export interface PatientAgeRange {
  readonly minYears?: number;
  readonly maxYears?: number;
}

/** How a patient fits a model's age range. */
export type AgeFit = "within" | "outside" | "unknown";

function wholeYears(value: unknown): value is number | undefined {
  return (
    value === undefined || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 150)
  );
}

/** A config.json's `patientAge` (absent: any age); anything malformed is ERR_IMAGE_CONFIG. */
export function parsePatientAge(value: unknown): PatientAgeRange | undefined {
  if (value === undefined) {
    return undefined;
  }
  const range =
    typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  const { minYears, maxYears } = range;
  if (
    !wholeYears(minYears) ||
    !wholeYears(maxYears) ||
    (minYears === undefined && maxYears === undefined) ||
    Object.keys(range).some((key) => key !== "minYears" && key !== "maxYears") ||
    (minYears !== undefined && maxYears !== undefined && minYears > maxYears)
  ) {
    throw new ImagingError(
      "ERR_IMAGE_CONFIG",
      "patientAge is {minYears?, maxYears?}: whole years from 0 to 150, the minimum not above the maximum",
    );
  }
  return { ...(minYears === undefined ? {} : { minYears }), ...(maxYears === undefined ? {} : { maxYears }) };
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

/**
 * How a patient born on `birthDate` fits `range` on `at`: "outside" only when certainly outside, "unknown" when
 * the birth date is not recorded (or is partial and straddles a limit).
 */
export function fitsPatientAge(
  range: PatientAgeRange | undefined,
  birthDate: string | undefined,
  at: Date,
): AgeFit {
  if (range === undefined) {
    return "within";
  }
  const age = ageInYears(birthDate, at);
  if (age === undefined) {
    return "unknown";
  }
  const { minYears = 0, maxYears = Number.POSITIVE_INFINITY } = range;
  if (age.max < minYears || age.min > maxYears) {
    return "outside";
  }
  return age.min >= minYears && age.max <= maxYears ? "within" : "unknown";
}

/** The range in words: "aged 1 to 5 years", "aged 18 years and older", "aged up to 17 years". */
export function describePatientAge(range: PatientAgeRange): string {
  if (range.minYears !== undefined && range.maxYears !== undefined) {
    return `aged ${String(range.minYears)} to ${String(range.maxYears)} years`;
  }
  return range.minYears !== undefined
    ? `aged ${String(range.minYears)} years and older`
    : `aged up to ${String(range.maxYears ?? 0)} years`;
}
