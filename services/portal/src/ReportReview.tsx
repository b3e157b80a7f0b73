// A clinician's review of an AI report: the AI's result is preliminary (decision support, not a diagnosis)
// until a clinician who has read the image confirms its finding or records that they do not, and why
// (`POST /fhir/DiagnosticReport/{id}/$review`). The report then becomes final and says who reviewed it. A
// review can be changed later, always with a note and from the version on screen (If-Match), and a report about
// the wrong patient or image is withdrawn (entered in error).
import { useState } from "react";
import type { DiagnosticReport } from "./fhir.js";
import type { PlatformClient } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { useFormAction } from "./use-form-action.js";

/** What a report's status means to staff. */
export const reportStatus: Readonly<Record<string, string>> = {
  preliminary: "AI result, awaiting clinician review",
  final: "Reviewed by a clinician",
  amended: "Reviewed by a clinician, review amended",
  corrected: "Reviewed by a clinician, review corrected",
  "entered-in-error": "Withdrawn: entered in error",
  cancelled: "Cancelled",
};

type Outcome = "confirmed" | "not-confirmed" | "entered-in-error";

const reviewedStatuses: ReadonlySet<string> = new Set(["final", "amended", "corrected", "entered-in-error"]);

/** The review as the report records it, once reviewed or withdrawn. */
export function reviewOf(
  report: DiagnosticReport,
): { outcome: Outcome; changed: boolean; at: string | undefined } | undefined {
  const code = report.conclusionCode?.[0]?.coding?.find(
    (coding) => coding.system === "https://cloister.dev/fhir/CodeSystem/clinician-review",
  )?.code;
  const outcome = outcomes.find(([value]) => value === code)?.[0];
  if (!reviewedStatuses.has(report.status) || outcome === undefined) {
    return undefined;
  }
  return {
    outcome,
    changed: report.status === "amended" || report.status === "corrected",
    at: report.meta?.lastUpdated,
  };
}

/** The verdicts, as the operation's `outcome` codes and as the form words them. */
const outcomes = [
  ["confirmed", "I confirm the AI finding"],
  ["not-confirmed", "I do not confirm the AI finding"],
  ["entered-in-error", "Wrong patient or wrong image: withdraw this report"],
] as const;

export function ReportReview(props: {
  readonly client: PlatformClient;
  readonly report: DiagnosticReport;
  /** After the review is stored: read the record again. */
  readonly onReviewed: () => Promise<void>;
  /** Change a review already recorded: a note is required, and the change is made from this version only. */
  readonly changing?: boolean;
  /** Leave without changing anything (only when changing). */
  readonly onCancel?: () => void;
}): React.JSX.Element {
  const [outcome, setOutcome] = useState<Outcome>();
  const [note, setNote] = useState("");
  const form = useFormAction();
  const id = props.report.id ?? "";
  const changing = props.changing === true;
  const noteRequired = changing || (outcome !== undefined && outcome !== "confirmed");
  const record = form.submitting(async () => {
    await props.client.json(
      "POST",
      `/fhir/DiagnosticReport/${encodeURIComponent(id)}/$review`,
      {
        resourceType: "Parameters",
        parameter: [
          { name: "outcome", valueCode: outcome },
          ...(note.trim() === "" ? [] : [{ name: "note", valueString: note.trim() }]),
        ],
      },
      // The version on screen: a review someone changed meanwhile is not overwritten unseen.
      changing ? [["if-match", `W/"${props.report.meta?.versionId ?? ""}"`]] : [],
    );
    await props.onReviewed();
  });
  return (
    <form
      className="review"
      aria-label={changing ? "Change the review" : "Clinician review"}
      data-testid="review-form"
      onSubmit={(event) => void record(event)}
    >
      <fieldset>
        <legend>
          {changing ? "Change the review of this result" : "Your review of the image and the AI finding"}
        </legend>
        {outcomes.map(([value, text]) => (
          <label key={value}>
            <input
              type="radio"
              name={`outcome-${id}`}
              value={value}
              checked={outcome === value}
              onChange={() => {
                setOutcome(value);
              }}
            />{" "}
            {text}
          </label>
        ))}
        <label className="note">
          Note
          {noteRequired
            ? changing
              ? " (required: why the review changes)"
              : outcome === "entered-in-error"
                ? " (required: what is wrong; the clerk orders again with the right image)"
                : " (required: what you found instead)"
            : " (optional)"}
          <textarea
            value={note}
            maxLength={2000}
            rows={2}
            onChange={(event) => {
              setNote(event.target.value);
            }}
          />
        </label>
      </fieldset>
      <div className="actions">
        <button
          type="submit"
          disabled={outcome === undefined || (noteRequired && note.trim() === "") || form.busy}
        >
          {outcome === "entered-in-error" ? "Withdraw report" : changing ? "Change review" : "Record review"}
        </button>
        {changing ? (
          <button type="button" className="secondary" onClick={props.onCancel}>
            Keep the review as it is
          </button>
        ) : null}
      </div>
      <ErrorMessage message={form.error} />
    </form>
  );
}
