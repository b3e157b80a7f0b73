// The few FHIR R4 shapes the portal reads and writes.
export interface Reference {
  readonly reference?: string;
}

export interface Coding {
  readonly system?: string;
  readonly code?: string;
  readonly display?: string;
}

export interface Patient {
  readonly resourceType: "Patient";
  readonly id?: string;
  readonly identifier?: readonly { readonly system?: string; readonly value?: string }[];
  readonly name?: readonly { readonly family?: string; readonly given?: readonly string[] }[];
  readonly birthDate?: string;
  readonly gender?: "male" | "female" | "other" | "unknown";
  readonly meta?: { readonly versionId?: string; readonly lastUpdated?: string };
}

export interface ServiceRequest {
  readonly resourceType: "ServiceRequest";
  readonly id?: string;
  readonly status: string;
  readonly intent: string;
  readonly subject: Reference;
  readonly code?: { readonly coding?: readonly Coding[]; readonly text?: string };
  readonly supportingInfo?: readonly Reference[];
  readonly identifier?: readonly { readonly system?: string; readonly value?: string }[];
  readonly authoredOn?: string;
  readonly note?: readonly {
    readonly text?: string;
    readonly time?: string;
    readonly authorString?: string;
  }[];
  readonly meta?: { readonly versionId?: string; readonly lastUpdated?: string };
}

export interface DiagnosticReport {
  readonly resourceType: "DiagnosticReport";
  readonly id?: string;
  readonly status: string;
  readonly code?: { readonly coding?: readonly Coding[]; readonly text?: string };
  readonly subject?: Reference;
  readonly basedOn?: readonly Reference[];
  readonly result?: readonly Reference[];
  readonly issued?: string;
  readonly conclusion?: string;
  readonly meta?: { readonly versionId?: string; readonly lastUpdated?: string };
  /** Who reviewed the AI's result: set when a clinician's review made the report final. */
  readonly resultsInterpreter?: readonly { readonly identifier?: { readonly value?: string } }[];
  readonly conclusionCode?: readonly { readonly coding?: readonly Coding[]; readonly text?: string }[];
}

export interface Observation {
  readonly resourceType: "Observation";
  readonly id?: string;
  readonly code?: { readonly coding?: readonly Coding[]; readonly text?: string };
  readonly valueQuantity?: { readonly value?: number };
  readonly valueCodeableConcept?: { readonly text?: string };
}

export interface Provenance {
  readonly resourceType: "Provenance";
  readonly agent?: readonly {
    readonly who?: { readonly display?: string; readonly identifier?: { system?: string; value?: string } };
  }[];
  readonly entity?: readonly { readonly role?: string; readonly what?: { readonly reference?: string } }[];
}

export const modelCodeSystem = "https://cloister.dev/fhir/CodeSystem/ai-model";

export function formatName(patient: Patient): string {
  const name = patient.name?.[0];
  const given = name?.given?.join(" ") ?? "";
  return [name?.family?.toUpperCase() ?? "", given].filter((part) => part !== "").join(", ") || "(no name)";
}
