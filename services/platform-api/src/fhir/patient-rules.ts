// A patient's identifiers (the hospital's MRN above all) name one person: registering or correcting a patient
// with an identifier another patient of the hospital holds is refused (ERR_DUPLICATE), so one person's results
// never split across two records and two people's never meet in one. Identifiers without a system name no
// namespace and are not checked.
//
// The check and the write run one at a time per tenant on a replica (`SerialisedWrites`), and across replicas
// every Patient write moves one guard record per tenant on, from the version read before the check, in the
// write's own transaction (`writePatientChecked`): two replicas that checked the same state conflict, and the
// later one checks again and finds the other's patient.
import { PlatformError } from "../errors.js";
import type { FhirRepository, TenantContext } from "./repository.js";
import type { FhirResource } from "./search-parameters.js";

/** The guard record of a tenant's patient identifiers. */
const patientGuard = "patient-identifiers";

/**
 * Checks the Patient's identifiers and writes it (`write`, given the guard to move on), again from a fresh
 * check when another write of the tenant's Patients came in between.
 */
export async function writePatientChecked(
  repository: FhirRepository,
  tenant: TenantContext,
  patient: FhirResource,
  ownId: string | undefined,
  write: (guard: { readonly id: string; readonly versionId: number }) => Promise<FhirResource>,
): Promise<FhirResource> {
  for (let attempt = 0; ; attempt++) {
    const guard = { id: patientGuard, versionId: await repository.guardVersion(tenant, patientGuard) };
    await checkPatientIdentifiers(patient, ownId, (identifier) =>
      repository.search(tenant, "Patient", { identifier }),
    );
    try {
      return await write(guard);
    } catch (error) {
      const conflict = error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT" && attempt < 8;
      if (!conflict || (await repository.guardVersion(tenant, patientGuard)) === guard.versionId) {
        throw error;
      }
    }
  }
}

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
