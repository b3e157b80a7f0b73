// One patient: upload an image, order an AI analysis, follow it live (or cancel it), and (clinicians) read the
// results.
import { useCallback, useEffect, useRef, useState } from "react";
import { readDicomPatient } from "@cloister/imaging/dicom";
import {
  completeFromImage,
  describeIntendedPatients,
  fitsIntendedPatients,
  imageContradictsRecord,
  parseIntendedPatients,
  type ImagePatient,
  type IntendedPatients,
  type PatientFacts,
} from "@cloister/imaging/intended-use";
import { dicomPreviewUrl, isDicomFile } from "./dicom-preview.js";
import {
  modelCodeSystem,
  priorityNames,
  reportPriority,
  type DiagnosticReport,
  type Observation,
  type Patient,
  type Provenance,
  type RequestPriority,
  type ServiceRequest,
} from "./fhir.js";
import type { PlatformClient } from "./platform-client.js";
import type { ReportEvent } from "./report-events.js";
import { AccessLog } from "./AccessLog.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { OrderItem } from "./OrderItem.js";
import { PatientDetails } from "./PatientDetails.js";
import { PriorityTag } from "./PriorityTag.js";
import { ShowMore } from "./ShowMore.js";
import { CodeSelect } from "./CodeSelect.js";
import { ReportImage } from "./ReportImage.js";
import { ReportReview, reportStatus, reviewOf } from "./ReportReview.js";

export interface ModelInfo {
  readonly name: string;
  readonly versions: readonly string[];
  readonly parameters?: {
    readonly title?: string;
    readonly intended_use?: string;
    readonly labels?: readonly string[];
    /** The patients it is for: `{minAgeYears?, maxAgeYears?, sex?}`. */
    readonly intended_patients?: unknown;
  };
}

/** Whom a model is for, as the inference server published it (anyone when absent or unreadable). */
function intendedPatientsOf(model: ModelInfo | undefined): IntendedPatients | undefined {
  try {
    return parseIntendedPatients(model?.parameters?.intended_patients);
  } catch {
    // The platform checks the patient against the model's anyway.
    return undefined;
  }
}

/**
 * What the order form says when the patient may not be one the model is for: the platform analyses no image
 * of a patient whose recorded age or sex is outside the model's, and says when it could not check.
 */
function IntendedPatientsNotice(props: {
  readonly model: ModelInfo | undefined;
  readonly patient: PatientFacts;
}): React.JSX.Element | null {
  const intended = intendedPatientsOf(props.model);
  const fit = fitsIntendedPatients(intended, props.patient, new Date());
  if (intended === undefined || fit === "within") {
    return null;
  }
  const forWhom = `This model is for ${describeIntendedPatients(intended)}.`;
  return fit === "outside" ? (
    <p role="alert" className="error" data-testid="intended-use">
      {forWhom} This patient&apos;s recorded age or sex is outside that, so the platform would not analyse the
      image: read it without the AI, or choose another model.
    </p>
  ) : (
    <p className="muted" data-testid="intended-use">
      {forWhom} This patient&apos;s record does not show whether they are one (birth date or sex not
      recorded): check before ordering.
    </p>
  );
}

/** True when the platform would refuse to analyse this patient's image with this model. */
function outsideIntendedPatients(model: ModelInfo | undefined, patient: PatientFacts): boolean {
  return fitsIntendedPatients(intendedPatientsOf(model), patient, new Date()) === "outside";
}

interface ReportView {
  readonly report: DiagnosticReport;
  readonly probabilities: { label: string; value: number }[];
  readonly finding: string | undefined;
  readonly model: string | undefined;
  readonly modelSha256: string | undefined;
  readonly enclave: string | undefined;
  readonly enclaveMeasurement: string | undefined;
  /** The image analysed (`Binary/<id>`), as the result's Provenance names its source. */
  readonly image: string | undefined;
}

const maxImageBytes = 20 * 1024 * 1024;

function imageType(file: File, bytes: Uint8Array): string | undefined {
  if (isDicomFile(file, bytes)) {
    return "application/dicom";
  }
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) {
    return "image/png";
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    return "image/jpeg";
  }
  return undefined;
}

// The event stream is a hint, not the record: an event sent while it was down, or lost between the platform's
// replicas while Redis was away, never arrives. So the patient's orders are read again (one search; the
// reports only when a status changed): every 5 s while the stream is down (an order placed elsewhere meanwhile
// is found too), every 30 s while it is up and one of the orders is still being analysed, and whenever the tab
// is shown again.
const checkWhileLiveMs = 30_000;
const checkWhileOfflineMs = 5_000;

// A record shows its most recently updated orders and reports (the platform's order), a page at a time, and
// says how many there are in all when it does not show them all: nothing of the record is left out unsaid.
const ordersPerPage = 20;
const reportsPerPage = 10;

/** "The 20 most recently updated of 37 orders" above a list that does not hold them all. */
function ShownOf(props: {
  readonly shown: number;
  readonly total: number;
  readonly noun: string;
}): React.JSX.Element | null {
  return props.shown >= props.total ? null : (
    <p className="muted" data-testid={`${props.noun}s-shown`}>
      The {props.shown} most recently updated of {props.total} {props.noun}s.
    </p>
  );
}

/** The orders' ids and statuses, to see whether anything changed since the last reading. */
function orderStatuses(orders: readonly ServiceRequest[]): string {
  return orders
    .map((order) => `${order.id ?? ""}:${order.status}`)
    .sort()
    .join(",");
}

/** A report withdrawn as entered in error: its result does not apply to this patient, so none is shown. */
function withdrawn(report: DiagnosticReport): boolean {
  return report.status === "entered-in-error";
}

/** How the report's review stands, and (clinicians) the form to record or change it. */
function ReviewSection(props: {
  readonly client: PlatformClient;
  readonly report: DiagnosticReport;
  readonly canReview: boolean;
  readonly onReviewed: () => Promise<void>;
}): React.JSX.Element | null {
  const [changing, setChanging] = useState(false);
  const review = reviewOf(props.report);
  if (review === undefined) {
    return props.report.status === "preliminary" && props.canReview ? (
      <ReportReview client={props.client} report={props.report} onReviewed={props.onReviewed} />
    ) : null;
  }
  const when = review.at === undefined ? "" : `, ${new Date(review.at).toLocaleString()}`;
  const verdict = {
    confirmed: "Finding confirmed by a clinician",
    "not-confirmed": "Finding not confirmed by a clinician",
    "entered-in-error": "Withdrawn by a clinician as entered in error",
  }[review.outcome];
  return (
    <>
      <p
        className={review.outcome === "confirmed" ? "reviewed" : "reviewed disagreed"}
        data-testid="reviewed"
      >
        {verdict}
        {review.changed ? " (review changed)" : ""}
        {when}.
      </p>
      {props.canReview && !withdrawn(props.report) ? (
        changing ? (
          <ReportReview
            client={props.client}
            report={props.report}
            changing
            onReviewed={async () => {
              setChanging(false);
              await props.onReviewed();
            }}
            onCancel={() => {
              setChanging(false);
            }}
          />
        ) : (
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setChanging(true);
            }}
          >
            Change review
          </button>
        )
      ) : null}
    </>
  );
}

async function loadReport(client: PlatformClient, report: DiagnosticReport): Promise<ReportView> {
  const observations = await Promise.all(
    (report.result ?? []).map(
      (reference) => client.json("GET", `/fhir/${reference.reference ?? ""}`) as Promise<Observation>,
    ),
  );
  const [provenance] = await client.search<Provenance>("Provenance", {
    target: `DiagnosticReport/${report.id ?? ""}`,
  });
  const modelAgent = provenance?.agent?.find(
    (agent) => agent.who?.identifier?.system === "https://cloister.dev/model-sha256",
  );
  const enclaveAgent = provenance?.agent?.find(
    (agent) => agent.who?.identifier?.system === "https://cloister.dev/tee-measurement",
  );
  return {
    report,
    probabilities: observations
      .filter((observation) => observation.valueQuantity?.value !== undefined)
      .map((observation) => ({
        label: observation.code?.coding?.[0]?.code ?? "?",
        value: observation.valueQuantity?.value ?? 0,
      })),
    finding: observations.find((observation) => observation.valueCodeableConcept !== undefined)
      ?.valueCodeableConcept?.text,
    model: modelAgent?.who?.display,
    modelSha256: modelAgent?.who?.identifier?.value,
    enclave: enclaveAgent?.who?.display,
    enclaveMeasurement: enclaveAgent?.who?.identifier?.value,
    image: provenance?.entity
      ?.map((entity) => entity.what?.reference)
      .find((reference) => reference?.startsWith("Binary/") === true),
  };
}

export function PatientRecord(props: {
  readonly client: PlatformClient;
  readonly patient: Patient;
  readonly mrnSystem: string;
  /** The patient's details were corrected (or read again): the patient as now stored. */
  readonly onPatientChanged: (patient: Patient) => void;
  readonly canReadResults: boolean;
  /** Clinicians review the AI's preliminary results. */
  readonly canReview: boolean;
  /** Admins read who accessed the record. */
  readonly canAudit: boolean;
  readonly models: readonly ModelInfo[] | undefined;
  readonly modelsError: string | undefined;
  readonly lastEvent: ReportEvent | undefined;
  /** Whether the event stream is connected. */
  readonly live: boolean;
  /** How often the event stream has (re)connected in this session. */
  readonly connections: number;
}): React.JSX.Element {
  const { client, patient } = props;
  const subject = `Patient/${patient.id ?? ""}`;
  const [file, setFile] = useState<{
    file: File;
    bytes: Uint8Array;
    type: string;
    preview: string;
    /** What a DICOM image's own header says of its patient. */
    header: ImagePatient;
  }>();
  // A new file input after each order: the browser's input would otherwise still name the file just sent.
  const [fileInput, setFileInput] = useState(0);
  const [fileError, setFileError] = useState<string>();
  const [model, setModel] = useState("");
  const [priority, setPriority] = useState<RequestPriority>("routine");
  const chosenModel = props.models?.find((entry) => entry.name === model);
  // What the record says of the patient, completed by a DICOM image's own header where it says nothing; a
  // header that contradicts the record is probably another patient's image (the platform refuses it too).
  const imageHeader = file?.header ?? {};
  const wrongPatientImage = imageContradictsRecord(imageHeader, patient);
  const patientFacts = completeFromImage(patient, imageHeader);
  const orderable = !wrongPatientImage && !outsideIntendedPatients(chosenModel, patientFacts);
  const [progress, setProgress] = useState<number>();
  const [orderError, setOrderError] = useState<string>();
  const [orders, setOrders] = useState<ServiceRequest[]>([]);
  const [ordersTotal, setOrdersTotal] = useState(0);
  const [orderLimit, setOrderLimit] = useState(ordersPerPage);
  const [reports, setReports] = useState<ReportView[]>([]);
  const [reportsTotal, setReportsTotal] = useState(0);
  const [reportLimit, setReportLimit] = useState(reportsPerPage);
  const [loadError, setLoadError] = useState<string>();
  // Each report version's results, provenance and model, read once: a changed report (a review, a
  // withdrawal) is a new version, so what is kept is never stale.
  const reportViews = useRef(new Map<string, ReportView>());

  useEffect(() => {
    const first = props.models?.[0];
    if (model === "" && first !== undefined) {
      setModel(first.name);
    }
  }, [props.models, model]);

  const refresh = useCallback(async (): Promise<void> => {
    try {
      const found = await client.searchFirst("ServiceRequest", { subject }, orderLimit);
      setOrders(
        (found.resources as ServiceRequest[]).sort((a, b) =>
          (b.authoredOn ?? "").localeCompare(a.authoredOn ?? ""),
        ),
      );
      setOrdersTotal(found.total);
      if (props.canReadResults) {
        const found = await client.searchFirst("DiagnosticReport", { subject }, reportLimit);
        const known = reportViews.current;
        const views = await Promise.all(
          (found.resources as DiagnosticReport[]).map(async (report) => {
            const key = `${report.id ?? ""}/${report.meta?.versionId ?? ""}`;
            const view = known.get(key) ?? (await loadReport(client, report));
            known.set(key, view);
            return view;
          }),
        );
        setReports(views.sort((a, b) => (b.report.issued ?? "").localeCompare(a.report.issued ?? "")));
        setReportsTotal(found.total);
      }
      setLoadError(undefined);
    } catch (failure) {
      setLoadError((failure as Error).message);
    }
  }, [client, subject, props.canReadResults, orderLimit, reportLimit]);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  // A report for this patient changed (also for an order placed elsewhere since this page read the orders):
  // read the orders and reports again.
  useEffect(() => {
    const event = props.lastEvent;
    if (
      event !== undefined &&
      (event.subject === subject ||
        orders.some((order) => `ServiceRequest/${order.id ?? ""}` === event.basedOn))
    ) {
      void refresh();
    }
  }, [props.lastEvent]);

  // The stream reconnected: events sent while it was down are lost, so read everything again.
  const connectionsSeen = useRef(props.connections);
  useEffect(() => {
    if (props.connections !== connectionsSeen.current) {
      connectionsSeen.current = props.connections;
      void refresh();
    }
  }, [props.connections, refresh]);

  // Check the orders now and then (see checkWhileLiveMs).
  const [checks, setChecks] = useState(0);
  const pending = orders.some((entry) => entry.status === "active");
  useEffect(() => {
    if (props.live && !pending) {
      return;
    }
    const known = orderStatuses(orders);
    let cancelled = false;
    const check = async (): Promise<void> => {
      try {
        const found = await client.searchFirst("ServiceRequest", { subject }, orderLimit);
        if (!cancelled && orderStatuses(found.resources as ServiceRequest[]) !== known) {
          await refresh();
        }
      } catch {
        // The next check tries again; the live indicator already says the platform is hard to reach.
      } finally {
        if (!cancelled) {
          setChecks((count) => count + 1);
        }
      }
    };
    const timer = setTimeout(() => void check(), props.live ? checkWhileLiveMs : checkWhileOfflineMs);
    const onVisible = (): void => {
      if (document.visibilityState === "visible") {
        clearTimeout(timer);
        void check();
      }
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      cancelled = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [pending, orders, props.live, checks, client, subject, refresh, orderLimit]);

  const choose = async (event: React.ChangeEvent<HTMLInputElement>): Promise<void> => {
    setFileError(undefined);
    setFile(undefined);
    const chosen = event.target.files?.[0];
    if (chosen === undefined) {
      return;
    }
    if (chosen.size > maxImageBytes) {
      setFileError("The image is larger than 20 MB.");
      return;
    }
    const bytes = new Uint8Array(await chosen.arrayBuffer());
    const type = imageType(chosen, bytes);
    if (type === undefined) {
      setFileError("Choose a PNG, JPEG or DICOM image.");
      return;
    }
    try {
      const preview =
        type === "application/dicom"
          ? dicomPreviewUrl(bytes).url
          : URL.createObjectURL(new Blob([bytes], { type }));
      const header = type === "application/dicom" ? readDicomPatient(bytes) : {};
      setFile({ file: chosen, bytes, type, preview, header });
    } catch {
      setFileError("This DICOM file could not be read (unsupported transfer syntax or damaged file).");
    }
  };

  const order = async (event: React.SyntheticEvent): Promise<void> => {
    event.preventDefault();
    if (file === undefined || model === "" || !orderable) {
      return;
    }
    setOrderError(undefined);
    setProgress(0);
    try {
      const binary = await client.request(
        "POST",
        "/fhir/Binary",
        { bytes: file.bytes, contentType: file.type },
        (fraction) => {
          setProgress(fraction);
        },
        // The patient the image is for: the platform never orders it for another one, and audits it to them.
        [["x-security-context", subject]],
      );
      const binaryId = (binary.json() as { id: string }).id;
      await client.json("POST", "/fhir/ServiceRequest", {
        resourceType: "ServiceRequest",
        identifier: [{ system: "urn:ietf:rfc:3986", value: `urn:uuid:${crypto.randomUUID()}` }],
        status: "active",
        intent: "order",
        subject: { reference: subject },
        code: {
          coding: [
            { system: modelCodeSystem, code: model, display: chosenModel?.parameters?.title ?? model },
          ],
          text: chosenModel?.parameters?.title ?? model,
        },
        supportingInfo: [{ reference: `Binary/${binaryId}` }],
        authoredOn: new Date().toISOString(),
        priority,
      } satisfies ServiceRequest);
      setFile(undefined);
      setPriority("routine");
      setFileInput((count) => count + 1);
      await refresh();
    } catch (failure) {
      setOrderError((failure as Error).message);
    } finally {
      setProgress(undefined);
    }
  };

  return (
    <div className="record">
      <PatientDetails
        client={client}
        patient={patient}
        mrnSystem={props.mrnSystem}
        onChanged={props.onPatientChanged}
        canDownload={props.canReadResults}
      />

      <section className="panel" aria-labelledby="order-title">
        <h2 id="order-title">Order an AI analysis</h2>
        <form onSubmit={(event) => void order(event)} className="grid">
          <label>
            Image (PNG, JPEG or DICOM, at most 20 MB)
            <input
              key={fileInput}
              type="file"
              accept="image/png,image/jpeg,application/dicom,.dcm"
              onChange={(event) => void choose(event)}
              data-testid="image-input"
            />
          </label>
          <label>
            AI model
            <select
              value={model}
              onChange={(event) => {
                setModel(event.target.value);
              }}
              required
              data-testid="model-select"
            >
              {(props.models ?? []).map((entry) => (
                <option key={entry.name} value={entry.name}>
                  {entry.parameters?.title ?? entry.name} (v{entry.versions.at(-1) ?? "?"})
                </option>
              ))}
            </select>
          </label>
          <label>
            Priority
            <CodeSelect
              names={priorityNames}
              value={priority}
              onChange={setPriority}
              testId="priority-select"
            />
          </label>
          <IntendedPatientsNotice model={chosenModel} patient={patientFacts} />
          <ErrorMessage
            message={
              wrongPatientImage
                ? "This image's own header names another birth date or sex than this patient's record: check that the image is theirs, or correct the record."
                : undefined
            }
          />
          <ErrorMessage message={props.modelsError} />
          <ErrorMessage message={fileError} />
          {file === undefined ? null : (
            <figure className="preview">
              <img src={file.preview} alt="Preview of the chosen image" data-testid="image-preview" />
              <figcaption>
                {file.type === "application/dicom" ? "DICOM, rendered in your browser" : file.type} ·{" "}
                {(file.bytes.length / 1024).toFixed(0)} KB
              </figcaption>
            </figure>
          )}
          {progress === undefined ? null : (
            <label>
              Uploading (encrypted)
              <progress value={progress} max={1} data-testid="upload-progress" />
            </label>
          )}
          <div className="actions">
            <button
              type="submit"
              disabled={file === undefined || model === "" || progress !== undefined || !orderable}
            >
              Upload and order analysis
            </button>
          </div>
          <ErrorMessage message={orderError} />
        </form>
      </section>

      <section className="panel" aria-labelledby="orders-title">
        <h2 id="orders-title">Orders</h2>
        <ErrorMessage message={loadError} />
        {orders.length === 0 ? (
          <p>No orders yet.</p>
        ) : (
          <>
            <ShownOf shown={orders.length} total={ordersTotal} noun="order" />
            <ul className="orders" aria-live="polite" data-testid="orders">
              {orders.map((entry) => (
                <OrderItem key={entry.id} client={client} order={entry} onChanged={refresh} />
              ))}
            </ul>
          </>
        )}
        <ShowMore
          shown={orders.length}
          total={ordersTotal}
          perPage={ordersPerPage}
          what={(count) => (count === 1 ? "older order" : "older orders")}
          onShow={setOrderLimit}
        />
        {props.canReadResults ? null : <p className="muted">Results are shown to clinicians.</p>}
      </section>

      {props.canReadResults ? (
        <section className="panel" aria-labelledby="reports-title">
          <h2 id="reports-title">Reports</h2>
          {reports.length === 0 ? <p>No reports yet.</p> : null}
          <ShownOf shown={reports.length} total={reportsTotal} noun="report" />
          {reports.map((view) => (
            <article
              key={view.report.id}
              className={`report report-${view.report.status}`}
              data-testid="report"
            >
              <h3>
                {view.report.code?.text ?? "AI analysis"}{" "}
                <PriorityTag priority={reportPriority(view.report)} />{" "}
                <span className={`status status-${view.report.status}`} data-testid="report-status">
                  {reportStatus[view.report.status] ?? view.report.status}
                </span>{" "}
                <span className="muted">
                  {view.report.issued === undefined ? "" : new Date(view.report.issued).toLocaleString()}
                </span>
              </h3>
              {view.finding === undefined || withdrawn(view.report) ? null : (
                <p className="finding" data-testid="finding">
                  Finding: <strong>{view.finding}</strong>
                </p>
              )}
              <p data-testid="conclusion">{view.report.conclusion}</p>
              {view.probabilities.length === 0 || withdrawn(view.report) ? null : (
                <dl className="bars">
                  {view.probabilities.map((entry) => (
                    <div key={entry.label} className="bar-row">
                      <dt>{entry.label}</dt>
                      <dd>
                        <meter
                          min={0}
                          max={1}
                          value={entry.value}
                          aria-label={`${entry.label} probability`}
                        />{" "}
                        {(entry.value * 100).toFixed(1)}%
                      </dd>
                    </div>
                  ))}
                </dl>
              )}
              <p className="muted">
                {view.model === undefined ? null : <>Model {view.model}</>}
                {view.modelSha256 === undefined ? null : <> (SHA-256 {view.modelSha256.slice(0, 12)}…)</>}
                {view.enclaveMeasurement === undefined ? null : (
                  <>
                    {" "}
                    · ran in {view.enclave} with measurement{" "}
                    <code data-testid="inference-measurement">{view.enclaveMeasurement}</code>
                  </>
                )}
              </p>
              {view.image === undefined ? null : <ReportImage client={client} binary={view.image} />}
              <ReviewSection
                client={client}
                report={view.report}
                canReview={props.canReview}
                onReviewed={refresh}
              />
            </article>
          ))}
          <ShowMore
            shown={reports.length}
            total={reportsTotal}
            perPage={reportsPerPage}
            what={(count) => (count === 1 ? "older report" : "older reports")}
            onShow={setReportLimit}
          />
        </section>
      ) : null}

      {props.canAudit ? <AccessLog client={client} subject={subject} /> : null}
    </div>
  );
}
