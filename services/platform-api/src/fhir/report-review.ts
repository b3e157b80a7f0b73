// A clinician's review of an AI report: `POST /fhir/DiagnosticReport/{id}/$review`. The AI's DiagnosticReport is
// written `preliminary` (decision support, not a diagnosis). A clinician who has read the image confirms the
// AI finding or does not (then with a note saying why); the report becomes `final`, names the clinician in
// `resultsInterpreter`, records the review in `conclusion` and `conclusionCode`, and a Provenance (activity
// "verify", the clinician as verifier, the reviewed version as its source) is written in the same transaction.
// A report is reviewed once; a cancelled one never.
import { PlatformError } from "../errors.js";
import type { FhirResource } from "./search-parameters.js";

/** The review's outcome codes (`conclusionCode`). */
export const reviewCodeSystem = "https://cloister.dev/fhir/CodeSystem/clinician-review";
/** Staff accounts, as `resultsInterpreter` and the Provenance name them (never a patient identifier). */
export const staffAccountSystem = "https://cloister.dev/fhir/staff-account";

export interface ReportReview {
  readonly outcome: "confirmed" | "not-confirmed";
  /** Why, in the clinician's words (required when the finding is not confirmed); at most 2,000 characters. */
  readonly note: string | undefined;
}

const maxNoteLength = 2000;

/** Reads the operation's FHIR Parameters: `outcome` (valueCode) and `note` (valueString). */
export function parseReview(body: unknown): ReportReview {
  const parameters = body as { resourceType?: unknown; parameter?: unknown } | null;
  if (
    typeof parameters !== "object" ||
    parameters === null ||
    parameters.resourceType !== "Parameters" ||
    !Array.isArray(parameters.parameter)
  ) {
    throw new PlatformError("ERR_BAD_REQUEST", "send a FHIR Parameters resource", {
      expression: "Parameters",
    });
  }
  const named = (name: string): Record<string, unknown> | undefined =>
    (parameters.parameter as Record<string, unknown>[]).find((entry) => entry.name === name);
  const outcome = named("outcome")?.valueCode;
  if (outcome !== "confirmed" && outcome !== "not-confirmed") {
    throw new PlatformError("ERR_BAD_REQUEST", 'outcome is "confirmed" or "not-confirmed"', {
      expression: "Parameters.parameter.where(name='outcome').valueCode",
    });
  }
  const rawNote = named("note")?.valueString;
  if (rawNote !== undefined && (typeof rawNote !== "string" || rawNote.length > maxNoteLength)) {
    throw new PlatformError("ERR_BAD_REQUEST", `note is a string of at most ${maxNoteLength} characters`, {
      expression: "Parameters.parameter.where(name='note').valueString",
    });
  }
  const note = rawNote?.trim() === "" ? undefined : rawNote?.trim();
  if (outcome === "not-confirmed" && note === undefined) {
    throw new PlatformError("ERR_BAD_REQUEST", "say why the finding is not confirmed (note)", {
      expression: "Parameters.parameter.where(name='note').valueString",
    });
  }
  return { outcome, note };
}

/**
 * The reviewed report and its Provenance. `report` is the current version (preliminary); the answer's report is
 * the next version. Throws ERR_REPORT_STATE for a report that is not awaiting review.
 */
export function reviewReport(
  report: FhirResource,
  review: ReportReview,
  reviewer: { readonly subject: string },
  now: Date,
): { report: FhirResource; provenance: FhirResource } {
  if (report.status !== "preliminary") {
    throw new PlatformError(
      "ERR_REPORT_STATE",
      report.status === "cancelled"
        ? "a cancelled report has no result to review"
        : "the report was reviewed already",
    );
  }
  const id = report.id ?? "";
  const version = Number((report.meta as { versionId?: string } | undefined)?.versionId ?? "0");
  const clinician = {
    identifier: { system: staffAccountSystem, value: reviewer.subject },
    display: "Reviewing clinician",
  };
  // The AI's own statement, without the note that it awaited this review.
  const aiResult = (typeof report.conclusion === "string" ? report.conclusion : "")
    .split(" AI decision support")[0]
    ?.trim();
  const verdict =
    review.outcome === "confirmed"
      ? "Clinician review: the AI finding is confirmed."
      : "Clinician review: the AI finding is NOT confirmed.";
  const reviewed: FhirResource = {
    ...report,
    status: "final",
    resultsInterpreter: [clinician],
    conclusion: [verdict, review.note === undefined ? "" : `Note: ${review.note}`, `AI result: ${aiResult}`]
      .filter((part) => part !== "")
      .join(" "),
    conclusionCode: [
      {
        coding: [{ system: reviewCodeSystem, code: review.outcome }],
        text:
          review.outcome === "confirmed"
            ? "AI finding confirmed by a clinician"
            : "AI finding not confirmed by a clinician",
      },
    ],
  };
  const provenance: FhirResource = {
    resourceType: "Provenance",
    target: [{ reference: `DiagnosticReport/${id}/_history/${version + 1}` }],
    recorded: now.toISOString(),
    activity: {
      coding: [{ system: "http://terminology.hl7.org/CodeSystem/v3-DataOperation", code: "UPDATE" }],
      text: "clinician review of an AI result",
    },
    agent: [
      {
        type: {
          coding: [
            {
              system: "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
              code: "verifier",
            },
          ],
        },
        who: clinician,
      },
    ],
    entity: [{ role: "revision", what: { reference: `DiagnosticReport/${id}/_history/${version}` } }],
  };
  return { report: reviewed, provenance };
}
