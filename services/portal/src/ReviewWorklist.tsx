// A clinician's worklist: the AI results of the tenant still awaiting a clinician's review, those of urgent
// orders first (STAT, ASAP, urgent), then the rest, each oldest first (worklist.ts), each opening its
// patient, 20 at a time and more on request. Read again when a report changes (a new result, a review made
// elsewhere) and every minute, so a result no one has reviewed is not forgotten.
import { useCallback, useEffect, useRef, useState } from "react";
import { reportPriority, type DiagnosticReport, type Patient } from "./fhir.js";
import { PatientLink } from "./PatientSearch.js";
import type { PlatformClient } from "./platform-client.js";
import type { ReportEvent } from "./report-events.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { PriorityTag } from "./PriorityTag.js";
import { awaitingReview } from "./worklist.js";
import { ShowMore } from "./ShowMore.js";

const recheckMs = 60_000;
/** The worklist shows this many at first, the most urgent and then the oldest, and this many more on request. */
const perPage = 20;

interface Entry {
  readonly report: DiagnosticReport;
  readonly patient: Patient | undefined;
}

export function ReviewWorklist(props: {
  readonly client: PlatformClient;
  readonly lastEvent: ReportEvent | undefined;
  readonly onOpen: (patient: Patient) => void;
}): React.JSX.Element {
  const { client } = props;
  const [entries, setEntries] = useState<Entry[]>();
  const [total, setTotal] = useState(0);
  const [urgentTotal, setUrgentTotal] = useState(0);
  const [limit, setLimit] = useState(perPage);
  const [error, setError] = useState<string>();
  const known = useRef(new Map<string, Patient>());

  const load = useCallback(async (): Promise<void> => {
    try {
      // The platform sorts: the oldest are found however many wait (a preliminary report is not updated until
      // its review, so its last update is when the AI result arrived).
      const page = await awaitingReview(client, limit);
      const awaiting = page.reports;
      // Each patient is read once per page (every read is audited): the worklist is read again every minute.
      const patients = known.current;
      const subjects = [...new Set(awaiting.map((report) => report.subject?.reference ?? ""))];
      await Promise.all(
        subjects
          .filter((reference) => reference.startsWith("Patient/") && !patients.has(reference))
          .map(async (reference) => {
            patients.set(reference, (await client.json("GET", `/fhir/${reference}`)) as Patient);
          }),
      );
      setTotal(page.total);
      setUrgentTotal(page.urgent);
      setEntries(
        awaiting.map((report) => ({ report, patient: patients.get(report.subject?.reference ?? "") })),
      );
      setError(undefined);
    } catch (failure) {
      setError(`The worklist could not be read: ${(failure as Error).message}`);
    }
  }, [client, limit]);

  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), recheckMs);
    return () => {
      clearInterval(timer);
    };
  }, [load]);

  useEffect(() => {
    if (props.lastEvent?.type === "DiagnosticReport") {
      void load();
    }
  }, [props.lastEvent, load]);

  return (
    <section className="panel" aria-labelledby="worklist-title" data-testid="worklist">
      <h2 id="worklist-title">Awaiting review{entries === undefined ? "" : ` (${String(total)})`}</h2>
      <ErrorMessage message={error} />
      {entries === undefined ? null : entries.length === 0 ? (
        <p>No AI result is awaiting review.</p>
      ) : total > entries.length ? (
        <p className="muted">
          {urgentTotal > 0
            ? `The ${String(entries.length)} most urgent, then waiting longest (${String(urgentTotal)} urgent):`
            : `The ${String(entries.length)} waiting longest:`}
        </p>
      ) : urgentTotal > 0 ? (
        <p className="muted">Urgent first, then waiting longest:</p>
      ) : null}
      {entries === undefined || entries.length === 0 ? null : (
        <ul className="results">
          {entries.map(({ report, patient }) => (
            <li key={report.id}>
              {patient === undefined ? (
                <span>(patient not readable)</span>
              ) : (
                <PatientLink patient={patient} onOpen={props.onOpen} />
              )}{" "}
              <PriorityTag priority={reportPriority(report)} />{" "}
              <span className="muted">
                {report.code?.text ?? "AI analysis"}
                {report.issued === undefined ? "" : ` · ${new Date(report.issued).toLocaleString()}`}
              </span>
            </li>
          ))}
        </ul>
      )}
      {entries === undefined ? null : (
        <ShowMore
          shown={entries.length}
          total={total}
          perPage={perPage}
          what={() => "more"}
          onShow={setLimit}
        />
      )}
    </section>
  );
}
