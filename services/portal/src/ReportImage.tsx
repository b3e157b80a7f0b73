// The image an AI result was computed from, shown on request beside the result so the reviewing clinician
// reads the image itself (fetched sealed like every request, and audited as a read; DICOM rendered with the
// same decoder the inference server uses). Nothing is kept once the page closes: the object URL is revoked.
import { useEffect, useState } from "react";
import { dicomPreviewUrl } from "./dicom-preview.js";
import { base64urlBytes, type PlatformClient } from "./platform-client.js";
import { ErrorMessage } from "./ErrorMessage.js";

export function ReportImage(props: {
  readonly client: PlatformClient;
  /** `Binary/<id>`, as the result's Provenance names its source. */
  readonly binary: string;
}): React.JSX.Element {
  const [image, setImage] = useState<{ url: string; revoke: boolean }>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(
    () => () => {
      if (image?.revoke === true) {
        URL.revokeObjectURL(image.url);
      }
    },
    [image],
  );

  const show = async (): Promise<void> => {
    setBusy(true);
    setError(undefined);
    try {
      const binary = (await props.client.json("GET", `/fhir/${props.binary}`)) as {
        contentType?: string;
        data?: string;
      };
      const bytes = base64urlBytes(binary.data ?? "");
      if (binary.contentType === "application/dicom") {
        setImage({ url: dicomPreviewUrl(bytes).url, revoke: false });
      } else {
        const url = URL.createObjectURL(new Blob([bytes], { type: binary.contentType ?? "image/png" }));
        setImage({ url, revoke: true });
      }
    } catch (failure) {
      setError(`The image could not be shown: ${(failure as Error).message}`);
    } finally {
      setBusy(false);
    }
  };

  return image === undefined ? (
    <div className="actions">
      <button type="button" className="secondary" onClick={() => void show()} disabled={busy}>
        Show the image analysed
      </button>
      <ErrorMessage message={error} />
    </div>
  ) : (
    <figure className="preview">
      <img src={image.url} alt="The image the AI analysed" data-testid="report-image" />
    </figure>
  );
}
