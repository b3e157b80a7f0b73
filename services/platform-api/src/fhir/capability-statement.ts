import { searchParameters } from "./search-parameters.js";

const searchTypes: Record<string, string> = {
  token: "token",
  string: "string",
  date: "date",
  reference: "reference",
};

/** Types staff create (the others are written by the workflow, the review and the audit trail). */
const createdTypes: ReadonlySet<string> = new Set(["Patient", "ServiceRequest", "Binary"]);

/** GET /fhir/metadata: what this server does, so any FHIR client can discover it. */
export function capabilityStatement(baseUrl: string, software: string): Record<string, unknown> {
  return {
    resourceType: "CapabilityStatement",
    status: "active",
    date: "2026-11-29",
    kind: "instance",
    software: { name: "Cloister platform API", version: software },
    implementation: { description: "Cloister medical platform (confidential)", url: `${baseUrl}/fhir` },
    fhirVersion: "4.0.1",
    format: ["application/fhir+json", "json"],
    rest: [
      {
        mode: "server",
        security: {
          description:
            "Bearer tokens from POST /auth/login (or the configured OpenID Connect provider); every resource belongs to one tenant.",
        },
        // For every type: at most 500 per page, by last update either way, or the number of matches only.
        searchParam: [
          { name: "_count", type: "number", documentation: "1 to 500 (default 50)" },
          { name: "_sort", type: "token", documentation: "_lastUpdated or -_lastUpdated (the default)" },
          { name: "_summary", type: "token", documentation: "count: Bundle.total only" },
        ],
        resource: Object.entries(searchParameters).map(([type, parameters]) => ({
          type,
          versioning: "versioned",
          readHistory: true,
          // Reports, Observations and Provenance are written by the workflow and the review only; images are
          // never changed once stored; orders are changed only to cancel them (order-rules.ts).
          updateCreate: type === "Patient",
          interaction: [
            { code: "read" },
            { code: "vread" },
            { code: "history-instance" },
            { code: "search-type" },
            ...(createdTypes.has(type) ? [{ code: "create" }] : []),
            ...(type === "Patient" ? [{ code: "update" }] : []),
            ...(type === "ServiceRequest"
              ? [
                  {
                    code: "update",
                    documentation:
                      "Only to cancel an active order: status revoked, notes added; nothing else of it changes.",
                  },
                ]
              : []),
          ],
          ...(type === "Binary"
            ? { documentation: "An image is never changed once stored (update answers 405)." }
            : {}),
          ...(type === "ServiceRequest"
            ? {
                documentation:
                  "Placed active, for a stored Patient (subject) and image (supportingInfo[0] a Binary).",
              }
            : {}),
          searchParam: Object.entries(parameters).map(([name, definition]) => ({
            name,
            type: searchTypes[definition.kind] ?? "string",
            ...(definition.documentation === undefined ? {} : { documentation: definition.documentation }),
          })),
          ...(type === "Patient"
            ? {
                operation: [
                  {
                    name: "everything",
                    definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    documentation:
                      "Clinicians and admins: the patient, orders, images, reports, results and Provenance; _type narrows it.",
                  },
                ],
              }
            : {}),
          // A clinician's review of an AI report (report-review.ts).
          ...(type === "DiagnosticReport"
            ? {
                operation: [
                  {
                    name: "review",
                    definition: "https://cloister.dev/fhir/OperationDefinition/DiagnosticReport-review",
                    documentation:
                      "Clinicians: Parameters {outcome: confirmed | not-confirmed | entered-in-error, note} make a preliminary AI report final, change a review (with If-Match, corrected or amended), or withdraw a report with its results and order.",
                  },
                ],
              }
            : {}),
        })),
      },
    ],
  };
}
