// The diagnosis workflow (DESIGN.md §1 steps 5 to 7): for a ServiceRequest, send its image to the attested
// inference server through OHTTP and record a DiagnosticReport with its Observations and a Provenance.
// The result (Observations, report, Provenance, with ids derived from the ServiceRequest) and the order's new
// status are stored in one transaction, from the order version the job read: a job run twice (after a crash,
// a retry or a duplicate delivery) writes its result exactly once, and an order cancelled during the analysis
// gets no result.
import { createHash } from "node:crypto";
import type { ConfidentialService } from "@cloister/enclave";
import {
  completeFromImage,
  describeIntendedPatients,
  fitsIntendedPatients,
  parseIntendedPatients,
  type IntendedPatients,
  type PatientFacts,
} from "@cloister/imaging/intended-use";
import { PlatformError } from "../errors.js";
import type { AuditTrail } from "../audit/audit-trail.js";
import type { AuditEventWrite, FhirRepository, TenantContext } from "../fhir/repository.js";
import { orderPriorityExtension, type FhirResource } from "../fhir/search-parameters.js";
import type { DiagnosisJob, JobQueue } from "./job-queue.js";
import type { ResultCache } from "./result-cache.js";
import { withKeyringRetry } from "../storage/tenant-keyrings.js";
import { patientOf } from "../audit/audit-entities.js";
import { dicomPatientOf, patientFactsOf } from "../fhir/order-rules.js";

export const modelCodeSystem = "https://cloister.dev/fhir/CodeSystem/ai-model";
export const findingCodeSystem = "https://cloister.dev/fhir/CodeSystem/ai-finding";
/** The author of the notes the workflow adds to an order it could not complete. */
export const workflowAuthor = "Cloister AI workflow";

/** The order's patient reference for a report event, when it has one. */
function subjectOf(request: FhirResource): { subject?: string } {
  const reference = (request.subject as { reference?: unknown } | undefined)?.reference;
  return typeof reference === "string" ? { subject: reference } : {};
}

export interface WorkflowEvents {
  readonly publish: (
    tenantId: string,
    event: { type: string; id: string; status: string; basedOn: string; subject?: string },
  ) => void;
}

export interface DiagnosisWorkerOptions {
  readonly queue: JobQueue;
  readonly repository: FhirRepository;
  readonly audit: AuditTrail;
  readonly tenantKeyring: (tenantId: string) => Promise<TenantContext["keyring"]>;
  /**
   * Asks the key broker again for the tenant's key versions: a job that meets a record under a version this
   * replica has not fetched yet (another replica rotated first) fetches it and runs again at once, instead of
   * spending its attempts until the periodic refresh.
   */
  readonly refreshTenantKeyring?: (tenantId: string) => Promise<TenantContext["keyring"]>;
  readonly inference: () => Promise<ConfidentialService>;
  readonly events: WorkflowEvents;
  readonly maxAttempts?: number;
  /** Inference answers kept (sealed) until written, so a crash after inference does not repeat it. */
  readonly cache?: ResultCache;
  readonly now?: () => Date;
  /** For logs: ids and codes only. */
  readonly log?: (fields: Record<string, unknown>, message: string) => void;
}

/** What the workflow needs of a model's metadata. */
interface ModelInfo {
  readonly labels: string[];
  readonly title: string;
  /** The patients it is for (absent: anyone, or an answer cached before this was recorded). */
  readonly intendedPatients?: IntendedPatients;
}

interface InferenceOutcome {
  readonly result: {
    readonly model_version?: string;
    readonly outputs?: { data?: number[] }[];
    readonly parameters?: { predicted_index?: number; predicted_label?: string; model_sha256?: string };
  };
  readonly info: ModelInfo;
  readonly identity: { measurement: string; attestationType: string; simulated: boolean; tokenId: string };
}

/** A failure that retrying cannot fix (bad image, unknown model, missing Binary). */
class PermanentFailure extends Error {
  readonly code: string;
  constructor(code: string) {
    super(code);
    this.code = code;
  }
}

/**
 * A patient's recorded birth date and sex, completed from a DICOM image's own header where the record has
 * none (the upload refused a header that contradicts the record), so the intended-patient check can tell.
 */
function factsWithImage(facts: PatientFacts, image: FhirResource): PatientFacts {
  if (facts.birthDate !== undefined && facts.gender !== undefined) {
    return facts;
  }
  const header = dicomPatientOf(image);
  return header === undefined ? facts : completeFromImage(facts, header);
}

/** What staff are told to do after a failure, where "order it again with another image" would not help. */
const failureAdvice: Readonly<Record<string, string>> = {
  ERR_OUTSIDE_INTENDED_USE:
    "The patient's recorded age or sex is outside the patients the model is for, so it was not run. Read the image without it.",
};

/** Capped exponential backoff with jitter: about 1, 2, 4 … 60 s. */
export function retryDelayMs(attempt: number): number {
  const base = Math.min(60_000, 1000 * 2 ** Math.min(attempt, 6));
  return Math.floor(base / 2 + Math.random() * (base / 2));
}

/** A stored resource's version number (0 for one not stored). */
function versionOf(resource: FhirResource): number {
  return Number((resource.meta as { versionId?: string } | undefined)?.versionId ?? 0);
}

/** What a write answers when the order or a derived id changed since the job read them. */
const conflictCodes: ReadonlySet<string> = new Set(["ERR_PRECONDITION", "ERR_VERSION_CONFLICT"]);

/** The first element of a FHIR array as an object with unknown fields (or an empty one). */
function first(value: unknown): Record<string, unknown> {
  const item: unknown = Array.isArray(value) ? value[0] : undefined;
  return typeof item === "object" && item !== null ? (item as Record<string, unknown>) : {};
}

export class DiagnosisWorker {
  private readonly options: DiagnosisWorkerOptions;
  private readonly labels = new Map<string, ModelInfo>();
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(options: DiagnosisWorkerOptions) {
    this.options = options;
  }

  start(concurrency = 2): void {
    this.running = Promise.all(Array.from({ length: concurrency }, async () => this.loop())).then(
      () => undefined,
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.options.queue.close();
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const job = await this.options.queue.take();
      if (job === undefined) {
        return;
      }
      try {
        await this.run(job);
      } catch (error) {
        // Not even the retry could be scheduled (the queue or the key broker is away): try once more to put
        // the job back; failing that, its lease returns it. The loop itself never stops on a job.
        this.options.log?.(
          {
            job: job.serviceRequestId,
            outcome: error instanceof PlatformError ? error.code : "ERR_INTERNAL",
          },
          "diagnosis job left to its lease",
        );
        await this.settle(() => this.options.queue.enqueue(job, retryDelayMs(job.attempt + 1))).catch(
          () => undefined,
        );
      }
    }
  }

  /**
   * Queue bookkeeping (scheduling a retry, completing) outlives a short queue outage such as a Redis
   * restart: tried again with backoff for about half a minute before the error is let through.
   */
  private async settle(operation: () => Promise<void>): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await operation();
        return;
      } catch (error) {
        if (attempt >= 8 || this.stopped) {
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  }

  /** Runs one job to an outcome: a result, a retry later, or a recorded failure. */
  async run(job: DiagnosisJob): Promise<void> {
    const { queue } = this.options;
    let tenant: TenantContext = {
      tenantId: job.tenantId,
      keyring: await this.options.tenantKeyring(job.tenantId),
    };
    const refresh = this.options.refreshTenantKeyring;
    try {
      // The outcome is written once, from the order version read, so running the job again repeats nothing.
      await withKeyringRetry(
        {
          keyring: async () => tenant.keyring,
          refresh: refresh === undefined ? undefined : () => refresh(job.tenantId),
        },
        async (keyring) => {
          tenant = { tenantId: job.tenantId, keyring };
          await this.diagnose(tenant, job.serviceRequestId);
        },
      );
    } catch (error) {
      const permanent = error instanceof PermanentFailure;
      const code = permanent
        ? error.code
        : error instanceof PlatformError
          ? error.code
          : "ERR_INFERENCE_UNAVAILABLE";
      const attempts = job.attempt + 1;
      if (!permanent && attempts < (this.options.maxAttempts ?? 8)) {
        this.options.log?.(
          { job: job.serviceRequestId, attempt: attempts, outcome: code },
          "diagnosis will be retried",
        );
        await this.settle(() => queue.enqueue({ ...job, attempt: attempts }, retryDelayMs(attempts)));
        return;
      }
      this.options.log?.({ job: job.serviceRequestId, attempt: attempts, outcome: code }, "diagnosis failed");
      // If even the cancelled report cannot be written, the job is not completed: it comes back (loop).
      await this.recordFailure(tenant, job.serviceRequestId, code);
    }
    await this.settle(() => queue.complete(job));
  }

  /**
   * The workflow's own writes: an order's outcome, stored with one AuditEvent (naming every resource written)
   * in one transaction.
   */
  private auditedWrite<T>(
    tenant: TenantContext,
    write: (auditEvent: AuditEventWrite) => Promise<T>,
  ): Promise<T> {
    return this.options.audit.recordAlong(
      tenant,
      {
        type: { code: "110110", display: "Patient Record" },
        subtype: "transaction",
        action: "C",
        outcome: "0",
        agent: { id: "cloister-workflow", role: "workflow" },
      },
      write,
    );
  }

  private async modelInfo(inference: ConfidentialService, model: string): Promise<ModelInfo> {
    const cached = this.labels.get(model);
    if (cached !== undefined) {
      return cached;
    }
    const response = await inference.request({ method: "GET", path: `/v2/models/${model}` });
    if (response.status === 404) {
      throw new PermanentFailure("ERR_MODEL_NOT_FOUND");
    }
    if (response.status !== 200) {
      throw new PlatformError("ERR_INTERNAL", `the inference server answered ${response.status}`);
    }
    const metadata = JSON.parse(Buffer.from(response.body).toString("utf8")) as {
      parameters?: { labels?: string[]; title?: string; intended_patients?: unknown };
    };
    let intendedPatients: IntendedPatients | undefined;
    try {
      intendedPatients = parseIntendedPatients(metadata.parameters?.intended_patients);
    } catch {
      throw new PlatformError("ERR_INTERNAL", "the inference server described a model's patients wrongly");
    }
    const info: ModelInfo = {
      labels: metadata.parameters?.labels ?? [],
      title: metadata.parameters?.title ?? model,
      ...(intendedPatients === undefined ? {} : { intendedPatients }),
    };
    this.labels.set(model, info);
    return info;
  }

  private async diagnose(tenant: TenantContext, serviceRequestId: string): Promise<void> {
    const { repository } = this.options;
    const request = await repository.read(tenant, "ServiceRequest", serviceRequestId);
    const reportId = `report-${serviceRequestId}`;
    // Completed, cancelled (revoked) or withdrawn (entered-in-error): nothing left to do.
    if (request.status !== "active") {
      return;
    }
    const model = first((request.code as { coding?: unknown } | undefined)?.coding);
    if (model.system !== modelCodeSystem || typeof model.code !== "string") {
      throw new PermanentFailure("ERR_MODEL_NOT_FOUND");
    }
    const supporting = first(request.supportingInfo).reference;
    const binaryReference = typeof supporting === "string" ? supporting : "";
    const binaryId = /^Binary\/([A-Za-z0-9\-.]{1,64})$/.exec(binaryReference)?.[1];
    if (binaryId === undefined) {
      throw new PermanentFailure("ERR_NO_IMAGE");
    }
    let binary: FhirResource;
    try {
      binary = await repository.read(tenant, "Binary", binaryId);
    } catch {
      throw new PermanentFailure("ERR_NO_IMAGE");
    }
    // An image uploaded for another patient is never analysed for this one (checked when the order was placed
    // too; orders placed before that check are caught here).
    const owner = patientOf(binary);
    const subjectReference = (request.subject as { reference?: unknown } | undefined)?.reference;
    if (binary.securityContext !== undefined && owner !== subjectReference) {
      throw new PermanentFailure("ERR_IMAGE_PATIENT");
    }
    const patient = typeof subjectReference === "string" ? subjectReference : undefined;
    const facts = factsWithImage(await this.factsOf(tenant, patient), binary);
    const { result, info, identity } = await this.infer(
      tenant,
      serviceRequestId,
      model.code,
      { id: binaryId, resource: binary },
      { reference: patient, facts },
    );
    const probabilities = result.outputs?.[0]?.data ?? [];
    const predicted = result.parameters?.predicted_label ?? "";
    const now = (this.options.now?.() ?? new Date()).toISOString();
    // A patient whose birth date or sex is not recorded could not be checked against the model's patients.
    const unchecked =
      info.intendedPatients !== undefined &&
      fitsIntendedPatients(info.intendedPatients, facts, new Date(now)) === "unknown"
        ? ` The model is for ${describeIntendedPatients(info.intendedPatients)}; this patient's record does not show whether they are one.`
        : "";
    const subject = request.subject as { reference: string };

    const observations: FhirResource[] = probabilities.map((probability, index) => {
      const label = info.labels[index] ?? `class ${index}`;
      return {
        resourceType: "Observation",
        id: `obs-${serviceRequestId}-${index}`,
        status: "preliminary",
        code: { coding: [{ system: findingCodeSystem, code: label }], text: `AI probability: ${label}` },
        subject,
        issued: now,
        valueQuantity: {
          value: Number(probability.toFixed(6)),
          unit: "probability",
          system: "http://unitsofmeasure.org",
          code: "1",
        },
      };
    });
    observations.push({
      resourceType: "Observation",
      id: `obs-${serviceRequestId}-finding`,
      status: "preliminary",
      code: {
        coding: [{ system: findingCodeSystem, code: "predicted-finding" }],
        text: "AI predicted finding",
      },
      subject,
      issued: now,
      valueCodeableConcept: { coding: [{ system: findingCodeSystem, code: predicted }], text: predicted },
    });
    const best = probabilities[result.parameters?.predicted_index ?? 0] ?? 0;
    const report: FhirResource = {
      // Preliminary until a clinician reviews it ($review): the AI's finding is decision support only.
      resourceType: "DiagnosticReport",
      id: reportId,
      // The order's clinical priority (routine when it named none), for the clinicians' worklist.
      extension: [
        {
          url: orderPriorityExtension,
          valueCode: typeof request.priority === "string" ? request.priority : "routine",
        },
      ],
      status: "preliminary",
      code: { coding: [{ system: modelCodeSystem, code: model.code }], text: info.title },
      subject,
      basedOn: [{ reference: `ServiceRequest/${serviceRequestId}` }],
      issued: now,
      result: observations.map((observation) => ({ reference: `Observation/${observation.id ?? ""}` })),
      conclusion: `${info.title}: ${predicted} (model probability ${(best * 100).toFixed(1)}%). AI decision support, not a diagnosis; awaiting a clinician's review of the image.${unchecked}`,
    };
    const tokenId = identity.tokenId;
    const provenance: FhirResource = {
      resourceType: "Provenance",
      id: `prov-${serviceRequestId}`,
      target: [
        { reference: `DiagnosticReport/${reportId}` },
        ...observations.map((o) => ({ reference: `Observation/${o.id ?? ""}` })),
      ],
      recorded: now,
      activity: { text: "confidential AI inference" },
      agent: [
        {
          type: {
            coding: [
              {
                system: "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                code: "performer",
              },
            ],
          },
          who: {
            display: `${model.code} v${result.model_version ?? "?"}`,
            identifier: {
              system: "https://cloister.dev/model-sha256",
              value: result.parameters?.model_sha256 ?? "",
            },
          },
        },
        {
          type: {
            coding: [
              {
                system: "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                code: "assembler",
              },
            ],
          },
          who: {
            display: `inference server (${identity.attestationType}${identity.simulated ? ", simulated" : ""})`,
            identifier: { system: "https://cloister.dev/tee-measurement", value: identity.measurement },
          },
        },
      ],
      entity: [
        // The image exactly as analysed: Binary resources are never changed (PUT is refused), and the
        // version pins it all the same.
        { role: "source", what: { reference: `Binary/${binaryId}/_history/${versionOf(binary)}` } },
        {
          role: "source",
          what: { identifier: { system: "https://cloister.dev/attestation-token", value: tokenId } },
        },
      ],
    };
    const stored = await this.settleOrder(
      tenant,
      request,
      [...observations, report, provenance],
      "completed",
    );
    if (stored === undefined) {
      this.options.log?.(
        { job: serviceRequestId, outcome: "ORDER_SETTLED" },
        "the order was cancelled or settled during the analysis: no result written",
      );
      return;
    }
    this.options.events.publish(tenant.tenantId, {
      type: "DiagnosticReport",
      id: reportId,
      status: String(stored.status),
      basedOn: `ServiceRequest/${serviceRequestId}`,
      ...subjectOf(request),
    });
  }

  /** The birth date and sex of the order's patient, as recorded (read inside the TEE, never logged). */
  private async factsOf(tenant: TenantContext, patient: string | undefined): Promise<PatientFacts> {
    const id = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(patient ?? "")?.[1];
    if (id === undefined) {
      return {};
    }
    try {
      return patientFactsOf(await this.options.repository.read(tenant, "Patient", id));
    } catch (error) {
      if (error instanceof PlatformError && (error.code === "ERR_NOT_FOUND" || error.code === "ERR_GONE")) {
        return {};
      }
      throw error;
    }
  }

  /**
   * A model says nothing reliable about patients unlike those it learned from: a patient whose recorded age or
   * sex is outside the model's (its config.json's intendedPatients) gets no AI result.
   */
  private checkIntendedPatient(info: ModelInfo, facts: PatientFacts): void {
    if (
      fitsIntendedPatients(info.intendedPatients, facts, this.options.now?.() ?? new Date()) === "outside"
    ) {
      throw new PermanentFailure("ERR_OUTSIDE_INTENDED_USE");
    }
  }

  /**
   * The inference for one order, once: an answer already obtained (and cached, sealed, before the platform
   * could write it) is reused instead of asking the inference server again.
   */
  private async infer(
    tenant: TenantContext,
    serviceRequestId: string,
    model: string,
    image: { readonly id: string; readonly resource: FhirResource },
    patient: { readonly reference: string | undefined; readonly facts: PatientFacts },
  ): Promise<InferenceOutcome> {
    const binaryId = image.id;
    const binary = image.resource;
    const cacheKey = `inference:${serviceRequestId}`;
    const cached = await this.options.cache?.get(tenant, cacheKey);
    if (cached !== undefined) {
      const outcome = JSON.parse(Buffer.from(cached).toString("utf8")) as InferenceOutcome;
      this.checkIntendedPatient(outcome.info, patient.facts);
      return outcome;
    }
    const inference = await this.options.inference();
    const info = await this.modelInfo(inference, model);
    this.checkIntendedPatient(info, patient.facts);
    const response = await inference.request({
      method: "POST",
      path: `/v2/models/${model}/infer`,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        id: serviceRequestId,
        image: { contentType: binary.contentType, data: binary.data },
      }),
    });
    const result = JSON.parse(Buffer.from(response.body).toString("utf8")) as InferenceOutcome["result"] & {
      code?: string;
    };
    if (response.status >= 400 && response.status < 500) {
      throw new PermanentFailure(result.code ?? "ERR_INFERENCE_REFUSED");
    }
    if (response.status !== 200) {
      throw new PlatformError("ERR_INTERNAL", `the inference server answered ${response.status}`);
    }
    const peer = inference.identity();
    const identity = {
      measurement: peer.measurement,
      attestationType: peer.attestationType,
      simulated: peer.simulated,
      tokenId:
        typeof peer.claims.jti === "string"
          ? peer.claims.jti
          : createHash("sha256").update(JSON.stringify(peer.claims)).digest("hex"),
    };
    await this.options.audit.record(tenant, {
      type: { code: "110112", display: "Query" },
      subtype: "inference",
      action: "E",
      outcome: "0",
      agent: { id: `tee:${identity.measurement}`, role: "inference-server" },
      // The patient too, so the access report of their record lists the analysis of their image.
      entities: [
        `ServiceRequest/${serviceRequestId}`,
        `Binary/${binaryId}`,
        ...(patient.reference === undefined ? [] : [patient.reference]),
      ],
    });
    const outcome: InferenceOutcome = { result, info, identity };
    await this.options.cache?.set(tenant, cacheKey, Buffer.from(JSON.stringify(outcome)), 24 * 3600_000);
    return outcome;
  }

  /**
   * Stores an order's outcome in one transaction with one AuditEvent: the resources it produced (ids derived
   * from the order, create-only) and the order's new status, from the order version the job read. Answers
   * the report stored for the order, or undefined when the order is no longer active (a clerk cancelled it,
   * another worker settled it): then nothing is written.
   */
  private async settleOrder(
    tenant: TenantContext,
    request: FhirResource,
    produced: readonly FhirResource[],
    status: "completed" | "revoked",
    /** Added to the order's notes when it is revoked: why, for the clerk, who does not read reports. */
    failureNote?: Record<string, unknown>,
  ): Promise<FhirResource | undefined> {
    const { repository } = this.options;
    const orderId = request.id ?? "";
    const reportId = `report-${orderId}`;
    let order = request;
    let toCreate = produced;
    let outcome = status;
    const settled = (current: FhirResource, to: "completed" | "revoked"): FhirResource => {
      const notes = Array.isArray(current.note) ? (current.note as unknown[]) : [];
      return to === "revoked" && failureNote !== undefined
        ? { ...current, status: to, note: [...notes, failureNote] }
        : { ...current, status: to };
    };
    for (let attempt = 0; attempt < 3; attempt++) {
      if (order.status !== "active") {
        return undefined;
      }
      try {
        const written = await this.auditedWrite(tenant, (auditEvent) =>
          repository.updateTogether(
            tenant,
            [
              { resource: settled(order, outcome), id: orderId, ifMatch: versionOf(order) },
              ...toCreate.map((resource) => ({ resource, id: resource.id ?? "", ifMatch: 0 })),
            ],
            [],
            { auditEvent },
          ),
        );
        return (
          written.find((resource) => resource.resourceType === "DiagnosticReport") ??
          (await repository.read(tenant, "DiagnosticReport", reportId))
        );
      } catch (error) {
        if (!(error instanceof PlatformError && conflictCodes.has(error.code))) {
          throw error;
        }
      }
      // The order changed, or a result is stored already. An earlier version of the workflow wrote results
      // one resource at a time, so a crash could leave part of one: the stored report then decides.
      order = await repository.read(tenant, "ServiceRequest", orderId);
      const report = await this.storedOrUndefined(tenant, "DiagnosticReport", reportId);
      if (report !== undefined) {
        outcome = report.status === "cancelled" ? "revoked" : "completed";
        toCreate = outcome === "completed" ? await this.notStored(tenant, produced) : [];
      }
    }
    // Still conflicting: a transient state; the job runs again later.
    throw new PlatformError("ERR_VERSION_CONFLICT");
  }

  private async storedOrUndefined(
    tenant: TenantContext,
    type: string,
    id: string,
  ): Promise<FhirResource | undefined> {
    try {
      return await this.options.repository.read(tenant, type, id);
    } catch (error) {
      if (error instanceof PlatformError && error.code === "ERR_NOT_FOUND") {
        return undefined;
      }
      throw error;
    }
  }

  private async notStored(
    tenant: TenantContext,
    resources: readonly FhirResource[],
  ): Promise<FhirResource[]> {
    const missing: FhirResource[] = [];
    for (const resource of resources) {
      if ((await this.storedOrUndefined(tenant, resource.resourceType, resource.id ?? "")) === undefined) {
        missing.push(resource);
      }
    }
    return missing;
  }

  private async recordFailure(tenant: TenantContext, serviceRequestId: string, code: string): Promise<void> {
    const { repository } = this.options;
    const request = await repository.read(tenant, "ServiceRequest", serviceRequestId);
    const reportId = `report-${serviceRequestId}`;
    const cancelled: FhirResource = {
      resourceType: "DiagnosticReport",
      id: reportId,
      status: "cancelled",
      contained: [
        {
          resourceType: "OperationOutcome",
          id: "reason",
          issue: [
            {
              severity: "error",
              code: "processing",
              details: { coding: [{ system: "https://cloister.dev/fhir/CodeSystem/error", code }] },
            },
          ],
        },
      ],
      extension: [
        {
          url: "https://cloister.dev/fhir/StructureDefinition/failure-reason",
          valueReference: { reference: "#reason" },
        },
      ],
      code: request.code ?? { text: "AI analysis" },
      ...(request.subject === undefined ? {} : { subject: request.subject }),
      basedOn: [{ reference: `ServiceRequest/${serviceRequestId}` }],
      issued: (this.options.now?.() ?? new Date()).toISOString(),
      conclusion: `The AI analysis could not be completed (${code}). No result was produced; ${
        failureAdvice[code] ?? "order it again or read the image without it."
      }`,
    };
    // If an earlier attempt already wrote the AI's report, the order is completed with it instead.
    const report = await this.settleOrder(tenant, request, [cancelled], "revoked", {
      authorString: workflowAuthor,
      time: cancelled.issued,
      text: `The AI analysis could not be completed (${code}). ${
        failureAdvice[code] ?? "Order it again with another image, or read the image without it."
      }`,
    });
    if (report === undefined) {
      return;
    }
    this.options.events.publish(tenant.tenantId, {
      type: "DiagnosticReport",
      id: report.id ?? reportId,
      status: String(report.status),
      basedOn: `ServiceRequest/${serviceRequestId}`,
      ...subjectOf(request),
    });
  }
}
