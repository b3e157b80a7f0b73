// Admins (a privacy officer): who accessed this patient's record, and when, from the platform's audit trail
// (`AuditEvent?patient=`): every read, search hit and change of the patient, their orders, images and results,
// with the staff member's email (the trail holds account ids; `GET /admin/accounts/{id}` names them). Loaded
// on request only; the report itself is audited as a search of the trail.
import { useState } from "react";
import { PlatformRequestError, type PlatformClient, type SearchPage } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { useFormAction } from "./use-form-action.js";

interface AuditEvent {
  readonly id?: string;
  readonly recorded?: string;
  readonly subtype?: readonly { readonly code?: string }[];
  readonly outcome?: string;
  readonly outcomeDesc?: string;
  readonly agent?: readonly {
    readonly who?: { readonly identifier?: { readonly value?: string } };
    readonly role?: readonly { readonly text?: string }[];
  }[];
  readonly entity?: readonly { readonly what?: { readonly reference?: string } }[];
}

/** What the interaction was, in staff's words. */
const interactions: Readonly<Record<string, string>> = {
  read: "Opened",
  vread: "Opened",
  "history-instance": "Opened the history of",
  "search-type": "Found in a search:",
  create: "Created",
  update: "Changed",
  review: "Reviewed",
  transaction: "Recorded a result:",
  inference: "Sent for AI analysis:",
  everything: "Downloaded the whole record:",
};

const resourceNames: Readonly<Record<string, string>> = {
  Patient: "patient details",
  ServiceRequest: "order",
  Binary: "image",
  DiagnosticReport: "report",
  Observation: "result",
  Provenance: "provenance",
};

/** Who an agent id is: a staff member's email, or the platform's own workflow or a TEE. */
async function agentName(client: PlatformClient, id: string, known: Map<string, string>): Promise<string> {
  if (id === "cloister-workflow") {
    return "the platform's AI workflow";
  }
  if (id.startsWith("tee:")) {
    return "the attested inference server";
  }
  const cached = known.get(id);
  if (cached !== undefined) {
    return cached;
  }
  let name = `account ${id}`;
  try {
    name = ((await client.json("GET", `/admin/accounts/${encodeURIComponent(id)}`)) as { email: string })
      .email;
  } catch (failure) {
    // Not a local account (a directory id, with single sign-on): the id is what the trail knows.
    if (!(failure instanceof PlatformRequestError && failure.code === "ERR_NOT_FOUND")) {
      throw failure;
    }
  }
  known.set(id, name);
  return name;
}

interface AccessRow {
  readonly id: string;
  /** The newest and oldest moment of the accesses in the row. */
  readonly newest: string;
  readonly oldest: string;
  readonly who: string;
  readonly role: string;
  readonly what: string;
  readonly refused: string | undefined;
  /** Accesses in a row by the same person, of the same kind, within a minute (a page reading a report's results). */
  readonly times: number;
}

async function rowsOf(client: PlatformClient, events: readonly AuditEvent[], known: Map<string, string>) {
  const rows: AccessRow[] = [];
  for (const event of events) {
    const agent = event.agent?.[0];
    const subtype = event.subtype?.[0]?.code ?? "";
    const entities = event.entity ?? [];
    const things = entities
      .map((entity) => entity.what?.reference?.split("/")[0] ?? "")
      .filter((type) => type !== "Patient" || entities.length === 1)
      .map((type) => resourceNames[type] ?? type);
    const row: AccessRow = {
      id: event.id ?? String(rows.length),
      newest: event.recorded ?? "",
      oldest: event.recorded ?? "",
      who: await agentName(client, agent?.who?.identifier?.value ?? "", known),
      role: agent?.role?.[0]?.text ?? "",
      what: `${interactions[subtype] ?? subtype} ${[...new Set(things)].join(", ")}`,
      refused: event.outcome === "0" ? undefined : (event.outcomeDesc ?? "refused"),
      times: 1,
    };
    const previous = rows.at(-1);
    if (
      previous !== undefined &&
      previous.who === row.who &&
      previous.what === row.what &&
      previous.refused === row.refused &&
      Date.parse(previous.newest) - Date.parse(row.oldest) < 60_000
    ) {
      rows[rows.length - 1] = { ...previous, oldest: row.oldest, times: previous.times + 1 };
    } else {
      rows.push(row);
    }
  }
  return rows;
}

function when(row: AccessRow): string {
  return row.newest === "" ? "" : new Date(row.newest).toLocaleString();
}

export function AccessLog(props: {
  readonly client: PlatformClient;
  /** `Patient/<id>`. */
  readonly subject: string;
}): React.JSX.Element {
  const { client } = props;
  const [report, setReport] = useState<{
    events: AuditEvent[];
    rows: AccessRow[];
    total: number;
    next: string | undefined;
  }>();
  const [known] = useState(() => new Map<string, string>());
  const form = useFormAction(
    (failure) => `The access report could not be read: ${(failure as Error).message}`,
  );
  const show = async (events: AuditEvent[], page: SearchPage): Promise<void> => {
    const all = [...events, ...(page.resources as AuditEvent[])];
    setReport({ events: all, rows: await rowsOf(client, all, known), total: page.total, next: page.next });
  };
  const load = form.submitting(async () => {
    await show([], await client.searchPage("AuditEvent", { patient: props.subject, _count: "100" }));
  });
  const older = form.submitting(async () => {
    if (report?.next !== undefined) {
      await show(report.events, await client.nextPage(report.next));
    }
  });
  return (
    <section className="panel" aria-labelledby="access-title">
      <h2 id="access-title">Access to this record</h2>
      <form onSubmit={(event) => void load(event)} className="actions">
        <button type="submit" className="secondary" disabled={form.busy}>
          {report === undefined ? "Show who accessed this record" : "Read the access report again"}
        </button>
      </form>
      <ErrorMessage message={form.error} />
      {report === undefined ? null : (
        <>
          <table className="access" data-testid="access-log">
            <caption>
              {report.events.length >= report.total
                ? `All ${report.total} accesses, newest first`
                : `The newest ${report.events.length} of ${report.total} accesses`}
            </caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
              </tr>
            </thead>
            <tbody>
              {report.rows.map((row) => (
                <tr key={row.id} data-testid="access-row">
                  <td>{when(row)}</td>
                  <td>
                    {row.who}
                    {row.role === "" ? null : <span className="muted"> ({row.role})</span>}
                  </td>
                  <td>
                    {row.what}
                    {row.times > 1 ? <span className="muted"> ({row.times} times)</span> : null}
                    {row.refused === undefined ? null : (
                      <strong className="error"> refused ({row.refused})</strong>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {report.next === undefined ? null : (
            <form onSubmit={(event) => void older(event)} className="actions">
              <button type="submit" className="secondary" disabled={form.busy}>
                Show older accesses
              </button>
            </form>
          )}
        </>
      )}
    </section>
  );
}
