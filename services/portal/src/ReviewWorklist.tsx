// A clinician's worklist: the AI results of the tenant still awaiting a clinician's review, oldest first, each
// opening its patient. Read again when a report changes (a new result, a review made elsewhere) and every
// minute, so a result no one has reviewed is not forgotten.
import { useCallback, useEffect, useRef, useState } from "react";
import type { DiagnosticReport, Patient } from "./fhir.js";
import { PatientLink } from "./PatientSearch.js";
import type { PlatformClient } from "./platform-client.js";
import type { ReportEvent } from "./report-events.js";
import { ErrorMessage } from "./ErrorMessage.js";

const recheckMs = 60_000;
/** The worklist shows the oldest this many; its heading counts them all. */
const shown = 20;

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
  const [error, setError] = useState<string>();
  const known = useRef(new Map<string, Patient>());

  const load = useCallback(async (): Promise<void> => {
    try {
      // The platform sorts: the oldest are shown however many wait (a preliminary report is not updated until
      // its review, so its last update is when the AI result arrived).
      const page = await client.searchPage("DiagnosticReport", {
        status: "preliminary",
        _sort: "_lastUpdated",
        _count: String(shown),
      });
      const awaiting = page.resources as DiagnosticReport[];
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
      setEntries(
        awaiting.map((report) => ({ report, patient: patients.get(report.subject?.reference ?? "") })),
      );
      setError(undefined);
    } catch (failure) {
      setError(`The worklist could not be read: ${(failure as Error).message}`);
    }
  }, [client]);

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
        <p className="muted">The {entries.length} waiting longest:</p>
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
              <span className="muted">
                {report.code?.text ?? "AI analysis"}
                {report.issued === undefined ? "" : ` · ${new Date(report.issued).toLocaleString()}`}
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
