// Clinicians and admins: the patient's whole record as one FHIR Bundle (`Patient/$everything`), saved as a JSON
// file for a records request or a transfer of care. It holds PHI and leaves the browser's memory only when
// staff ask for it; the file is named by the record's id, never by the patient's name or MRN. When the images
// are too large together for one answer, the record can be saved without them.
import { useState } from "react";
import { PlatformRequestError, type PlatformClient } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { useFormAction } from "./use-form-action.js";

function save(bundle: unknown, fileName: string): void {
  const url = URL.createObjectURL(
    new Blob([JSON.stringify(bundle, null, 2)], { type: "application/fhir+json" }),
  );
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  link.click();
  // The click has started the download; the object URL is not kept.
  setTimeout(() => {
    URL.revokeObjectURL(url);
  }, 0);
}

export function RecordDownload(props: {
  readonly client: PlatformClient;
  readonly patientId: string;
}): React.JSX.Element {
  const [tooLarge, setTooLarge] = useState(false);
  const form = useFormAction((failure) => `The record could not be read: ${(failure as Error).message}`);
  const id = encodeURIComponent(props.patientId);
  const download = (withImages: boolean) =>
    form.submitting(async () => {
      try {
        const query = withImages
          ? ""
          : "?_type=Patient,ServiceRequest,DiagnosticReport,Observation,Provenance";
        const bundle = await props.client.json("GET", `/fhir/Patient/${id}/$everything${query}`);
        save(bundle, `patient-${props.patientId}${withImages ? "" : "-without-images"}.fhir.json`);
        setTooLarge(false);
      } catch (failure) {
        if (failure instanceof PlatformRequestError && failure.code === "ERR_PAYLOAD_TOO_LARGE") {
          setTooLarge(true);
          return;
        }
        throw failure;
      }
    });
  return (
    <div className="actions">
      <form onSubmit={(event) => void download(true)(event)}>
        <button type="submit" className="secondary" disabled={form.busy}>
          Download the whole record (FHIR)
        </button>
      </form>
      {tooLarge ? (
        <form onSubmit={(event) => void download(false)(event)}>
          <p role="alert" className="warning">
            The patient&apos;s images are too large together for one file. Download the record without them,
            and each image from its report.
          </p>
          <button type="submit" className="secondary" disabled={form.busy}>
            Download the record without images
          </button>
        </form>
      ) : null}
      <ErrorMessage message={form.error} />
    </div>
  );
}
