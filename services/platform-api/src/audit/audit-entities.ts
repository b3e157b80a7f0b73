// What an audited interaction touched: each resource, and the patient whose record it belongs to, so that an
// access report for one patient (`AuditEvent?patient=Patient/<id>`) finds every read, search hit and write of
// their record (their orders, images, results), not only of the Patient resource itself.
import { referencedId, type FhirResource } from "../fhir/search-parameters.js";

/** The patient a resource belongs to: itself, its subject, or (an image) its security context. */
export function patientOf(resource: FhirResource): string | undefined {
  if (resource.resourceType === "Patient") {
    return resource.id === undefined ? undefined : `Patient/${resource.id}`;
  }
  const patientId = referencedId(
    resource.resourceType === "Binary" ? resource.securityContext : resource.subject,
    "Patient",
  );
  return patientId === undefined ? undefined : `Patient/${patientId}`;
}

/** The resources' references, then the patients they belong to (each once). */
export function auditEntities(resources: readonly FhirResource[]): string[] {
  const references = new Set(resources.map((resource) => `${resource.resourceType}/${resource.id ?? ""}`));
  for (const resource of resources) {
    const patient = patientOf(resource);
    if (patient !== undefined) {
      references.add(patient);
    }
  }
  return [...references];
}
