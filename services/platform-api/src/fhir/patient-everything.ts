// FHIR's Patient/$everything: a patient's whole record in one searchset Bundle, for a records request (the
// patient's right of access) or a transfer of care. The patient, their orders, reports, results, the
// Provenance of the reports and results, and the images their orders name, with their data. `_type` narrows it.
// The images are the large part: above `maxImageBytes` together, the answer is refused with the way round
// (leave Binary out, read each image) instead of building a response the enclave's memory cannot hold.
import { PlatformError } from "../errors.js";
import type { FhirRepository, TenantContext } from "./repository.js";
import { referencedId, type FhirResource } from "./search-parameters.js";

export const everythingTypes = [
  "Patient",
  "ServiceRequest",
  "DiagnosticReport",
  "Observation",
  "Provenance",
  "Binary",
] as const;

/** The `_type` parameter as a set of types (all of them when absent); anything else is refused. */
export function everythingTypesOf(query: Readonly<Record<string, unknown>>): ReadonlySet<string> {
  for (const name of Object.keys(query)) {
    if (name !== "_type") {
      throw new PlatformError("ERR_BAD_REQUEST", "$everything takes _type only", { expression: name });
    }
  }
  const given = query._type;
  if (given === undefined) {
    return new Set(everythingTypes);
  }
  const types = (Array.isArray(given) ? given : [given])
    .flatMap((value) => String(value).split(","))
    .map((type) => type.trim());
  if (types.length === 0 || types.some((type) => !(everythingTypes as readonly string[]).includes(type))) {
    throw new PlatformError("ERR_BAD_REQUEST", `_type lists ${everythingTypes.join(", ")}`, {
      expression: "_type",
    });
  }
  return new Set(types);
}

/** A POSTed Parameters resource (or no body) as the operation's query: `_type` values only. */
export function everythingParameters(body: unknown): Record<string, string[]> {
  if (body === undefined || body === null || (typeof body === "string" && body === "")) {
    return {};
  }
  const parameters = body as { resourceType?: unknown; parameter?: unknown };
  if (parameters.resourceType !== "Parameters") {
    throw new PlatformError("ERR_BAD_REQUEST", "send FHIR Parameters, or nothing", {
      expression: "resourceType",
    });
  }
  const query: Record<string, string[]> = {};
  for (const parameter of Array.isArray(parameters.parameter) ? (parameters.parameter as unknown[]) : []) {
    const { name, valueString, valueCode } = (parameter ?? {}) as Record<string, unknown>;
    const value = valueString ?? valueCode;
    if (typeof name !== "string" || typeof value !== "string") {
      throw new PlatformError("ERR_BAD_REQUEST", "each parameter has a name and a string value", {
        expression: "Parameters.parameter",
      });
    }
    (query[name] ??= []).push(value);
  }
  return query;
}

/** Every match of a search, page after page (at most 10,000: the cursor's depth). */
async function searchAll(
  repository: FhirRepository,
  tenant: TenantContext,
  type: string,
  query: Readonly<Record<string, string>>,
): Promise<FhirResource[]> {
  const found: FhirResource[] = [];
  let page = await repository.searchWithTotal(tenant, type, { ...query, _count: "500" });
  found.push(...page.resources);
  while (page.nextCursor !== undefined) {
    page = await repository.searchWithTotal(tenant, type, { _cursor: page.nextCursor });
    found.push(...page.resources);
  }
  return found;
}

const referenceOf = (resource: FhirResource): string => `${resource.resourceType}/${resource.id ?? ""}`;

/** The patient's record, in the order: Patient, orders, images, reports, results, Provenance. */
export async function patientEverything(
  repository: FhirRepository,
  tenant: TenantContext,
  patientId: string,
  types: ReadonlySet<string>,
  maxImageBytes: number,
): Promise<FhirResource[]> {
  const patient = await repository.read(tenant, "Patient", patientId);
  const subject = { subject: `Patient/${patientId}` };
  // The orders name the images, so they are read for either.
  const orders =
    types.has("ServiceRequest") || types.has("Binary")
      ? await searchAll(repository, tenant, "ServiceRequest", subject)
      : [];
  const reports =
    types.has("DiagnosticReport") || types.has("Provenance")
      ? await searchAll(repository, tenant, "DiagnosticReport", subject)
      : [];
  const results =
    types.has("Observation") || types.has("Provenance")
      ? await searchAll(repository, tenant, "Observation", subject)
      : [];
  const provenance = new Map<string, FhirResource>();
  if (types.has("Provenance")) {
    const targets = [...reports, ...results].map(referenceOf);
    for (let start = 0; start < targets.length; start += 50) {
      const target = targets.slice(start, start + 50).join(",");
      for (const found of await searchAll(repository, tenant, "Provenance", { target })) {
        provenance.set(found.id ?? "", found);
      }
    }
  }
  const images: FhirResource[] = [];
  if (types.has("Binary")) {
    const named = new Set(
      orders.flatMap((order) =>
        (Array.isArray(order.supportingInfo) ? (order.supportingInfo as unknown[]) : [])
          .map((info) => referencedId(info, "Binary"))
          .filter((id): id is string => id !== undefined),
      ),
    );
    let bytes = 0;
    for (const id of named) {
      const image = await repository.read(tenant, "Binary", id);
      bytes += typeof image.data === "string" ? Math.floor((image.data.length * 3) / 4) : 0;
      if (bytes > maxImageBytes) {
        throw new PlatformError(
          "ERR_PAYLOAD_TOO_LARGE",
          `the patient's images together exceed ${Math.round(maxImageBytes / 1048576)} MB: ask with _type leaving Binary out, and read each image (Binary) by itself`,
        );
      }
      images.push(image);
    }
  }
  return [
    ...(types.has("Patient") ? [patient] : []),
    ...(types.has("ServiceRequest") ? orders : []),
    ...images,
    ...(types.has("DiagnosticReport") ? reports : []),
    ...(types.has("Observation") ? results : []),
    ...provenance.values(),
  ];
}
