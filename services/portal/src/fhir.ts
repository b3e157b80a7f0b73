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

/** FHIR's request-priority codes. */
export type RequestPriority = "routine" | "urgent" | "asap" | "stat";

export interface ServiceRequest {
  readonly resourceType: "ServiceRequest";
  readonly id?: string;
  readonly status: string;
  readonly intent: string;
  readonly priority?: RequestPriority;
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
  /** The platform's extensions: the priority of the order it answers (orderPriorityExtension). */
  readonly extension?: readonly { readonly url?: string; readonly valueCode?: string }[];
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

/** The priority of the order an AI report answers, copied onto the report by the platform's workflow. */
export const orderPriorityExtension = "https://cloister.dev/fhir/StructureDefinition/order-priority";

/** The priorities as staff call them (HL7's displays), least urgent first as HL7 lists them. */
export const priorityNames: Readonly<Record<RequestPriority, string>> = {
  routine: "Routine",
  urgent: "Urgent",
  asap: "ASAP",
  stat: "STAT",
};

/** The priorities above routine, most urgent first. */
export const urgentPriorities = ["stat", "asap", "urgent"] as const;

function isRequestPriority(value: unknown): value is RequestPriority {
  return typeof value === "string" && Object.hasOwn(priorityNames, value);
}

/** A report's order priority; routine when it carries none (written before priorities were recorded). */
export function reportPriority(report: DiagnosticReport): RequestPriority {
  const code = report.extension?.find((extension) => extension.url === orderPriorityExtension)?.valueCode;
  return isRequestPriority(code) ? code : "routine";
}

export function formatName(patient: Patient): string {
  const name = patient.name?.[0];
  const given = name?.given?.join(" ") ?? "";
  return [name?.family?.toUpperCase() ?? "", given].filter((part) => part !== "").join(", ") || "(no name)";
}
