// Admins and clinicians (an AI governance lead): how each AI model does in this hospital, from its clinicians'
// reviews (`GET /admin/ai-performance`): per model version and per AI finding, how many results were confirmed,
// not confirmed, withdrawn or still await review. Counts only; loaded on request.
import { useState } from "react";
import { ErrorMessage } from "./ErrorMessage.js";
import type { PlatformClient } from "./platform-client.js";
import { useFormAction } from "./use-form-action.js";

interface ModelPerformance {
  readonly model: string;
  readonly version: string;
  readonly results: number;
  readonly awaitingReview: number;
  readonly confirmed: number;
  readonly notConfirmed: number;
  readonly withdrawn: number;
  readonly agreement: number | null;
  readonly findings: readonly {
    readonly finding: string;
    readonly results: number;
    readonly confirmed: number;
    readonly notConfirmed: number;
  }[];
}

interface Performance {
  readonly models: readonly ModelPerformance[];
  readonly failed: number;
  readonly truncated: boolean;
}

const periods = [30, 90, 365] as const;

function share(part: number, whole: number): string {
  return whole === 0 ? "–" : `${Math.round((part / whole) * 100)}%`;
}

function summaryOf(model: ModelPerformance): string {
  const reviewed = model.confirmed + model.notConfirmed;
  return reviewed === 0
    ? `${model.model} v${model.version}: no finding reviewed yet`
    : `${model.model} v${model.version}: clinicians confirmed ${share(model.confirmed, reviewed)} of the findings they reviewed (${model.confirmed} of ${reviewed})`;
}

export function AiPerformance(props: { readonly client: PlatformClient }): React.JSX.Element {
  const [days, setDays] = useState<number>(90);
  const [report, setReport] = useState<Performance>();
  const { busy, error, submitting } = useFormAction();
  const load = submitting(async () => {
    setReport((await props.client.json("GET", `/admin/ai-performance?days=${days}`)) as Performance);
  });
  return (
    <section className="panel" aria-labelledby="ai-performance-title">
      <h2 id="ai-performance-title">AI model performance</h2>
      <p className="muted">
        How often this hospital&apos;s clinicians confirmed each model&apos;s findings when they reviewed
        them. It compares the AI with its reviewers, not with confirmed diagnoses.
      </p>
      <form className="row" onSubmit={(event) => void load(event)}>
        <label>
          Results issued in the last
          <select
            value={days}
            onChange={(event) => {
              setDays(Number(event.target.value));
            }}
          >
            {periods.map((period) => (
              <option key={period} value={period}>
                {period} days
              </option>
            ))}
          </select>
        </label>
        <button type="submit" disabled={busy}>
          Show AI model performance
        </button>
      </form>
      <ErrorMessage message={error} />
      {report === undefined ? null : report.models.length === 0 ? (
        <p data-testid="ai-performance-empty">No AI results were issued in this period.</p>
      ) : (
        report.models.map((model) => (
          <div key={`${model.model} ${model.version}`}>
            <table className="access" data-testid="ai-performance">
              <caption>{summaryOf(model)}</caption>
              <thead>
                <tr>
                  <th scope="col">AI finding</th>
                  <th scope="col">Results</th>
                  <th scope="col">Confirmed</th>
                  <th scope="col">Not confirmed</th>
                </tr>
              </thead>
              <tbody>
                {model.findings.map((finding) => (
                  <tr key={finding.finding}>
                    <th scope="row">{finding.finding}</th>
                    <td>{finding.results}</td>
                    <td>
                      {finding.confirmed} (
                      {share(finding.confirmed, finding.confirmed + finding.notConfirmed)})
                    </td>
                    <td>{finding.notConfirmed}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <p className="muted">
              {model.results} results: {model.awaitingReview} awaiting review, {model.withdrawn} withdrawn as
              entered in error (the wrong patient or image).
            </p>
          </div>
        ))
      )}
      {report !== undefined && report.failed > 0 ? (
        <p className="muted">{report.failed} analyses could not be completed (no result).</p>
      ) : null}
      {report?.truncated === true ? (
        <p className="warning">Only the newest 10,000 results of this period are counted.</p>
      ) : null}
    </section>
  );
}
