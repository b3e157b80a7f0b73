// The search parameters the portal and workflow need, per resource type (FHIR R4 search, exact-match
// subset). Each resource yields blind-index tokens for its values; each query yields token groups. Matching
// is exact after normalisation (strings: lowercase, accents removed, one word at a time), because the
// database only ever sees HMACs of values.
import type { SearchOrder } from "../storage/record-store.js";
import { PlatformError } from "../errors.js";

export type SearchValueKind = "token" | "string" | "date" | "reference";

interface ParameterDefinition {
  readonly kind: SearchValueKind;
  /** The values a resource carries for this parameter (before normalisation). */
  readonly extract: (resource: FhirResource) => string[];
  /** For a parameter FHIR does not define: what it searches (the CapabilityStatement says so). */
  readonly documentation?: string;
}

export type FhirResource = Record<string, unknown> & { resourceType: string; id?: string };

function array(value: unknown): unknown[] {
  return Array.isArray(value) ? value : value === undefined ? [] : [value];
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
}

function identifierTokens(resource: FhirResource): string[] {
  return array(resource.identifier).flatMap((entry) => {
    const { system, value } = record(entry);
    if (typeof value !== "string") {
      return [];
    }
    return typeof system === "string" ? [`${system}|${value}`, `|${value}`] : [`|${value}`];
  });
}

function referenceTokens(...values: unknown[]): string[] {
  return values.flatMap(array).flatMap((entry) => {
    const reference = record(entry).reference;
    return typeof reference === "string" ? [reference] : [];
  });
}

function codeTokens(value: unknown): string[] {
  return typeof value === "string" ? [value] : [];
}

const status = (resource: FhirResource): string[] => codeTokens(resource.status);

/**
 * The clinical priority of the order an AI result answers (FHIR request-priority: routine, urgent, asap,
 * stat), copied from the order onto its DiagnosticReport, which has no priority element of its own: the
 * clinicians' worklist shows the most urgent results first.
 */
export const orderPriorityExtension = "https://cloister.dev/fhir/StructureDefinition/order-priority";

/** The request-priority codes, most urgent first. */
export const requestPriorities = ["stat", "asap", "urgent", "routine"] as const;

/** A report's order priority (its extension), as written by the workflow; absent on older reports. */
export function reportOrderPriority(report: FhirResource): string | undefined {
  const extension = array(report.extension)
    .map(record)
    .find((entry) => entry.url === orderPriorityExtension);
  return typeof extension?.valueCode === "string" ? extension.valueCode : undefined;
}

/** The id in a Reference `{reference: "<type>/<id>"}`, or undefined when it is not one. */
export function referencedId(reference: unknown, type: string): string | undefined {
  const value = (reference as { reference?: unknown } | undefined)?.reference;
  return typeof value === "string"
    ? new RegExp(`^${type}/([A-Za-z0-9\\-.]{1,64})$`).exec(value)?.[1]
    : undefined;
}

/** An AuditEvent's entity.what references. */
const entityTargets = (event: FhirResource): unknown[] =>
  array(event.entity).map((entity) => record(entity).what);

export const searchParameters: Readonly<Record<string, Readonly<Record<string, ParameterDefinition>>>> = {
  Patient: {
    identifier: { kind: "token", extract: identifierTokens },
    name: {
      kind: "string",
      extract: (patient) =>
        array(patient.name).flatMap((entry) => {
          const name = record(entry);
          return [...array(name.family), ...array(name.given), ...array(name.text)].filter(
            (part): part is string => typeof part === "string",
          );
        }),
    },
    birthdate: { kind: "date", extract: (patient) => codeTokens(patient.birthDate) },
  },
  ServiceRequest: {
    subject: { kind: "reference", extract: (request) => referenceTokens(request.subject) },
    status: { kind: "token", extract: status },
    identifier: { kind: "token", extract: identifierTokens },
    priority: { kind: "token", extract: (request) => codeTokens(request.priority) },
  },
  DiagnosticReport: {
    subject: { kind: "reference", extract: (report) => referenceTokens(report.subject) },
    "based-on": { kind: "reference", extract: (report) => referenceTokens(report.basedOn) },
    status: { kind: "token", extract: status },
    "order-priority": {
      kind: "token",
      extract: (report) => codeTokens(reportOrderPriority(report)),
      documentation: `The priority of the order an AI report answers (routine, urgent, asap or stat; extension ${orderPriorityExtension}). Reports written before it was recorded have none.`,
    },
  },
  Observation: {
    subject: { kind: "reference", extract: (observation) => referenceTokens(observation.subject) },
  },
  Provenance: {
    target: { kind: "reference", extract: (provenance) => referenceTokens(provenance.target) },
  },
  // For access reports: whose record an event touched, and who touched it. Two index rows a typical event,
  // since every request writes one: entity and date searches would triple that (a fifth of read throughput).
  AuditEvent: {
    patient: {
      kind: "reference",
      extract: (event) =>
        referenceTokens(entityTargets(event)).filter((reference) => reference.startsWith("Patient/")),
    },
    agent: {
      kind: "token",
      extract: (event) =>
        array(event.agent).flatMap((agent) => codeTokens(record(record(record(agent).who).identifier).value)),
    },
  },
  Binary: {},
};

export const supportedTypes = Object.keys(searchParameters);

/** Lowercase, accents removed, split into words: "Zoë  O'Brien" → ["zoe", "o'brien"]. */
function words(value: string): string[] {
  return value
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .split(/[\s,]+/)
    .filter((word) => word.length > 0);
}

function normalise(kind: SearchValueKind, value: string): string[] {
  switch (kind) {
    case "string":
      return words(value);
    case "date":
      return /^\d{4}(-\d{2}(-\d{2})?)?$/.test(value) ? [value] : [];
    case "reference":
    case "token":
      return [value];
  }
}

/** Every (parameter, normalised value) pair a resource is findable by. */
export function indexEntries(resource: FhirResource): { parameter: string; value: string }[] {
  const parameters = searchParameters[resource.resourceType] ?? {};
  return Object.entries(parameters).flatMap(([parameter, definition]) =>
    definition
      .extract(resource)
      .flatMap((raw) => normalise(definition.kind, raw).map((value) => ({ parameter, value }))),
  );
}

/**
 * A query's groups: each parameter is one AND-ed group whose comma-separated values are OR-ed. A
 * string value of several words must match every word. Unknown parameters are refused, not ignored.
 */
export function queryGroups(
  type: string,
  query: Readonly<Record<string, string | string[] | undefined>>,
): {
  groups: { parameter: string; value: string }[][];
  count: number;
  /** `_sort=_lastUpdated` (oldest first) or `-_lastUpdated` (newest first, the default). */
  order: SearchOrder;
  /** `_summary=count`: the number of matches only. */
  countOnly: boolean;
} {
  const parameters = searchParameters[type] ?? {};
  const groups: { parameter: string; value: string }[][] = [];
  let count = 50;
  let order: SearchOrder = "newest";
  let countOnly = false;
  for (const [name, rawValue] of Object.entries(query)) {
    const values = array(rawValue).filter((v): v is string => typeof v === "string");
    if (name === "_count") {
      const parsed = Number.parseInt(values[0] ?? "", 10);
      if (!Number.isInteger(parsed) || parsed < 1 || parsed > 500) {
        throw new PlatformError("ERR_BAD_REQUEST", "_count must be 1 to 500", { expression: "_count" });
      }
      count = parsed;
      continue;
    }
    if (name === "_sort") {
      if (values.length !== 1 || (values[0] !== "_lastUpdated" && values[0] !== "-_lastUpdated")) {
        throw new PlatformError("ERR_BAD_REQUEST", "_sort is _lastUpdated or -_lastUpdated", {
          expression: "_sort",
        });
      }
      order = values[0] === "_lastUpdated" ? "oldest" : "newest";
      continue;
    }
    if (name === "_summary") {
      if (values.length !== 1 || values[0] !== "count") {
        throw new PlatformError("ERR_BAD_REQUEST", "_summary is count", { expression: "_summary" });
      }
      countOnly = true;
      continue;
    }
    const definition = parameters[name];
    if (definition === undefined) {
      throw new PlatformError(
        "ERR_BAD_REQUEST",
        `${type} cannot be searched by ${JSON.stringify(name.slice(0, 40))}`,
        {
          expression: name.slice(0, 40),
        },
      );
    }
    for (const value of values) {
      const alternatives = value.split(",").filter((part) => part.length > 0);
      if (definition.kind === "string") {
        // Each word of the value is its own AND-ed group; alternatives of one word are OR-ed.
        const perAlternative = alternatives.map((alternative) => words(alternative));
        const longest = Math.max(0, ...perAlternative.map((w) => w.length));
        for (let i = 0; i < longest; i++) {
          groups.push(
            perAlternative.flatMap((w) => {
              const word = w[i];
              return word === undefined ? [] : [{ parameter: name, value: word }];
            }),
          );
        }
      } else {
        const normalised = alternatives.flatMap((alternative) => normalise(definition.kind, alternative));
        if (normalised.length === 0) {
          throw new PlatformError("ERR_BAD_REQUEST", `${name} has no usable value`, { expression: name });
        }
        groups.push(normalised.map((v) => ({ parameter: name, value: v })));
      }
    }
  }
  return { groups, count, order, countOnly };
}
