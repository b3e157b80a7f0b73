// The rules that keep orders and their images as the diagnosis workflow and the reviewing clinician rely on
// them:
// - An image (Binary) is stored once and never changed, so the image a clinician opens beside a result is the
//   one the model read.
// - A DICOM image whose own header names another birth date or sex than its patient's record is refused:
//   probably another patient's image (a wrong-patient error caught before it is analysed or read).
// - An order (ServiceRequest) is placed active, for a patient and an image of the same hospital, so the
//   workflow never analyses an image for nobody or for a patient the clerk cannot see; an image uploaded for
//   one patient (X-Security-Context) is never ordered for another.
// - Afterwards staff change an order one way only: an active order is cancelled (`revoked`), with an
//   optional note added. Its patient, image and model never change. Completion, failure and withdrawal are
//   written by the workflow and the clinician's review, never by a PUT.
import { isDeepStrictEqual } from "node:util";
import { readDicomPatient, type DicomPatient } from "@cloister/imaging/dicom";
import { imageContradictsRecord, type PatientFacts } from "@cloister/imaging/intended-use";
import { PlatformError } from "../errors.js";
import { referencedId, type FhirResource } from "./search-parameters.js";

/**
 * A new order: active, its subject a stored Patient and its first supportingInfo a stored image (Binary) of the
 * same tenant (the lookups look within the caller's tenant), uploaded for that patient when its upload named one
 * (X-Security-Context).
 */
export async function checkNewOrder(
  order: FhirResource,
  lookups: {
    readonly patientExists: (id: string) => Promise<boolean>;
    readonly image: (id: string) => Promise<FhirResource | undefined>;
  },
): Promise<void> {
  if (order.status !== "active") {
    throw new PlatformError("ERR_INVALID_RESOURCE", "an order is placed with status active", {
      expression: "ServiceRequest.status",
    });
  }
  const patientId = referencedId(order.subject, "Patient");
  if (patientId === undefined || !(await lookups.patientExists(patientId))) {
    throw new PlatformError("ERR_INVALID_RESOURCE", "the order's subject is not a stored Patient", {
      expression: "ServiceRequest.subject",
    });
  }
  const supportingInfo = Array.isArray(order.supportingInfo) ? (order.supportingInfo as unknown[]) : [];
  const binaryId = referencedId(supportingInfo[0], "Binary");
  const image = binaryId === undefined ? undefined : await lookups.image(binaryId);
  if (image === undefined) {
    throw new PlatformError(
      "ERR_INVALID_RESOURCE",
      "the order's first supportingInfo is not a stored image (Binary)",
      { expression: "ServiceRequest.supportingInfo" },
    );
  }
  const owner = referencedId(image.securityContext, "Patient");
  if (owner !== undefined && owner !== patientId) {
    throw new PlatformError("ERR_IMAGE_PATIENT", undefined, { expression: "ServiceRequest.supportingInfo" });
  }
}

/** Everything of an order that staff may not change: all but its status, notes and bookkeeping. */
function fixedPart(order: FhirResource): Record<string, unknown> {
  return Object.fromEntries(Object.entries(order).filter(([name]) => !changeable.has(name)));
}

const changeable: ReadonlySet<string> = new Set(["meta", "text", "id", "status", "note"]);

/**
 * A change to a stored order by staff (PUT): only an active order, and only to cancel it (`revoked`),
 * keeping its notes and adding to them if the caller likes.
 */
export function checkOrderChange(current: FhirResource, next: FhirResource): void {
  if (current.status !== "active") {
    throw new PlatformError("ERR_ORDER_STATE");
  }
  if (next.status !== "revoked") {
    throw new PlatformError("ERR_ORDER_CHANGE", undefined, { expression: "ServiceRequest.status" });
  }
  if (!isDeepStrictEqual(fixedPart(current), fixedPart(next))) {
    throw new PlatformError(
      "ERR_ORDER_CHANGE",
      "an order's patient, image, model and other details never change: cancel it and place a new one",
    );
  }
  const notes = Array.isArray(current.note) ? (current.note as unknown[]) : [];
  const nextNotes = Array.isArray(next.note) ? (next.note as unknown[]) : [];
  if (
    nextNotes.length < notes.length ||
    !notes.every((note, index) => isDeepStrictEqual(note, nextNotes[index]))
  ) {
    throw new PlatformError("ERR_ORDER_CHANGE", "an order's notes are only added to", {
      expression: "ServiceRequest.note",
    });
  }
}

/**
 * An image's security context (FHIR's X-Security-Context on upload, or `Binary.securityContext`): required,
 * and a stored Patient of the tenant.
 */
export async function checkImageOwner(
  image: FhirResource,
  patientExists: (id: string) => Promise<boolean>,
): Promise<void> {
  if (image.securityContext === undefined) {
    throw new PlatformError(
      "ERR_INVALID_RESOURCE",
      "an image names the patient it belongs to: send X-Security-Context: Patient/<id> with it",
      { expression: "Binary.securityContext" },
    );
  }
  const patientId = referencedId(image.securityContext, "Patient");
  if (patientId === undefined || !(await patientExists(patientId))) {
    throw new PlatformError("ERR_INVALID_RESOURCE", "the image's security context is not a stored Patient", {
      expression: "Binary.securityContext",
    });
  }
}

/**
 * A DICOM image's own header names its patient's birth date and sex. When the record says otherwise (both
 * known, and different), the image is probably another patient's, and it is refused
 * (ERR_IMAGE_PATIENT_MISMATCH) before anyone orders or reads it. A partial birth date in the record is
 * compared as far as it goes; images of other types, headers without these tags and unreadable headers are not
 * checked here (the analysis refuses an unreadable image). `patient` reads the record the image is filed in.
 */
export async function checkDicomPatient(
  image: FhirResource,
  patient: () => Promise<FhirResource>,
): Promise<void> {
  const header = dicomPatientOf(image);
  if (
    header === undefined ||
    (header.birthDate === undefined && (header.sex === undefined || header.sex === "O"))
  ) {
    return;
  }
  if (imageContradictsRecord(header, patientFactsOf(await patient()))) {
    throw new PlatformError("ERR_IMAGE_PATIENT_MISMATCH", undefined, {
      expression: "Binary.securityContext",
    });
  }
}

/**
 * What a DICOM image (a Binary) says of its patient in its own header; undefined for other image types and for
 * a header that cannot be read (the analysis refuses an unreadable image).
 */
export function dicomPatientOf(image: FhirResource): DicomPatient | undefined {
  if (image.contentType !== "application/dicom" || typeof image.data !== "string") {
    return undefined;
  }
  try {
    return readDicomPatient(Buffer.from(image.data, "base64"));
  } catch {
    return undefined;
  }
}

/** A Patient's recorded birth date and sex, for the checks against a model's patients and an image's header. */
export function patientFactsOf(patient: FhirResource): PatientFacts {
  return {
    ...(typeof patient.birthDate === "string" ? { birthDate: patient.birthDate } : {}),
    ...(typeof patient.gender === "string" ? { gender: patient.gender } : {}),
  };
}
