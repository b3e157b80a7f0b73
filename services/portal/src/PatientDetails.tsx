// A patient's demographics as staff enter them: the fields registration and correction share, and the
// correction of a registered patient's details. A correction is saved from the version on screen (If-Match), so
// a change someone else made meanwhile is never overwritten unseen, and the platform refuses an MRN another
// patient holds. Every version stays in the record's history.
import { useState } from "react";
import { formatName, type Patient } from "./fhir.js";
import { PlatformRequestError, type PlatformClient } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { RecordDownload } from "./RecordDownload.js";
import { useFormAction } from "./use-form-action.js";

export interface PatientForm {
  readonly mrn: string;
  readonly family: string;
  readonly given: string;
  readonly birthDate: string;
  readonly gender: string;
}

export const emptyPatientForm: PatientForm = {
  mrn: "",
  family: "",
  given: "",
  birthDate: "",
  gender: "unknown",
};

/** The form as a registered patient fills it. */
function patientForm(patient: Patient, mrnSystem: string): PatientForm {
  return {
    mrn: patient.identifier?.find((entry) => entry.system === mrnSystem)?.value ?? "",
    family: patient.name?.[0]?.family ?? "",
    given: patient.name?.[0]?.given?.join(" ") ?? "",
    birthDate: patient.birthDate ?? "",
    gender: patient.gender ?? "unknown",
  };
}

/**
 * `base` with the form's details: its MRN, first name and the rest replaced, everything else of it (other
 * identifiers and names, other elements) kept as it was.
 */
export function withDetails(base: Patient, form: PatientForm, mrnSystem: string): Patient {
  // The birth date is the form's: cleared there, it is cleared here.
  const rest = Object.fromEntries(Object.entries(base).filter(([name]) => name !== "birthDate")) as Patient;
  const first = base.name?.[0];
  const given = form.given.trim();
  return {
    ...rest,
    identifier: [
      { system: mrnSystem, value: form.mrn.trim() },
      ...(base.identifier ?? []).filter((entry) => entry.system !== mrnSystem),
    ],
    name: [
      {
        ...first,
        family: form.family.trim(),
        // Given names as they were when unchanged; otherwise one per word.
        given:
          given === (first?.given?.join(" ") ?? "")
            ? (first?.given ?? [])
            : given.split(/\s+/).filter(Boolean),
      },
      ...(base.name ?? []).slice(1),
    ],
    gender: form.gender as NonNullable<Patient["gender"]>,
    ...(form.birthDate === "" ? {} : { birthDate: form.birthDate }),
  };
}

/** The demographic fields, labelled as everywhere in the portal. */
export function PatientFields(props: {
  readonly form: PatientForm;
  readonly onChange: (form: PatientForm) => void;
}): React.JSX.Element {
  const field =
    (name: keyof PatientForm) =>
    (event: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>): void => {
      props.onChange({ ...props.form, [name]: event.target.value });
    };
  return (
    <>
      <label>
        Medical record number
        <input
          value={props.form.mrn}
          onChange={field("mrn")}
          required
          autoComplete="off"
          spellCheck={false}
        />
      </label>
      <label>
        Family name
        <input value={props.form.family} onChange={field("family")} required autoComplete="off" />
      </label>
      <label>
        Given name
        <input value={props.form.given} onChange={field("given")} autoComplete="off" />
      </label>
      <label>
        Date of birth
        <input type="date" value={props.form.birthDate} onChange={field("birthDate")} />
      </label>
      <label>
        Administrative gender
        <select value={props.form.gender} onChange={field("gender")}>
          <option value="female">Female</option>
          <option value="male">Male</option>
          <option value="other">Other</option>
          <option value="unknown">Unknown</option>
        </select>
      </label>
    </>
  );
}

function describeFailure(failure: unknown): string {
  if (failure instanceof PlatformRequestError && failure.code === "ERR_DUPLICATE") {
    return "Another patient is registered with this MRN: check it, or find that patient.";
  }
  if (failure instanceof PlatformRequestError && failure.code === "ERR_PRECONDITION") {
    return "Someone changed this patient's details meanwhile: the current details are shown now. Make your correction again.";
  }
  return `The details could not be saved: ${(failure as Error).message}`;
}

/** The patient's heading and details, with their correction. */
export function PatientDetails(props: {
  readonly client: PlatformClient;
  readonly patient: Patient;
  readonly mrnSystem: string;
  /** The patient as now stored (after a correction, or read again after a conflict). */
  readonly onChanged: (patient: Patient) => void;
  /** Clinicians and admins save the whole record (`Patient/$everything`). */
  readonly canDownload: boolean;
}): React.JSX.Element {
  const { client, patient, mrnSystem } = props;
  const [editing, setEditing] = useState<PatientForm>();
  const form = useFormAction(describeFailure);
  const id = encodeURIComponent(patient.id ?? "");
  const save = form.submitting(async () => {
    if (editing === undefined) {
      return;
    }
    try {
      const saved = (await client.json(
        "PUT",
        `/fhir/Patient/${id}`,
        withDetails(patient, editing, mrnSystem),
        [["if-match", `W/"${patient.meta?.versionId ?? ""}"`]],
      )) as Patient;
      setEditing(undefined);
      props.onChanged(saved);
    } catch (failure) {
      if (failure instanceof PlatformRequestError && failure.code === "ERR_PRECONDITION") {
        const current = (await client.json("GET", `/fhir/Patient/${id}`)) as Patient;
        setEditing(patientForm(current, mrnSystem));
        props.onChanged(current);
      }
      throw failure;
    }
  });
  return (
    <section className="panel" aria-labelledby="patient-title">
      <h2 id="patient-title" data-testid="patient-name">
        {formatName(patient)}
      </h2>
      <p className="muted">
        MRN {patient.identifier?.find((entry) => entry.system === mrnSystem)?.value ?? "—"} · born{" "}
        {patient.birthDate ?? "—"} · {patient.gender ?? "unknown"}
      </p>
      {editing === undefined ? (
        <div className="actions">
          <button
            type="button"
            className="secondary"
            onClick={() => {
              setEditing(patientForm(patient, mrnSystem));
            }}
          >
            Correct details
          </button>
        </div>
      ) : (
        <form
          className="grid"
          aria-label="Correct the patient's details"
          onSubmit={(event) => void save(event)}
        >
          <PatientFields form={editing} onChange={setEditing} />
          <div className="actions">
            <button type="submit" disabled={form.busy}>
              Save details
            </button>
            <button
              type="button"
              className="secondary"
              onClick={() => {
                setEditing(undefined);
              }}
            >
              Keep them as they are
            </button>
          </div>
        </form>
      )}
      <ErrorMessage message={form.error} />
      {props.canDownload && editing === undefined ? (
        <RecordDownload client={client} patientId={patient.id ?? ""} />
      ) : null}
    </section>
  );
}
