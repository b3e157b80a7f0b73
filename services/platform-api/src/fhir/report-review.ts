// A clinician's review of an AI report: `POST /fhir/DiagnosticReport/{id}/$review`. The AI's DiagnosticReport is
// written `preliminary` (decision support, not a diagnosis). A clinician who has read the image confirms the
// AI finding or does not (then with a note saying why); the report becomes `final`, names the clinician in
// `resultsInterpreter`, records the review in `conclusion` and `conclusionCode`, and a Provenance (activity
// "verify", the clinician as verifier, the reviewed version as its source) is written in the same transaction.
// A reviewed report can be reviewed again, always with a note: a changed verdict makes it `corrected`, the same
// verdict with a new note `amended`. A report about the wrong patient or image is withdrawn (`entered-in-error`),
// with its Observations and its order, so no result of it stands in the record and the clerk sees the order
// must be placed again. A cancelled or withdrawn report is final.
import { PlatformError } from "../errors.js";
import type { FhirResource } from "./search-parameters.js";

/** The review's outcome codes (`conclusionCode`). */
export const reviewCodeSystem = "https://cloister.dev/fhir/CodeSystem/clinician-review";
/** Staff accounts, as `resultsInterpreter` and the Provenance name them (never a patient identifier). */
export const staffAccountSystem = "https://cloister.dev/fhir/staff-account";

export const reviewOutcomes = ["confirmed", "not-confirmed", "entered-in-error"] as const;
export type ReviewOutcome = (typeof reviewOutcomes)[number];

export interface ReportReview {
  /** `entered-in-error`: the report is about another patient or image, and is withdrawn. */
  readonly outcome: ReviewOutcome;
  /**
   * Why, in the clinician's words: required when the finding is not confirmed, when a report is withdrawn and
   * when a reviewed report is reviewed again; at most 2,000 characters.
   */
  readonly note: string | undefined;
}

/** The statuses of a report a clinician has reviewed. */
export const reviewedStatuses: ReadonlySet<unknown> = new Set(["final", "amended", "corrected"]);

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
  const outcome = reviewOutcomes.find((known) => known === named("outcome")?.valueCode);
  if (outcome === undefined) {
    throw new PlatformError("ERR_BAD_REQUEST", `outcome is one of ${reviewOutcomes.join(", ")}`, {
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
  if (outcome !== "confirmed" && note === undefined) {
    throw new PlatformError(
      "ERR_BAD_REQUEST",
      outcome === "not-confirmed"
        ? "say why the finding is not confirmed (note)"
        : "say why the report is entered in error (note)",
      { expression: "Parameters.parameter.where(name='note').valueString" },
    );
  }
  return { outcome, note };
}

function versionOf(resource: FhirResource): number {
  return Number((resource.meta as { versionId?: string } | undefined)?.versionId ?? "0");
}

/** The clinician's verdict the report carries, once reviewed. */
export function verdictOf(report: FhirResource): ReviewOutcome | undefined {
  const codes = (report.conclusionCode ?? []) as { coding?: { system?: string; code?: string }[] }[];
  const code = codes
    .flatMap((concept) => concept.coding ?? [])
    .find((coding) => coding.system === reviewCodeSystem)?.code;
  return reviewOutcomes.find((known) => known === code);
}

/** The AI's own statement in a report's conclusion, without the review around it or the awaiting-review note. */
function aiStatement(report: FhirResource): string {
  const conclusion = typeof report.conclusion === "string" ? report.conclusion : "";
  const marker = "AI result: ";
  const at = conclusion.indexOf(marker);
  return (
    at >= 0 ? conclusion.slice(at + marker.length) : (conclusion.split(" AI decision support")[0] ?? "")
  ).trim();
}

const verdicts: Readonly<Record<ReviewOutcome, { conclusion: string; text: string }>> = {
  confirmed: {
    conclusion: "the AI finding is confirmed.",
    text: "AI finding confirmed by a clinician",
  },
  "not-confirmed": {
    conclusion: "the AI finding is NOT confirmed.",
    text: "AI finding not confirmed by a clinician",
  },
  "entered-in-error": {
    conclusion: "this report is entered in error and withdrawn; its result does not apply to this patient.",
    text: "Report withdrawn by a clinician: entered in error",
  },
};

export interface ReviewedReport {
  /** The report's next version. */
  readonly report: FhirResource;
  /** When the report is withdrawn: the next versions of its Observations and its order, `entered-in-error`. */
  readonly withdrawnWith: readonly FhirResource[];
  /** Names the clinician as verifier of the new versions, with the versions before as their sources. */
  readonly provenance: FhirResource;
}

/**
 * The reviewed report, what is withdrawn with it and its Provenance. `report` is the current version;
 * `related` are the current versions of its Observations and its order (needed only for a withdrawal). Throws
 * ERR_REPORT_STATE for a report that cannot be reviewed (cancelled, withdrawn) and ERR_BAD_REQUEST for a second
 * review without a note.
 */
export function reviewReport(
  report: FhirResource,
  related: readonly FhirResource[],
  review: ReportReview,
  reviewer: { readonly subject: string },
  now: Date,
): ReviewedReport {
  const reviewedBefore = reviewedStatuses.has(report.status);
  if (report.status !== "preliminary" && !reviewedBefore) {
    throw new PlatformError(
      "ERR_REPORT_STATE",
      report.status === "cancelled"
        ? "a cancelled report has no result to review"
        : report.status === "entered-in-error"
          ? "the report was withdrawn as entered in error"
          : "the report is not ready for review",
    );
  }
  if (reviewedBefore && review.note === undefined) {
    throw new PlatformError("ERR_BAD_REQUEST", "say why the review is changed (note)", {
      expression: "Parameters.parameter.where(name='note').valueString",
    });
  }
  const id = report.id ?? "";
  const version = versionOf(report);
  const clinician = {
    identifier: { system: staffAccountSystem, value: reviewer.subject },
    display: "Reviewing clinician",
  };
  const withdrawn = review.outcome === "entered-in-error";
  // FHIR R4: a final report changed to correct an error is `corrected`; changed otherwise (the same verdict
  // with another note), `amended`.
  const status = withdrawn
    ? "entered-in-error"
    : !reviewedBefore
      ? "final"
      : verdictOf(report) === review.outcome
        ? "amended"
        : "corrected";
  const verdict = verdicts[review.outcome];
  const reviewed: FhirResource = {
    ...report,
    status,
    resultsInterpreter: [clinician],
    conclusion: [
      `${reviewedBefore ? "Clinician review (changed)" : "Clinician review"}: ${verdict.conclusion}`,
      review.note === undefined ? "" : `Note: ${review.note}`,
      `AI result: ${aiStatement(report)}`,
    ]
      .filter((part) => part !== "")
      .join(" "),
    conclusionCode: [{ coding: [{ system: reviewCodeSystem, code: review.outcome }], text: verdict.text }],
  };
  const withdrawing = withdrawn ? related : [];
  const provenance: FhirResource = {
    resourceType: "Provenance",
    target: [
      { reference: `DiagnosticReport/${id}/_history/${version + 1}` },
      ...withdrawing.map((resource) => ({
        reference: `${resource.resourceType}/${resource.id ?? ""}/_history/${versionOf(resource) + 1}`,
      })),
    ],
    recorded: now.toISOString(),
    activity: {
      coding: [{ system: "http://terminology.hl7.org/CodeSystem/v3-DataOperation", code: "UPDATE" }],
      text: withdrawn
        ? "withdrawal of a report entered in error"
        : reviewedBefore
          ? "change of a clinician's review of an AI result"
          : "clinician review of an AI result",
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
    entity: [
      { role: "revision", what: { reference: `DiagnosticReport/${id}/_history/${version}` } },
      ...withdrawing.map((resource) => ({
        role: "revision",
        what: { reference: `${resource.resourceType}/${resource.id ?? ""}/_history/${versionOf(resource)}` },
      })),
    ],
  };
  return {
    report: reviewed,
    withdrawnWith: withdrawing.map((resource) => ({ ...resource, status: "entered-in-error" })),
    provenance,
  };
}
