// The platform API with the diagnosis workflow (memory queue) against the real inference server and
// attestation service on loopback, a clerk and a clinician, and a chest X-ray to order: what the workflow
// latency benchmark and the order-submission load server share.
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { PNG } from "pngjs";
import { readMedMnistSplit } from "@cloister/imaging";
import {
  AccountService,
  buildApp,
  createLocalSessions,
  createMemoryJobQueue,
  deriveTenantKeyring,
  openSqliteStore,
  type PlatformConfig,
} from "../services/platform-api/src/app.js";
import { startConfidentialStack } from "../services/inference-server/src/test-support/confidential-stack.js";
import { pneumoniaOrder } from "../services/platform-api/src/test-support/orders.js";

/** A PneumoniaMNIST validation image (28×28) as a PNG. */
export function chestXrayPng(index = 0): Uint8Array<ArrayBuffer> {
  const validation = readMedMnistSplit(
    new URL("../../shared/data/medmnist/pneumoniamnist_trainval.npz", import.meta.url).pathname,
    "val",
  );
  const image = new PNG({ width: 28, height: 28 });
  validation.images.subarray(index * 784, (index + 1) * 784).forEach((value, i) => {
    image.data.set([value, value, value, 255], i * 4);
  });
  return new Uint8Array(PNG.sync.write(image));
}

/** An active ServiceRequest for the pneumonia model, as JSON. */
export function diagnosisOrder(patientId: string, binaryId: string): string {
  return JSON.stringify(pneumoniaOrder(patientId, binaryId));
}

export interface WorkflowPlatform {
  readonly app: FastifyInstance;
  /** An access token of the bench tenant's clerk or clinician. */
  readonly signIn: (role: "clerk" | "clinician") => Promise<string>;
  readonly close: () => Promise<void>;
}

export async function startWorkflowPlatform(
  options: Partial<Pick<PlatformConfig, "https" | "maxEventLoopDelayMs">> = {},
): Promise<WorkflowPlatform> {
  const stack = await startConfidentialStack();
  const store = openSqliteStore(join(mkdtempSync(join(tmpdir(), "cloister-bench-workflow-")), "records.db"));
  const systemKeyring = deriveTenantKeyring(randomBytes(32), "_system");
  const tenantKeyring = deriveTenantKeyring(randomBytes(32), "bench");
  const accounts = new AccountService(store, systemKeyring);
  const password = randomBytes(16).toString("hex");
  for (const role of ["clerk", "clinician"] as const) {
    await accounts.create({ email: `${role}@bench.test`, password, tenantId: "bench", role });
  }
  const baseUrl = options.https === undefined ? "http://127.0.0.1" : "https://127.0.0.1";
  const app = await buildApp({
    baseUrl,
    store,
    accounts,
    systemKeyring,
    tenantKeyring: async () => tenantKeyring,
    sessions: await createLocalSessions({ issuer: baseUrl, lifetimeSeconds: 3600 }),
    workflow: { queue: createMemoryJobQueue(), inference: async () => stack.client },
    ...options,
  });
  return {
    app,
    signIn: async (role) =>
      (
        await app.inject({
          method: "POST",
          url: "/auth/login",
          payload: { email: `${role}@bench.test`, password },
        })
      ).json<{ accessToken: string }>().accessToken,
    close: async () => {
      await app.close();
      await store.close();
      await stack.close();
    },
  };
}
