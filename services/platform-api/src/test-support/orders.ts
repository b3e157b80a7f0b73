// A diagnosis order as staff place it, for tests and benchmarks.
import { modelCodeSystem } from "../workflow/diagnosis-worker.js";

/** An active ServiceRequest for the chest X-ray pneumonia model on the patient's image (a Binary). */
export function pneumoniaOrder(patientId: string, binaryId: string): Record<string, unknown> {
  return {
    resourceType: "ServiceRequest",
    status: "active",
    intent: "order",
    subject: { reference: `Patient/${patientId}` },
    code: { coding: [{ system: modelCodeSystem, code: "chest-xray-pneumonia" }] },
    supportingInfo: [{ reference: `Binary/${binaryId}` }],
  };
}
