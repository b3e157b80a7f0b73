// A patient's identifiers (the hospital's MRN above all) name one person: registering or correcting a patient
// with an identifier another patient of the hospital holds is refused (ERR_DUPLICATE), so one person's results
// never split across two records and two people's never meet in one. Identifiers without a system name no
// namespace and are not checked.
//
// The check and the write run one at a time per tenant on a replica (`SerialisedWrites`). Two replicas
// registering the same MRN at the same moment can still both pass; the portal looks the MRN up first, and
// conditional create (If-None-Exist) is the way for other clients.
import { PlatformError } from "../errors.js";
import type { FhirResource } from "./search-parameters.js";

/** Refuses a Patient whose `system|value` identifiers another Patient (not `ownId`) holds. */
export async function checkPatientIdentifiers(
  patient: FhirResource,
  ownId: string | undefined,
  patientsWith: (identifier: string) => Promise<readonly FhirResource[]>,
): Promise<void> {
  const identifiers = Array.isArray(patient.identifier) ? (patient.identifier as unknown[]) : [];
  for (const entry of identifiers) {
    const { system, value } = (typeof entry === "object" && entry !== null ? entry : {}) as {
      system?: unknown;
      value?: unknown;
    };
    if (typeof system !== "string" || typeof value !== "string") {
      continue;
    }
    const holders = await patientsWith(`${system}|${value}`);
    if (holders.some((holder) => holder.id !== ownId)) {
      throw new PlatformError("ERR_DUPLICATE", "another patient holds this identifier", {
        expression: "Patient.identifier",
      });
    }
  }
}

/** Runs actions one at a time per key (a tenant), in the order they arrive. */
export class SerialisedWrites {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, action: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(action, action);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await result;
    } finally {
      if (this.tails.get(key) === tail) {
        this.tails.delete(key);
      }
    }
  }
}
