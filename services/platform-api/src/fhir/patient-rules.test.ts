// The MRN rule on its own: which identifiers are checked, and that the check and the write of one tenant's
// patients run one at a time, so simultaneous registrations of one MRN on a replica make one patient.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, it } from "node:test";
import { PlatformError } from "../errors.js";
import { checkPatientIdentifiers, SerialisedWrites } from "./patient-rules.js";
import type { FhirResource } from "./search-parameters.js";

const mrnSystem = "https://hospital.test/mrn";

describe("a patient's identifiers", () => {
  it("refuse an identifier another patient holds, and let a patient keep its own", async () => {
    const holders = new Map<string, FhirResource[]>([
      [`${mrnSystem}|1001`, [{ resourceType: "Patient", id: "a" }]],
    ]);
    const asked: string[] = [];
    const patientsWith = async (identifier: string): Promise<FhirResource[]> => {
      asked.push(identifier);
      return holders.get(identifier) ?? [];
    };
    const patient = (value: string, system?: string): FhirResource => ({
      resourceType: "Patient",
      identifier: [{ ...(system === undefined ? {} : { system }), value }],
    });
    await assert.rejects(
      checkPatientIdentifiers(patient("1001", mrnSystem), undefined, patientsWith),
      (error: unknown) =>
        error instanceof PlatformError &&
        error.code === "ERR_DUPLICATE" &&
        error.expression === "Patient.identifier" &&
        !error.message.includes("1001"),
    );
    await assert.rejects(checkPatientIdentifiers(patient("1001", mrnSystem), "b", patientsWith));
    await checkPatientIdentifiers(patient("1001", mrnSystem), "a", patientsWith);
    await checkPatientIdentifiers(patient("1002", mrnSystem), undefined, patientsWith);
    asked.length = 0;
    await checkPatientIdentifiers(patient("1001"), undefined, patientsWith);
    assert.deepEqual(asked, [], "an identifier without a system is not looked up");
  });

  it("are checked and written one registration at a time per tenant", async () => {
    const stored = new Map<string, string[]>();
    const writes = new SerialisedWrites();
    // A store whose lookups and writes take time, as a database's do.
    const register = (tenant: string, name: string) =>
      writes.run(tenant, async () => {
        await checkPatientIdentifiers(
          { resourceType: "Patient", identifier: [{ system: mrnSystem, value: "RACE" }] },
          undefined,
          async () => {
            await sleep(5);
            return (stored.get(tenant) ?? []).map((id) => ({ resourceType: "Patient", id }));
          },
        );
        await sleep(5);
        stored.set(tenant, [...(stored.get(tenant) ?? []), name]);
        return name;
      });
    const outcomes = await Promise.allSettled([
      register("a", "first"),
      register("a", "second"),
      register("a", "third"),
      register("b", "other hospital"),
    ]);
    assert.deepEqual(
      outcomes.map((outcome) => outcome.status),
      ["fulfilled", "rejected", "rejected", "fulfilled"],
    );
    assert.deepEqual(stored.get("a"), ["first"]);
    assert.deepEqual(stored.get("b"), ["other hospital"]);
    // After refusals the queue goes on.
    await assert.rejects(register("a", "fourth"));
    assert.equal(await writes.run("a", async () => "still running"), "still running");
  });
});
