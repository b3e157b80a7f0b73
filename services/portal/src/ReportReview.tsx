// A clinician's review of an AI report: the AI's result is preliminary (decision support, not a diagnosis)
// until a clinician who has read the image confirms its finding or records that they do not, and why
// (`POST /fhir/DiagnosticReport/{id}/$review`). The report then becomes final and says who reviewed it.
import { useState } from "react";
import type { DiagnosticReport } from "./fhir.js";
import type { PlatformClient } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { useFormAction } from "./use-form-action.js";

/** What a report's status means to staff. */
export const reportStatus: Readonly<Record<string, string>> = {
  preliminary: "AI result, awaiting clinician review",
  final: "Reviewed by a clinician",
  cancelled: "Cancelled",
};

/** The review as the report records it, once reviewed. */
export function reviewOf(
  report: DiagnosticReport,
): { confirmed: boolean; at: string | undefined } | undefined {
  const code = report.conclusionCode?.[0]?.coding?.find(
    (coding) => coding.system === "https://cloister.dev/fhir/CodeSystem/clinician-review",
  )?.code;
  if (report.status !== "final" || code === undefined) {
    return undefined;
  }
  return { confirmed: code === "confirmed", at: report.meta?.lastUpdated };
}

/** The two verdicts, as the operation's `outcome` codes and as the form words them. */
const outcomes = [
  ["confirmed", "I confirm the AI finding"],
  ["not-confirmed", "I do not confirm the AI finding"],
] as const;

export function ReportReview(props: {
  readonly client: PlatformClient;
  readonly report: DiagnosticReport;
  /** After the review is stored: read the record again. */
  readonly onReviewed: () => Promise<void>;
}): React.JSX.Element {
  const [outcome, setOutcome] = useState<"confirmed" | "not-confirmed">();
  const [note, setNote] = useState("");
  const form = useFormAction();
  const id = props.report.id ?? "";
  const needsNote = outcome === "not-confirmed" && note.trim() === "";
  const record = form.submitting(async () => {
    await props.client.json("POST", `/fhir/DiagnosticReport/${encodeURIComponent(id)}/$review`, {
      resourceType: "Parameters",
      parameter: [
        { name: "outcome", valueCode: outcome },
        ...(note.trim() === "" ? [] : [{ name: "note", valueString: note.trim() }]),
      ],
    });
    await props.onReviewed();
  });
  return (
    <form
      className="review"
      aria-label="Clinician review"
      data-testid="review-form"
      onSubmit={(event) => void record(event)}
    >
      <fieldset>
        <legend>Your review of the image and the AI finding</legend>
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
          Note{outcome === "not-confirmed" ? " (required: what you found instead)" : " (optional)"}
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
        <button type="submit" disabled={outcome === undefined || needsNote || form.busy}>
          Record review
        </button>
      </div>
      <ErrorMessage message={form.error} />
    </form>
  );
}
