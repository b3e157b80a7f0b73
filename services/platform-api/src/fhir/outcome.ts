// OperationOutcome (FHIR R4) for every /fhir error, and the Bundle shapes of search and history.
import { platformErrors, type PlatformError } from "../errors.js";
import type { FhirResource } from "./search-parameters.js";

export function operationOutcome(error: PlatformError): FhirResource {
  return {
    resourceType: "OperationOutcome",
    issue: [
      {
        severity: "error",
        code: platformErrors[error.code].issue,
        details: {
          coding: [{ system: "https://cloister.dev/fhir/CodeSystem/error", code: error.code }],
          text: error.message,
        },
        ...(error.expression === undefined ? {} : { expression: [error.expression] }),
      },
    ],
  };
}

export function searchBundle(
  baseUrl: string,
  type: string,
  resources: readonly FhirResource[],
  total: number = resources.length,
  nextCursor?: string,
): FhirResource {
  return {
    resourceType: "Bundle",
    type: "searchset",
    total,
    // The next page: an opaque cursor, never the search values (they may be a name or an MRN).
    ...(nextCursor === undefined
      ? {}
      : { link: [{ relation: "next", url: `${baseUrl}/fhir/${type}?_cursor=${nextCursor}` }] }),
    entry: resources.map((resource) => ({
      fullUrl: `${baseUrl}/fhir/${type}/${resource.id ?? ""}`,
      resource,
      search: { mode: "match" },
    })),
  };
}

export function historyBundle(
  baseUrl: string,
  type: string,
  versions: readonly FhirResource[],
): FhirResource {
  return {
    resourceType: "Bundle",
    type: "history",
    total: versions.length,
    entry: versions.map((resource) => ({
      fullUrl: `${baseUrl}/fhir/${type}/${resource.id ?? ""}`,
      resource,
      request: {
        method: (resource.meta as { versionId?: string } | undefined)?.versionId === "1" ? "POST" : "PUT",
        url: `${type}/${resource.id ?? ""}`,
      },
      response: { status: "200" },
    })),
  };
}
