// Find a patient by MRN or name, or register a new one (with a duplicate check by MRN before create).
import { useState } from "react";
import type { PlatformClient } from "./platform-client.js";
import { useFormAction } from "./use-form-action.js";
import { formatName, type Patient } from "./fhir.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { emptyPatientForm, PatientFields, withDetails, type PatientForm } from "./PatientDetails.js";

export function PatientSearch(props: {
  readonly client: PlatformClient;
  readonly mrnSystem: string;
  readonly onOpen: (patient: Patient) => void;
}): React.JSX.Element {
  const { client, mrnSystem } = props;
  const [by, setBy] = useState<"mrn" | "name">("mrn");
  const [query, setQuery] = useState("");
  const [results, setResults] = useState<Patient[] | undefined>();
  const { busy, error, submitting } = useFormAction();
  const search = submitting(async () => {
    const parameters: Record<string, string> =
      by === "mrn" ? { identifier: `${mrnSystem}|${query.trim()}` } : { name: query.trim() };
    setResults(await client.search<Patient>("Patient", parameters));
  });

  return (
    <section className="panel" aria-labelledby="search-title">
      <h2 id="search-title">Find a patient</h2>
      <form onSubmit={(event) => void search(event)} className="row">
        <label>
          Search by
          <select
            value={by}
            onChange={(event) => {
              setBy(event.target.value as "mrn" | "name");
            }}
          >
            <option value="mrn">MRN</option>
            <option value="name">Name</option>
          </select>
        </label>
        <label className="grow">
          {by === "mrn" ? "Medical record number" : "Family or given name"}
          <input
            value={query}
            onChange={(event) => {
              setQuery(event.target.value);
            }}
            required
            autoComplete="off"
            spellCheck={false}
          />
        </label>
        <button type="submit" disabled={busy}>
          Search
        </button>
      </form>
      <ErrorMessage message={error} />
      {results === undefined ? null : results.length === 0 ? (
        <p aria-live="polite">No patient found.</p>
      ) : (
        <ul className="results" aria-live="polite">
          {results.map((patient) => (
            <li key={patient.id}>
              <PatientLink patient={patient} onOpen={props.onOpen} />{" "}
              <span className="muted">
                MRN {patient.identifier?.find((entry) => entry.system === mrnSystem)?.value ?? "—"} · born{" "}
                {patient.birthDate ?? "—"}
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function PatientIntake(props: {
  readonly client: PlatformClient;
  readonly mrnSystem: string;
  readonly onCreated: (patient: Patient) => void;
}): React.JSX.Element {
  const { client, mrnSystem } = props;
  const [form, setForm] = useState<PatientForm>(emptyPatientForm);
  const [duplicate, setDuplicate] = useState<Patient>();
  const { busy, error, submitting } = useFormAction();

  const submit = submitting(async () => {
    const identifier = `${mrnSystem}|${form.mrn.trim()}`;
    const [existing] = await client.search<Patient>("Patient", { identifier });
    if (existing !== undefined) {
      setDuplicate(existing);
      return;
    }
    const patient = withDetails({ resourceType: "Patient" }, form, mrnSystem);
    const created = (await client.json("POST", "/fhir/Patient", patient)) as Patient;
    setForm(emptyPatientForm);
    props.onCreated(created);
  });

  return (
    <section className="panel" aria-labelledby="intake-title">
      <h2 id="intake-title">New patient</h2>
      <form onSubmit={(event) => void submit(event)} className="grid">
        <PatientFields
          form={form}
          onChange={(changed) => {
            setForm(changed);
            setDuplicate(undefined);
          }}
        />
        <div className="actions">
          <button type="submit" disabled={busy}>
            Register patient
          </button>
        </div>
      </form>
      {duplicate === undefined ? null : (
        <div role="alert" className="warning">
          A patient with this MRN is already registered: {formatName(duplicate)}.{" "}
          <button
            type="button"
            className="link"
            onClick={() => {
              props.onCreated(duplicate);
            }}
          >
            Open that patient
          </button>
        </div>
      )}
      <ErrorMessage message={error} />
    </section>
  );
}

/** A patient's name, as a button that opens their record. */
export function PatientLink(props: {
  readonly patient: Patient;
  readonly onOpen: (patient: Patient) => void;
}): React.JSX.Element {
  return (
    <button
      type="button"
      className="link"
      onClick={() => {
        props.onOpen(props.patient);
      }}
    >
      {formatName(props.patient)}
    </button>
  );
}
