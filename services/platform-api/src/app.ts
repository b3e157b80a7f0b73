// The platform API's HTTP surface: staff sign-in, and FHIR R4 under /fhir with every resource sealed per
// tenant. Tests call buildApp and inject; main.ts wires it to attestation, the key broker and storage.
import { createServiceApp, isClientError } from "@cloister/service-kit";
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from "fastify";
import { attestRequestBody, type ConfidentialService, type Evidence } from "@cloister/enclave";
import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { OhttpKeyPair } from "@cloister/ohttp";
import { AuditTrail, staffQueryEvent, type AuditAction, type AuditInput } from "./audit/audit-trail.js";
import { registerOhttpGateway } from "./ohttp-gateway.js";
import type { ReplayGuard } from "./replay-guard.js";
import { DiagnosisWorker, type WorkflowEvents } from "./workflow/diagnosis-worker.js";
import { createMemoryEventBus, type ReportEventBus } from "./workflow/event-bus.js";
import { isUrgentOrder, type DiagnosisJob, type JobQueue, type QueueStats } from "./workflow/job-queue.js";
import { Counter, Gauge } from "prom-client";
import { createMemoryResultCache, type ResultCache } from "./workflow/result-cache.js";
import type { AccountService, AuditedWrite, LoginAudit } from "./auth/accounts.js";
import { LoginRateLimited } from "./auth/accounts.js";
import { registerAccountRoutes } from "./auth/account-routes.js";
import type { LocalSessions, Principal, SessionVerifier } from "./auth/sessions.js";
import { checkDicomPatient, checkImageOwner, checkNewOrder, checkOrderChange } from "./fhir/order-rules.js";
import { auditEntities } from "./audit/audit-entities.js";
import { SerialisedWrites, writePatientChecked } from "./fhir/patient-rules.js";
import { everythingParameters, everythingTypesOf, patientEverything } from "./fhir/patient-everything.js";
import { parseReview, reviewedStatuses, reviewReport } from "./fhir/report-review.js";
import { aiPerformance, resultFacts } from "./fhir/ai-performance.js";
import { PlatformError, type PlatformErrorCode } from "./errors.js";
import { capabilityStatement } from "./fhir/capability-statement.js";
import { historyBundle, operationOutcome, searchBundle } from "./fhir/outcome.js";
import {
  FhirRepository,
  type AuditEventWrite,
  type TenantContext,
  type WriteOptions,
} from "./fhir/repository.js";
import { loadFhirDefinitions, validateFhirResource } from "./fhir/validation.js";
import { referencedId, requestPriorities, type FhirResource } from "./fhir/search-parameters.js";
import type { TenantKeyring } from "./storage/record-crypto.js";
import {
  keyringSource,
  systemTenantId,
  withKeyringRetry,
  type KeyringSource,
} from "./storage/tenant-keyrings.js";
import type { RecordStore } from "./storage/record-store.js";

export interface PlatformConfig {
  readonly baseUrl: string;
  readonly store: RecordStore;
  /** The tenant's keys, derived from its data key released by the key broker. */
  readonly tenantKeyring: (tenantId: string) => Promise<TenantKeyring>;
  /**
   * Asks the key broker again for the tenant's data key versions (after a rotation) and returns the new
   * keyring; later tenantKeyring calls return it too. Without it, the keyring never changes.
   */
  readonly refreshTenantKeyring?: (tenantId: string) => Promise<TenantKeyring>;
  readonly accounts: AccountService;
  /**
   * Keys for platform-level records: accounts and the audit trail of sign-ins and refused requests. A source
   * follows rotations of `platform-system` at the key broker; a keyring never changes.
   */
  readonly systemKeyring: TenantKeyring | KeyringSource;
  readonly sessions: LocalSessions;
  /**
   * Where report events go to reach every replica's event streams (default: this process only). main.ts
   * shares them through Redis when the platform has it.
   */
  readonly reportEvents?: ReportEventBus;
  /**
   * The OHTTP replay check shared by the replicas, which share the OHTTP key (main.ts: Redis). Without it,
   * each replica's own replay cache is the only one.
   */
  readonly replayGuard?: ReplayGuard;
  /**
   * The tenant whose admins operate the platform itself (platform-wide actions such as
   * `POST /admin/system/reencrypt`). Without it, no one may ask for those actions; the platform still does
   * them in the background. A hospital's admins manage their own tenant only.
   */
  readonly operatorTenant?: string;
  /** Replaces local sessions for /fhir when an OpenID Connect provider is configured. */
  readonly sessionVerifier?: SessionVerifier;
  readonly logger?: FastifyServerOptions["logger"];
  /** Browser origins allowed to call this service (the portal's). */
  readonly corsOrigins?: readonly string[];
  /**
   * The ingress controller's addresses or CIDR ranges: only from them is X-Forwarded-For believed, so sign-in
   * limits count clients, not the proxy every client comes through.
   */
  readonly trustedProxies?: readonly string[];
  readonly https?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Largest Binary (default 20 MB). */
  readonly maxBinaryBytes?: number;
  /** Largest sum of images in one Patient/$everything (default 100 MB): above it, leave Binary out with _type. */
  readonly maxEverythingImageBytes?: number;
  /**
   * Requests handled at once (health, metrics and event streams aside) before the platform sheds load with
   * 503 and Retry-After instead of slowing every request down or running out of memory (default 256).
   */
  readonly maxInFlight?: number;
  /**
   * Shed load by event-loop delay: over this many ms in two 0.5 s windows running, requests get 503
   * ERR_OVERLOADED with Retry-After. main.ts sets it from CLOISTER_MAX_EVENT_LOOP_DELAY_MS (default 200);
   * in-process tests leave it off, since their own work shares the loop.
   */
  readonly maxEventLoopDelayMs?: number;
  readonly now?: () => Date;
  /**
   * How often an event stream gets a heartbeat, and its session is checked again (default 15 s): the stream
   * of a session that ended (the account disabled or changed) ends at the next one.
   */
  readonly eventHeartbeatMs?: number;
  /** This platform's own attestation (evidence and token), served at GET /attestation for the portal. */
  readonly attestation?: {
    readonly token: () => string;
    readonly evidence: Evidence;
    readonly runtimeData: Uint8Array;
    /** The keys bound into the evidence; with them the platform serves its OHTTP gateway for browsers. */
    readonly keys?: {
      readonly ohttp: OhttpKeyPair;
      /** Older versions of the shared OHTTP key, still opened during a roll (`SharedOhttpKeys`). */
      readonly ohttpPrevious?: readonly OhttpKeyPair[];
    };
  };
  /** The diagnosis workflow: its queue and the attested inference server it talks to. */
  readonly workflow?: {
    readonly queue: JobQueue;
    readonly inference: () => Promise<ConfidentialService>;
    readonly workers?: number;
    readonly maxAttempts?: number;
    /** Sealed cache of inference answers not yet written (default: in memory; Redis for replicas). */
    readonly cache?: ResultCache;
  };
}

type Action = "read" | "write";

/** Who may do what: clerks register patients and orders; clinicians also read results; admins all. */
const permissions: Readonly<Record<Principal["role"], Readonly<Record<Action, readonly string[]>>>> = {
  clerk: { read: ["Patient", "ServiceRequest", "Binary"], write: ["Patient", "ServiceRequest", "Binary"] },
  clinician: {
    read: ["Patient", "ServiceRequest", "Binary", "DiagnosticReport", "Observation", "Provenance"],
    write: ["Patient", "ServiceRequest", "Binary"],
  },
  admin: {
    read: [
      "Patient",
      "ServiceRequest",
      "Binary",
      "DiagnosticReport",
      "Observation",
      "Provenance",
      "AuditEvent",
    ],
    write: ["Patient", "ServiceRequest", "Binary"],
  },
};

const imageTypes = ["image/png", "image/jpeg", "application/dicom"];

/** A run of system re-encryption: the newest platform-system version, what moved, what is left. */
export interface SystemReencryption {
  readonly generation: number;
  readonly resealed: number;
  readonly remaining: number;
}

/** AI results awaiting a clinician's review: how many, and when the oldest was issued (undefined: none). */
export interface WaitingResults {
  readonly count: number;
  readonly oldestIssuedMs: number | undefined;
}

/** Every result awaiting review, and those of urgent orders (stat, asap or urgent) among them. */
export interface ReviewBacklog extends WaitingResults {
  readonly urgent: WaitingResults;
}

/** The request priorities above routine. */
const urgentPriorities = requestPriorities.filter((priority) => priority !== "routine");

/** Seconds since `issuedMs`, for a gauge (0 when nothing waits). */
function waitedSeconds(issuedMs: number | undefined): number {
  return issuedMs === undefined ? 0 : Math.max(0, (Date.now() - issuedMs) / 1000);
}

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal | undefined;
  }
  interface FastifyInstance {
    auditTrail: AuditTrail;
    /** Queues every active ServiceRequest of these tenants again (after a restart). */
    recoverDiagnosisJobs: (tenantIds: readonly string[]) => Promise<number>;
    /**
     * Queues the active orders that have no job waiting or running (their queueing failed, e.g. while Redis
     * restarted), leaving running jobs alone; returns how many it queued. main.ts runs it periodically.
     */
    reconcileDiagnosisJobs: (tenantIds: readonly string[]) => Promise<number>;
    /**
     * Counts every AI result awaiting a clinician's review (preliminary DiagnosticReports) and finds the oldest
     * one's issue time, however many wait, for the gauges `diagnosis_reports_awaiting_review` and
     * `diagnosis_report_oldest_awaiting_review_seconds`; and the same of the results of urgent orders (stat,
     * asap or urgent), for `diagnosis_urgent_reports_awaiting_review` and
     * `diagnosis_urgent_report_oldest_awaiting_review_seconds`. main.ts runs it with the reconciler.
     */
    countReviewBacklog: (tenantIds: readonly string[]) => Promise<ReviewBacklog>;
    /**
     * Re-encrypts the platform's own records (accounts, the system audit trail) still sealed under an older
     * version of `platform-system` (fetched again first), batch by batch until none is left or another replica
     * holds the rest. main.ts runs it at start and at every keyring refresh interval.
     */
    reencryptSystemRecords: (batch?: number) => Promise<SystemReencryption>;
  }
}

function fhirJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.status(status).header("content-type", "application/fhir+json; charset=utf-8").send(body);
}

function versionHeaders(reply: FastifyReply, resource: FhirResource): FastifyReply {
  const meta = (resource.meta ?? {}) as { versionId?: string; lastUpdated?: string };
  if (meta.versionId !== undefined) {
    reply.header("etag", `W/"${meta.versionId}"`);
  }
  if (meta.lastUpdated !== undefined) {
    reply.header("last-modified", new Date(meta.lastUpdated).toUTCString());
  }
  return reply;
}

export async function buildApp(config: PlatformConfig): Promise<FastifyInstance> {
  loadFhirDefinitions();
  const maxBinaryBytes = config.maxBinaryBytes ?? 20 * 1024 * 1024;
  const repository = new FhirRepository(config.store, config.now);
  const audit = new AuditTrail(config.store, config.now);
  const systemKeyrings = keyringSource(config.systemKeyring);
  const systemTenant = async (): Promise<TenantContext> => ({
    tenantId: systemTenantId,
    keyring: await systemKeyrings.keyring(),
  });
  /**
   * Runs `work` with the tenant's keys; when it meets a record under a key version this replica has not
   * fetched yet (another replica rotated first), fetches the versions and runs it once more. For work done
   * outside a request (reconciler, sign-in), where no 503 and retry by a client can follow.
   */
  const withTenantKeys = async <T>(
    tenantId: string,
    work: (tenant: TenantContext) => Promise<T>,
  ): Promise<T> => {
    const refresh = config.refreshTenantKeyring;
    return withKeyringRetry(
      {
        keyring: () => config.tenantKeyring(tenantId),
        refresh: refresh === undefined ? undefined : () => refresh(tenantId),
      },
      (keyring) => work({ tenantId, keyring }),
    );
  };
  const interactionActions: Record<string, AuditAction> = {
    create: "C",
    update: "U",
    read: "R",
    vread: "R",
    "history-instance": "R",
    "search-type": "E",
    review: "U",
    everything: "E",
  };

  /**
   * Runs one FHIR interaction and records its AuditEvent, success or failure, in the caller's tenant (or the
   * system trail when the caller is not known). Ids and codes only. A write passes its records through
   * `alongside`, which stores the success event in the same transaction: a record is never stored without
   * the event that reports it.
   */
  const audited = async <T>(
    request: FastifyRequest,
    interaction: string,
    type: string,
    run: (
      setEntities: (entities: string[]) => void,
      alongside: <R>(tenant: TenantContext, write: (event: AuditEventWrite) => Promise<R>) => Promise<R>,
    ) => Promise<{ tenant: TenantContext; result: T }>,
  ): Promise<T> => {
    let entities: string[] = [];
    // An object, not a let: it is set inside the callback, after TypeScript's narrowing of a local.
    const along = { recorded: false };
    const success = (): AuditInput => ({
      type: { code: "110110", display: "Patient Record" },
      subtype: interaction,
      action: interactionActions[interaction] ?? "E",
      outcome: "0",
      agent: { id: request.principal?.subject ?? "anonymous", role: request.principal?.role ?? "none" },
      entities,
    });
    try {
      const { tenant, result } = await run(
        (found) => {
          entities = found;
        },
        async (tenant, write) => {
          const written = await audit.recordAlong(tenant, success(), write);
          along.recorded = true;
          return written;
        },
      );
      if (!along.recorded) {
        await audit.record(tenant, success());
      }
      return result;
    } catch (error) {
      const code = error instanceof PlatformError ? error.code : "ERR_INTERNAL";
      const principal = request.principal;
      const tenant =
        principal === undefined
          ? await systemTenant()
          : { tenantId: principal.tenantId, keyring: await config.tenantKeyring(principal.tenantId) };
      await audit.record(tenant, {
        type: { code: "110110", display: "Patient Record" },
        subtype: interaction,
        action: interactionActions[interaction] ?? "E",
        outcome: code === "ERR_INTERNAL" || code === "ERR_STORAGE" ? "8" : "4",
        outcomeCode: code,
        agent: { id: principal?.subject ?? "anonymous", role: principal?.role ?? "none" },
        entities: entities.length > 0 ? entities : [type.slice(0, 64)],
      });
      throw error;
    }
  };
  const verifier = config.sessionVerifier ?? config.sessions;
  const { app, registry } = createServiceApp({
    ...(config.maxEventLoopDelayMs === undefined
      ? {}
      : {
          loadShedding: {
            maxEventLoopDelayMs: config.maxEventLoopDelayMs,
            overloaded: () => new PlatformError("ERR_OVERLOADED"),
          },
        }),
    logger: config.logger,
    // A Binary of maxBinaryBytes in base64 inside JSON, with room for the rest of the resource.
    bodyLimit: Math.ceil(maxBinaryBytes * 1.37) + 64 * 1024,
    ...(config.https === undefined ? {} : { https: config.https }),
    ...(config.corsOrigins === undefined ? {} : { corsOrigins: config.corsOrigins }),
    ...(config.trustedProxies === undefined ? {} : { trustedProxies: config.trustedProxies }),
  });
  app.decorateRequest("principal", undefined);

  // An order is recorded first; its job is derived state. Queueing is tried a few times (a Redis restart takes
  // a second or two); if it still fails, the order stays recorded and active, and the reconciler queues it.
  const queueOrder = async (job: DiagnosisJob): Promise<void> => {
    const queue = config.workflow?.queue;
    for (const pauseMs of [0, 250, 1000, 2000]) {
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      try {
        await queue?.enqueue(job);
        return;
      } catch {
        // tried again below
      }
    }
    app.log.warn({ job: job.serviceRequestId }, "order recorded; the reconciler will queue its job");
  };

  // Load shedding: a request over the limit gets ERR_OVERLOADED (503, Retry-After) before any work is done.
  const maxInFlight = config.maxInFlight ?? 256;
  const unlimited = new Set(["/healthz", "/readyz", "/metrics", "/events"]);
  let inFlight = 0;
  app.addHook("onRequest", async (request, reply) => {
    if (unlimited.has(request.routeOptions.url ?? "")) {
      return;
    }
    if (inFlight >= maxInFlight) {
      reply.header("retry-after", "1");
      throw new PlatformError("ERR_OVERLOADED");
    }
    inFlight++;
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        inFlight--;
      }
    };
    reply.raw.once("finish", release);
    reply.raw.once("close", release);
  });

  for (const type of ["application/fhir+json", "application/json+fhir"]) {
    app.addContentTypeParser(type, { parseAs: "string" }, (_request, body, done) => {
      try {
        // No body at all (an operation invoked without parameters) is no resource, not bad JSON.
        done(null, body === "" ? undefined : JSON.parse(body as string));
      } catch {
        done(new PlatformError("ERR_BAD_REQUEST", "the body is not JSON"), undefined);
      }
    });
  }
  app.addContentTypeParser(
    imageTypes,
    { parseAs: "buffer", bodyLimit: maxBinaryBytes },
    (_request, body, done) => {
      done(null, body);
    },
  );

  app.setErrorHandler(async (error, request, reply) => {
    let failure: PlatformError;
    if (error instanceof PlatformError) {
      failure = error;
    } else if (isClientError(error)) {
      const status = (error as { statusCode: number }).statusCode;
      const code: PlatformErrorCode =
        status === 413
          ? "ERR_PAYLOAD_TOO_LARGE"
          : status === 415
            ? "ERR_UNSUPPORTED_MEDIA_TYPE"
            : "ERR_BAD_REQUEST";
      failure = new PlatformError(code);
    } else {
      request.log.error({ errorName: error instanceof Error ? error.name : "unknown" }, "unexpected failure");
      failure = new PlatformError("ERR_INTERNAL");
    }
    if (failure instanceof LoginRateLimited) {
      reply.header("retry-after", String(failure.retryAfterSeconds));
    }
    if (failure.code === "ERR_KEY_UNAVAILABLE") {
      // Another replica rotated the tenant's data key, or the platform's own, first: fetch the new version
      // for the retry. Which of the two it was is not known here; asking for both again is cheap.
      reply.header("retry-after", "1");
      const tenantId = request.principal?.tenantId;
      if (tenantId !== undefined && config.refreshTenantKeyring !== undefined) {
        config.refreshTenantKeyring(tenantId).catch(() => undefined);
      }
      systemKeyrings.refresh().catch(() => undefined);
    }
    if (request.url.startsWith("/fhir")) {
      return fhirJson(reply, failure.status, operationOutcome(failure));
    }
    return reply
      .status(failure.status)
      .header("content-type", "application/problem+json")
      .send({ title: failure.message, status: failure.status, code: failure.code });
  });
  app.setNotFoundHandler(async () => {
    throw new PlatformError("ERR_NOT_FOUND", "no such route");
  });

  // A staff account's change, stored with the AuditEvent that reports it in the account's tenant's trail. At
  // sign-in (a new password, a refusal: its admins' log-in monitoring) there is no principal yet for the error
  // handler to refresh the tenant's keys by, so withTenantKeys does.
  const alongInTenant =
    (tenantId: string, event: AuditInput): AuditedWrite =>
    async (write) =>
      withTenantKeys(tenantId, async (tenant) => audit.recordAlong(tenant, event, write));
  const loginAudit: LoginAudit = {
    passwordChange: (owner) =>
      alongInTenant(owner.tenantId, {
        type: { code: "110137", display: "User Security Attributes Changed" },
        subtype: "password-change",
        action: "U",
        outcome: "0",
        agent: { id: owner.subject, role: owner.role },
      }),
    refusal: (owner, code) =>
      alongInTenant(owner.tenantId, {
        type: { code: "110114", display: "User Authentication" },
        subtype: "login",
        action: "E",
        outcome: "4",
        outcomeCode: code,
        agent: { id: owner.subject, role: owner.role },
      }),
  };
  app.post<{ Body: { email?: unknown; password?: unknown; newPassword?: unknown } }>(
    "/auth/login",
    async (request) => {
      const { email, password, newPassword } = request.body;
      if (
        typeof email !== "string" ||
        typeof password !== "string" ||
        email.length > 320 ||
        password.length > 1024 ||
        (newPassword !== undefined && typeof newPassword !== "string")
      ) {
        throw new PlatformError("ERR_BAD_REQUEST", "send {email, password} (and newPassword to change it)");
      }
      try {
        const principal = await config.accounts.login(email, password, request.ip, newPassword, loginAudit);
        request.log.info({ audit: "login", outcome: "OK", account: principal.subject }, "signed in");
        const agent = { id: principal.subject, role: principal.role };
        await withTenantKeys(principal.tenantId, async (tenant) => {
          await audit.record(tenant, {
            type: { code: "110114", display: "User Authentication" },
            subtype: "login",
            action: "E",
            outcome: "0",
            agent,
          });
        });
        const session = await config.sessions.issue(principal);
        return { accessToken: session.accessToken, tokenType: "Bearer", expiresIn: session.expiresIn };
      } catch (error) {
        const code = error instanceof PlatformError ? error.code : "ERR_INTERNAL";
        request.log.info({ audit: "login", outcome: code }, "sign-in refused");
        // The email is not recorded: it may be a mistyped password or someone else's address.
        await audit.record(await systemTenant(), {
          type: { code: "110114", display: "User Authentication" },
          subtype: "login",
          action: "E",
          outcome: "4",
          outcomeCode: code,
          agent: { id: "anonymous" },
        });
        throw error;
      }
    },
  );
  app.get("/auth/jwks", async () => config.sessions.jwks());
  // Ready: the platform listens only after it attested, got its keys and migrated its store.
  app.get("/readyz", async () => ({ status: "ready", workflow: config.workflow !== undefined }));

  // The evidence for the portal to check with the attestation service itself (DESIGN.md §1 step 3).
  app.get("/attestation", async () => {
    if (config.attestation === undefined) {
      throw new PlatformError("ERR_NOT_READY");
    }
    const ohttp = config.attestation.keys?.ohttp;
    return {
      ...attestRequestBody(config.attestation.evidence, config.attestation.runtimeData),
      token: config.attestation.token(),
      ...(ohttp === undefined ? {} : { keyConfig: Buffer.from(ohttp.keyConfig).toString("base64url") }),
    };
  });
  if (config.attestation?.keys !== undefined) {
    registerOhttpGateway(app, {
      keys: config.attestation.keys.ohttp,
      previousKeys: config.attestation.keys.ohttpPrevious ?? [],
      ...(config.replayGuard === undefined ? {} : { replayGuard: config.replayGuard }),
      bodyLimit: Math.ceil(maxBinaryBytes * 1.37) + 128 * 1024,
      now: () => (config.now === undefined ? Date.now() : config.now().getTime()),
    });
  }

  /** The signed-in caller from the bearer token (local or OpenID Connect), or ERR_UNAUTHENTICATED. */
  const principalOf = async (request: FastifyRequest): Promise<Principal> => {
    const header = request.headers.authorization;
    if (header === undefined || !header.startsWith("Bearer ")) {
      throw new PlatformError("ERR_UNAUTHENTICATED");
    }
    const principal = await verifier.verify(header.slice(7));
    if (config.sessionVerifier === undefined) {
      // A local session ends when its account is disabled or changed, not only when its token expires.
      await config.accounts.checkSession(principal);
    }
    request.principal = principal;
    return principal;
  };

  const tenantOf = async (request: FastifyRequest, action: Action, type: string): Promise<TenantContext> => {
    const principal = await principalOf(request);
    if (!permissions[principal.role][action].includes(type)) {
      throw new PlatformError("ERR_FORBIDDEN");
    }
    return { tenantId: principal.tenantId, keyring: await config.tenantKeyring(principal.tenantId) };
  };

  app.get("/fhir/metadata", async (_request, reply) =>
    fhirJson(reply, 200, capabilityStatement(config.baseUrl, "0.1.0")),
  );

  const resourceBody = (request: FastifyRequest, type: string): FhirResource => {
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]?.trim() ?? "";
    if (type === "Binary" && imageTypes.includes(contentType) && Buffer.isBuffer(request.body)) {
      // FHIR's X-Security-Context names the patient the image belongs to (checked at create).
      const context = request.headers["x-security-context"];
      return {
        resourceType: "Binary",
        contentType,
        ...(typeof context === "string" ? { securityContext: { reference: context } } : {}),
        data: request.body.toString("base64"),
      };
    }
    const body = request.body as FhirResource | undefined;
    if (typeof body !== "object" || Array.isArray(body)) {
      throw new PlatformError("ERR_BAD_REQUEST", "send a FHIR resource as application/fhir+json");
    }
    if (body.resourceType !== type) {
      throw new PlatformError("ERR_BAD_REQUEST", `the body is not a ${type}`, { expression: "resourceType" });
    }
    if (type === "Binary" && typeof body.data === "string" && (body.data.length * 3) / 4 > maxBinaryBytes) {
      throw new PlatformError("ERR_PAYLOAD_TOO_LARGE");
    }
    return body;
  };

  const reference = (resource: FhirResource): string => `${resource.resourceType}/${resource.id ?? ""}`;

  // A patient's identifiers name one person (fhir/patient-rules.ts).
  const patientWrites = new SerialisedWrites();

  app.post<{ Params: { type: string } }>("/fhir/:type", async (request, reply) => {
    const { type } = request.params;
    const { status, resource } = await audited(request, "create", type, async (setEntities, alongside) => {
      const tenant = await tenantOf(request, "write", type);
      const body = resourceBody(request, type);
      // FHIR conditional create: If-None-Exist makes a create idempotent by identifier.
      const condition = request.headers["if-none-exist"];
      if (typeof condition === "string") {
        const existing = await repository.search(
          tenant,
          type,
          Object.fromEntries(new URLSearchParams(condition)),
        );
        if (existing.length > 1) {
          throw new PlatformError("ERR_DUPLICATE", "If-None-Exist matches more than one resource");
        }
        if (existing[0] !== undefined) {
          setEntities([reference(existing[0])]);
          return { tenant, result: { status: 200, resource: existing[0] } };
        }
      }
      if (type === "ServiceRequest" || type === "Patient") {
        // An invalid resource is said to be invalid before any rule about its content is checked.
        validateFhirResource(body);
      }
      if (type === "ServiceRequest") {
        await checkNewOrder(body, {
          patientExists: (id) => repository.exists(tenant, "Patient", id),
          image: (id) =>
            repository.read(tenant, "Binary", id).catch((error: unknown) => {
              if (
                error instanceof PlatformError &&
                (error.code === "ERR_NOT_FOUND" || error.code === "ERR_GONE")
              ) {
                return undefined;
              }
              throw error;
            }),
        });
      }
      if (type === "Binary") {
        // Every image names its patient, so it is never ordered for another one and its reads are audited
        // to them.
        await checkImageOwner(body, (id) => repository.exists(tenant, "Patient", id));
        // A DICOM image whose header names another birth date or sex is probably another patient's.
        await checkDicomPatient(body, async () =>
          repository.read(tenant, "Patient", referencedId(body.securityContext, "Patient") ?? ""),
        );
      }
      const create = (options: Omit<WriteOptions, "auditEvent"> = {}) =>
        alongside(tenant, async (auditEvent) => repository.create(tenant, body, { ...options, auditEvent }));
      const created =
        type === "Patient"
          ? await patientWrites.run(tenant.tenantId, async () =>
              writePatientChecked(repository, tenant, body, undefined, (guard) => create({ guard })),
            )
          : await create();
      setEntities([reference(created)]);
      if (type === "ServiceRequest" && created.status === "active" && created.id !== undefined) {
        await queueOrder({
          tenantId: tenant.tenantId,
          serviceRequestId: created.id,
          attempt: 0,
          ...(isUrgentOrder(created) ? { urgent: true } : {}),
        });
      }
      return { tenant, result: { status: 201, resource: created } };
    });
    if (status === 201) {
      reply.header("location", `${config.baseUrl}/fhir/${type}/${resource.id ?? ""}/_history/1`);
    }
    return fhirJson(versionHeaders(reply, resource), status, resource);
  });

  app.put<{ Params: { type: string; id: string } }>("/fhir/:type/:id", async (request, reply) => {
    const { type, id } = request.params;
    const updated = await audited(request, "update", type, async (setEntities, alongside) => {
      const tenant = await tenantOf(request, "write", type);
      const match = /^W\/"([1-9][0-9]{0,8})"$/.exec(request.headers["if-match"] ?? "");
      if (request.headers["if-match"] !== undefined && match === null) {
        throw new PlatformError("ERR_PRECONDITION");
      }
      setEntities([`${type}/${id.slice(0, 64)}`]);
      if (type === "Binary") {
        throw new PlatformError("ERR_IMMUTABLE");
      }
      const body = resourceBody(request, type);
      let version = match === null ? undefined : Number(match[1]);
      if (type === "ServiceRequest") {
        // Checked against the version read, and written from exactly that version: a worker completing the
        // order meanwhile makes this a conflict, never a cancelled order with a result.
        const current = await repository.read(tenant, type, id).catch((error: unknown) => {
          throw error instanceof PlatformError && error.code === "ERR_NOT_FOUND"
            ? new PlatformError("ERR_NOT_FOUND", "no such order: orders are placed with POST")
            : error;
        });
        const currentVersion = Number((current.meta as { versionId?: string } | undefined)?.versionId);
        if (version !== undefined && version !== currentVersion) {
          throw new PlatformError("ERR_PRECONDITION");
        }
        validateFhirResource(body);
        checkOrderChange(current, body);
        version = currentVersion;
      }
      const update = (options: Omit<WriteOptions, "auditEvent"> = {}) =>
        alongside(tenant, async (auditEvent) =>
          repository.update(tenant, body, id, version, { ...options, auditEvent }),
        );
      const result =
        type === "Patient"
          ? await patientWrites.run(tenant.tenantId, async () => {
              validateFhirResource(body);
              return writePatientChecked(repository, tenant, body, id, (guard) => update({ guard }));
            })
          : await update();
      return { tenant, result };
    });
    if (type === "ServiceRequest") {
      // Pages open on the patient read the order again (ids and status only).
      const subject = (updated.subject as { reference?: unknown } | undefined)?.reference;
      events.publish(request.principal?.tenantId ?? "", {
        type: "ServiceRequest",
        id,
        status: String(updated.status),
        basedOn: `ServiceRequest/${id}`,
        ...(typeof subject === "string" ? { subject } : {}),
      });
    }
    const created = (updated.meta as { versionId?: string } | undefined)?.versionId === "1";
    return fhirJson(versionHeaders(reply, updated), created ? 201 : 200, updated);
  });

  // Clinicians' first reviews of AI results, by model, AI finding and verdict: how often clinicians agree
  // (CloisterAIAgreementLow). No id or patient label; a changed review is not counted again.
  const firstReviews = new Counter({
    name: "diagnosis_reviews_total",
    help: "Clinicians' first reviews of AI results, by model, the AI's finding and the verdict",
    labelNames: ["model", "finding", "verdict"],
    registers: [registry],
  });

  // A clinician's review of an AI report (fhir/report-review.ts): the preliminary report becomes final, with
  // the clinician and their verdict, and a Provenance, in one transaction with the audit event. A reviewed
  // report is reviewed again only from the version the clinician read (If-Match); a withdrawn one takes its
  // Observations and its order with it.
  app.post<{ Params: { id: string } }>("/fhir/DiagnosticReport/:id/$review", async (request, reply) => {
    const { id } = request.params;
    let firstReview: { tenant: TenantContext; report: FhirResource; verdict: string } | undefined;
    const reviewed = await audited(request, "review", "DiagnosticReport", async (setEntities, alongside) => {
      const tenant = await tenantOf(request, "read", "DiagnosticReport");
      const principal = request.principal;
      if (principal?.role !== "clinician") {
        throw new PlatformError("ERR_FORBIDDEN", "only a clinician reviews an AI result");
      }
      setEntities([`DiagnosticReport/${id.slice(0, 64)}`]);
      const ifMatch = request.headers["if-match"];
      const match = /^W\/"([1-9][0-9]{0,8})"$/.exec(ifMatch ?? "");
      if (ifMatch !== undefined && match === null) {
        throw new PlatformError("ERR_PRECONDITION");
      }
      const review = parseReview(request.body);
      const current = await repository.read(tenant, "DiagnosticReport", id);
      if (reviewedStatuses.has(current.status) && match === null) {
        throw new PlatformError(
          "ERR_PRECONDITION_REQUIRED",
          "the report was reviewed already: send If-Match with the version you read to change its review",
        );
      }
      const version =
        match === null
          ? Number((current.meta as { versionId?: string } | undefined)?.versionId ?? "0")
          : Number(match[1]);
      // A withdrawal takes the report's Observations and its order with it.
      const related =
        review.outcome === "entered-in-error"
          ? await Promise.all(
              [
                ...((current.result ?? []) as { reference?: string }[]),
                ...((current.basedOn ?? []) as { reference?: string }[]),
              ].map(async ({ reference }) => {
                const [type, relatedId] = (reference ?? "").split("/");
                if ((type !== "Observation" && type !== "ServiceRequest") || relatedId === undefined) {
                  throw new PlatformError(
                    "ERR_INTERNAL",
                    "a report names a result or order it cannot withdraw",
                  );
                }
                return repository.read(tenant, type, relatedId);
              }),
            )
          : [];
      const next = reviewReport(current, related, review, principal, new Date());
      const [updated] = await alongside(tenant, async (auditEvent) =>
        repository.updateTogether(
          tenant,
          [
            { resource: next.report, id, ifMatch: version },
            ...next.withdrawnWith.map((resource) => ({
              resource,
              id: resource.id ?? "",
              ifMatch: Number((resource.meta as { versionId?: string } | undefined)?.versionId ?? "0"),
            })),
          ],
          [next.provenance],
          { auditEvent },
        ),
      );
      if (current.status === "preliminary") {
        firstReview = { tenant, report: current, verdict: review.outcome };
      }
      return { tenant, result: updated ?? next.report };
    });
    if (firstReview !== undefined) {
      const { tenant, report, verdict } = firstReview;
      const facts = await resultFacts(repository, tenant, report).catch(() => ({ finding: "?" }));
      const model = (
        (report.code as { coding?: { code?: string }[] } | undefined)?.coding?.[0]?.code ?? "?"
      ).slice(0, 64);
      firstReviews.inc({ model, finding: facts.finding.slice(0, 64), verdict });
    }
    const basedOn = (reviewed.basedOn as { reference?: string }[] | undefined)?.[0]?.reference;
    const subject = (reviewed.subject as { reference?: string } | undefined)?.reference;
    events.publish(request.principal?.tenantId ?? "", {
      type: "DiagnosticReport",
      id,
      status: String(reviewed.status),
      basedOn: basedOn ?? "",
      ...(subject === undefined ? {} : { subject }),
    });
    return fhirJson(versionHeaders(reply, reviewed), 200, reviewed);
  });

  // A patient's whole record (fhir/patient-everything.ts): clinicians and admins, who read results. GET with
  // `_type` in the query, or POST with FHIR Parameters (as FHIR clients invoke operations by default).
  const everything = async (
    request: FastifyRequest,
    reply: FastifyReply,
    id: string,
    query: Readonly<Record<string, unknown>>,
  ): Promise<FastifyReply> => {
    const resources = await audited(request, "everything", "Patient", async (setEntities) => {
      const tenant = await tenantOf(request, "read", "DiagnosticReport");
      setEntities([`Patient/${id.slice(0, 64)}`]);
      const found = await patientEverything(
        repository,
        tenant,
        id,
        everythingTypesOf(query),
        config.maxEverythingImageBytes ?? 100 * 1024 * 1024,
      );
      setEntities([...new Set([...auditEntities(found), `Patient/${id}`])]);
      return { tenant, result: found };
    });
    return fhirJson(reply, 200, {
      resourceType: "Bundle",
      type: "searchset",
      total: resources.length,
      entry: resources.map((resource) => ({
        fullUrl: `${config.baseUrl}/fhir/${resource.resourceType}/${resource.id ?? ""}`,
        resource,
        search: { mode: resource.resourceType === "Patient" ? "match" : "include" },
      })),
    });
  };
  app.get<{ Params: { id: string }; Querystring: Record<string, string | string[]> }>(
    "/fhir/Patient/:id/$everything",
    async (request, reply) => everything(request, reply, request.params.id, request.query),
  );
  app.post<{ Params: { id: string } }>("/fhir/Patient/:id/$everything", async (request, reply) =>
    everything(request, reply, request.params.id, everythingParameters(request.body)),
  );

  app.get<{ Params: { type: string; id: string } }>("/fhir/:type/:id", async (request, reply) => {
    const { type, id } = request.params;
    const resource = await audited(request, "read", type, async (setEntities) => {
      const tenant = await tenantOf(request, "read", type);
      setEntities([`${type}/${id.slice(0, 64)}`]);
      const resource = await repository.read(tenant, type, id);
      setEntities(auditEntities([resource]));
      return { tenant, result: resource };
    });
    const accept = request.headers.accept ?? "";
    if (type === "Binary" && !accept.includes("fhir+json") && typeof resource.data === "string") {
      return versionHeaders(reply, resource)
        .header(
          "content-type",
          typeof resource.contentType === "string" ? resource.contentType : "application/octet-stream",
        )
        .header("x-content-type-options", "nosniff")
        .header("content-disposition", "attachment")
        .send(Buffer.from(resource.data, "base64"));
    }
    return fhirJson(versionHeaders(reply, resource), 200, resource);
  });

  app.get<{ Params: { type: string; id: string } }>("/fhir/:type/:id/_history", async (request, reply) => {
    const { type, id } = request.params;
    const versions = await audited(request, "history-instance", type, async (setEntities) => {
      const tenant = await tenantOf(request, "read", type);
      setEntities([`${type}/${id.slice(0, 64)}`]);
      const versions = await repository.history(tenant, type, id);
      setEntities(auditEntities(versions));
      return { tenant, result: versions };
    });
    return fhirJson(reply, 200, historyBundle(config.baseUrl, type, versions));
  });

  app.get<{ Params: { type: string; id: string; version: string } }>(
    "/fhir/:type/:id/_history/:version",
    async (request, reply) => {
      const { type, id, version } = request.params;
      const resource = await audited(request, "vread", type, async (setEntities) => {
        const tenant = await tenantOf(request, "read", type);
        setEntities([`${type}/${id.slice(0, 64)}`]);
        const resource = await repository.vread(tenant, type, id, version);
        setEntities(auditEntities([resource]));
        return { tenant, result: resource };
      });
      return fhirJson(versionHeaders(reply, resource), 200, resource);
    },
  );

  const search = async (
    request: FastifyRequest,
    reply: FastifyReply,
    type: string,
    query: Readonly<Record<string, string | string[]>>,
  ): Promise<FastifyReply> => {
    const found = await audited(request, "search-type", type, async (setEntities) => {
      const tenant = await tenantOf(request, "read", type);
      const result = await repository.searchWithTotal(tenant, type, query);
      // The query itself may hold PHI (a name, an MRN): record what was returned, never what was asked.
      setEntities(auditEntities(result.resources));
      return { tenant, result };
    });
    return fhirJson(
      reply,
      200,
      searchBundle(config.baseUrl, type, found.resources, found.total, found.nextCursor),
    );
  };

  // FHIR's POST _search (form body) keeps names and MRNs out of URLs, proxies' logs and browser history.
  app.addContentTypeParser(
    "application/x-www-form-urlencoded",
    { parseAs: "string" },
    (_request, body, done) => {
      const query: Record<string, string[]> = {};
      for (const [name, value] of new URLSearchParams(body as string)) {
        (query[name] ??= []).push(value);
      }
      done(null, query);
    },
  );
  app.post<{ Params: { type: string }; Body: Record<string, string[]> }>(
    "/fhir/:type/_search",
    async (request, reply) => search(request, reply, request.params.type, request.body),
  );

  app.get<{ Params: { type: string }; Querystring: Record<string, string | string[]> }>(
    "/fhir/:type",
    async (request, reply) => search(request, reply, request.params.type, request.query),
  );
  app.decorate("auditTrail", audit);

  // Server-sent events per tenant: ids and statuses of new and changed DiagnosticReports, never content.
  // Events come through the bus: this replica's worker's and, with Redis, every other replica's.
  const listeners = new Map<string, Set<(event: string) => void>>();
  const reportEvents = config.reportEvents ?? createMemoryEventBus();
  const unsubscribe = reportEvents.subscribe((tenantId, event) => {
    const line = `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
    for (const listener of listeners.get(tenantId) ?? []) {
      listener(line);
    }
  });
  app.addHook("onClose", async () => {
    unsubscribe();
  });
  const events: WorkflowEvents = { publish: reportEvents.publish };
  const openStreams = new Set<ServerResponse>();
  const heartbeatMs = config.eventHeartbeatMs ?? 15_000;
  app.get("/events", async (request, reply) => {
    const principal = await principalOf(request);
    reply.hijack();
    reply.raw.writeHead(200, {
      // A hijacked reply sends only these: keep what the hooks set (CORS for the portal).
      ...(reply.getHeaders() as OutgoingHttpHeaders),
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    reply.raw.write(": connected\n\n");
    const send = (line: string): void => {
      reply.raw.write(line);
    };
    const set = listeners.get(principal.tenantId) ?? new Set();
    set.add(send);
    listeners.set(principal.tenantId, set);
    const heartbeat = setInterval(() => {
      reply.raw.write(": heartbeat\n\n");
      // A stream of a session that has ended since (the account disabled or changed) ends too.
      if (config.sessionVerifier === undefined) {
        config.accounts.checkSession(principal).catch(() => reply.raw.end());
      }
    }, heartbeatMs);
    heartbeat.unref();
    openStreams.add(reply.raw);
    request.raw.on("close", () => {
      clearInterval(heartbeat);
      set.delete(send);
      openStreams.delete(reply.raw);
    });
  });
  // Event streams never end on their own: end them so a stop does not wait for the browsers.
  app.addHook("preClose", async () => {
    for (const stream of openStreams) {
      stream.end();
    }
  });

  // Admins: a staff account of their tenant by id (an AuditEvent's agent), for access reports: email and role.
  app.get<{ Params: { id: string } }>("/admin/accounts/:id", async (request) => {
    const principal = await principalOf(request);
    if (principal.role !== "admin") {
      throw new PlatformError("ERR_FORBIDDEN");
    }
    const account = await config.accounts.describe(principal.tenantId, request.params.id);
    // Looking staff up is audited too (found by agent, not in any patient's report).
    await audit.record(
      { tenantId: principal.tenantId, keyring: await config.tenantKeyring(principal.tenantId) },
      staffQueryEvent(principal, "account-read", [`Account/${request.params.id.slice(0, 64)}`], {
        action: "R",
        ...(account === undefined ? { outcomeCode: "ERR_NOT_FOUND" } : {}),
      }),
    );
    if (account === undefined) {
      throw new PlatformError("ERR_NOT_FOUND", "no such account in your tenant");
    }
    return account;
  });

  // How each AI model does in this hospital, from its clinicians' reviews (fhir/ai-performance.ts): counts only.
  app.get<{ Querystring: { days?: string } }>("/admin/ai-performance", async (request) => {
    const principal = await principalOf(request);
    if (principal.role !== "admin" && principal.role !== "clinician") {
      throw new PlatformError("ERR_FORBIDDEN");
    }
    const given = request.query.days ?? "90";
    const days = /^[1-9][0-9]{0,2}$/.test(given) ? Number(given) : 0;
    if (days < 1 || days > 730) {
      throw new PlatformError("ERR_BAD_REQUEST", "days is an integer from 1 to 730");
    }
    const tenant = { tenantId: principal.tenantId, keyring: await config.tenantKeyring(principal.tenantId) };
    const until = config.now?.() ?? new Date();
    const performance = await aiPerformance(
      repository,
      tenant,
      new Date(until.getTime() - days * 86_400_000),
      until,
    );
    await audit.record(tenant, staffQueryEvent(principal, "ai-performance", ["DiagnosticReport"]));
    return performance;
  });

  registerAccountRoutes(app, {
    accounts: config.accounts,
    principalOf,
    record: async (tenantId, event) => {
      await audit.record({ tenantId, keyring: await config.tenantKeyring(tenantId) }, event);
    },
    audited: alongInTenant,
    external: config.sessionVerifier !== undefined,
  });

  // The audit chain's check, run inside the TEE (only it holds the tenant's keys), for the tenant's admins:
  // `cloister audit verify` calls it with the head it recorded last time and records the new one.
  app.post<{ Body: { checkpoint?: { sequence?: unknown; hash?: unknown } } | undefined }>(
    "/audit/verify",
    async (request) => {
      const principal = await principalOf(request);
      if (principal.role !== "admin") {
        throw new PlatformError("ERR_FORBIDDEN");
      }
      const given = request.body?.checkpoint;
      if (
        given !== undefined &&
        (typeof given.sequence !== "number" ||
          !Number.isInteger(given.sequence) ||
          given.sequence < 0 ||
          typeof given.hash !== "string" ||
          !/^[0-9a-f]{64}$/.test(given.hash))
      ) {
        throw new PlatformError("ERR_BAD_REQUEST", "checkpoint is {sequence: integer, hash: 64 hex digits}");
      }
      const tenant = {
        tenantId: principal.tenantId,
        keyring: await config.tenantKeyring(principal.tenantId),
      };
      const checkpoint =
        given === undefined ? undefined : { sequence: given.sequence as number, hash: given.hash as string };
      try {
        const head = await audit.verifyFromCheckpoint(tenant, checkpoint);
        return { ok: true, tenant: principal.tenantId, length: head.length, headHash: head.headHash };
      } catch (error) {
        if (error instanceof PlatformError && error.code === "ERR_STORAGE") {
          return {
            ok: false,
            tenant: principal.tenantId,
            code: "ERR_AUDIT_CHAIN_BROKEN",
            reason: error.message,
          };
        }
        throw error;
      }
    },
  );

  // Re-encryption after the tenant's data key rotated at the key broker, for the tenant's admins, one batch per
  // call (`cloister keys rotate` calls it until nothing remains): the platform serves throughout.
  app.post<{ Body: { limit?: unknown } | undefined }>("/admin/reencrypt", async (request) => {
    const principal = await principalOf(request);
    if (principal.role !== "admin") {
      throw new PlatformError("ERR_FORBIDDEN");
    }
    const limit = request.body?.limit ?? 200;
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new PlatformError("ERR_BAD_REQUEST", "limit is an integer from 1 to 1000");
    }
    const keyring = await (config.refreshTenantKeyring ?? config.tenantKeyring)(principal.tenantId);
    const tenant = { tenantId: principal.tenantId, keyring };
    const progress = await repository.reencrypt(tenant, limit);
    await audit.record(tenant, {
      type: { code: "110113", display: "Security Alert" },
      subtype: "reencrypt",
      action: "U",
      outcome: "0",
      agent: { id: principal.subject, role: principal.role },
    });
    request.log.info(
      { audit: "records.reencrypted", generation: progress.generation, resealed: progress.resealed },
      "records re-encrypted",
    );
    return { tenant: principal.tenantId, ...progress };
  });

  // The models staff can order: the attested inference server's list (names, titles, labels, versions).
  app.get("/models", async (request) => {
    await principalOf(request);
    if (config.workflow === undefined) {
      throw new PlatformError("ERR_NOT_READY", "no inference server is configured");
    }
    let response;
    try {
      response = await (await config.workflow.inference()).request({ method: "GET", path: "/v2/models" });
    } catch {
      throw new PlatformError("ERR_NOT_READY", "the inference server could not be reached or attested");
    }
    if (response.status !== 200) {
      throw new PlatformError("ERR_NOT_READY", `the inference server answered ${response.status}`);
    }
    return JSON.parse(Buffer.from(response.body).toString("utf8")) as unknown;
  });

  const workflow = config.workflow;
  const worker =
    workflow === undefined
      ? undefined
      : new DiagnosisWorker({
          queue: workflow.queue,
          repository,
          audit,
          tenantKeyring: config.tenantKeyring,
          ...(config.refreshTenantKeyring === undefined
            ? {}
            : { refreshTenantKeyring: config.refreshTenantKeyring }),
          inference: workflow.inference,
          events,
          cache: workflow.cache ?? createMemoryResultCache(),
          ...(workflow.maxAttempts === undefined ? {} : { maxAttempts: workflow.maxAttempts }),
          ...(config.now === undefined ? {} : { now: config.now }),
          log: (fields, message) => {
            app.log.info(fields, message);
          },
        });
  worker?.start(workflow?.workers ?? 2);
  if (workflow !== undefined) {
    const queueStats = (): Promise<QueueStats> => workflow.queue.stats();
    new Gauge({
      name: "diagnosis_jobs",
      help: "Diagnosis jobs by state (waiting, running)",
      labelNames: ["state"],
      registers: [registry],
      async collect() {
        const stats = await queueStats();
        this.set({ state: "waiting" }, stats.waiting);
        this.set({ state: "running" }, stats.running);
      },
    });
    new Gauge({
      name: "diagnosis_job_oldest_overdue_seconds",
      help: "How long the longest-overdue waiting diagnosis job has been due (0 when none)",
      registers: [registry],
      async collect() {
        const { oldestDueAt } = await queueStats();
        this.set(oldestDueAt === undefined ? 0 : Math.max(0, (Date.now() - oldestDueAt) / 1000));
      },
    });
  }
  app.addHook("onClose", async () => {
    await worker?.stop();
  });
  /** Active orders of the tenants, for requeueing at start and for the reconciler. */
  const activeOrders = async (tenantIds: readonly string[]): Promise<DiagnosisJob[]> => {
    const jobs: DiagnosisJob[] = [];
    for (const tenantId of tenantIds) {
      const active = await withTenantKeys(tenantId, (tenant) =>
        // Oldest first: after an outage with more than a round's worth, the longest waiting go first.
        repository.search(tenant, "ServiceRequest", {
          status: "active",
          _sort: "_lastUpdated",
          _count: "500",
        }),
      );
      for (const request of active) {
        if (request.id !== undefined) {
          jobs.push({
            tenantId,
            serviceRequestId: request.id,
            attempt: 0,
            ...(isUrgentOrder(request) ? { urgent: true } : {}),
          });
        }
      }
    }
    return jobs;
  };
  app.decorate("reconcileDiagnosisJobs", async (tenantIds: readonly string[]) => {
    if (workflow === undefined) {
      return 0;
    }
    let queued = 0;
    for (const job of await activeOrders(tenantIds)) {
      queued += (await workflow.queue.ensureQueued(job)) ? 1 : 0;
    }
    return queued;
  });
  // Counts only: no id, tenant or patient in a label.
  let reviewBacklog: ReviewBacklog = {
    count: 0,
    oldestIssuedMs: undefined,
    urgent: { count: 0, oldestIssuedMs: undefined },
  };
  /** How many of the tenants' results match `query` (preliminary ones), and the oldest one's issue time. */
  const backlogOf = async (
    tenantIds: readonly string[],
    query: Readonly<Record<string, string>>,
  ): Promise<WaitingResults> => {
    let count = 0;
    let oldestIssuedMs: number | undefined;
    for (const tenantId of tenantIds) {
      // Every one counted, and the oldest found however many wait (a preliminary report is not updated
      // until its review, so the least recently updated is the one waiting longest).
      const awaiting = await withTenantKeys(tenantId, (tenant) =>
        repository.searchWithTotal(tenant, "DiagnosticReport", {
          ...query,
          status: "preliminary",
          _sort: "_lastUpdated",
          _count: "1",
        }),
      );
      count += awaiting.total;
      for (const report of awaiting.resources) {
        const issued = typeof report.issued === "string" ? Date.parse(report.issued) : Number.NaN;
        if (Number.isFinite(issued)) {
          oldestIssuedMs = Math.min(oldestIssuedMs ?? issued, issued);
        }
      }
    }
    return { count, oldestIssuedMs };
  };
  app.decorate("countReviewBacklog", async (tenantIds: readonly string[]) => {
    reviewBacklog = {
      ...(await backlogOf(tenantIds, {})),
      urgent: await backlogOf(tenantIds, { "order-priority": urgentPriorities.join(",") }),
    };
    return reviewBacklog;
  });
  new Gauge({
    name: "diagnosis_reports_awaiting_review",
    help: "AI results (preliminary DiagnosticReports) awaiting a clinician's review, over the platform's tenants (counted every reconciler round)",
    registers: [registry],
    collect() {
      this.set(reviewBacklog.count);
    },
  });
  new Gauge({
    name: "diagnosis_report_oldest_awaiting_review_seconds",
    help: "How long the oldest AI result awaiting a clinician's review has waited (0 when none)",
    registers: [registry],
    collect() {
      this.set(waitedSeconds(reviewBacklog.oldestIssuedMs));
    },
  });
  new Gauge({
    name: "diagnosis_urgent_reports_awaiting_review",
    help: "AI results of urgent orders (priority stat, asap or urgent) awaiting a clinician's review, over the platform's tenants",
    registers: [registry],
    collect() {
      this.set(reviewBacklog.urgent.count);
    },
  });
  new Gauge({
    name: "diagnosis_urgent_report_oldest_awaiting_review_seconds",
    help: "How long the oldest AI result of an urgent order (stat, asap or urgent) awaiting a clinician's review has waited (0 when none)",
    registers: [registry],
    collect() {
      this.set(waitedSeconds(reviewBacklog.urgent.oldestIssuedMs));
    },
  });
  new Gauge({
    name: "system_records_stale_versions",
    help: "Versions of the platform's own records (accounts, system audit trail) sealed under an older platform-system key version than the newest this replica holds",
    registers: [registry],
    async collect() {
      const { generation } = await systemKeyrings.keyring();
      this.set(await config.store.countStaleVersions(systemTenantId, generation));
    },
  });
  // One run at a time per replica: the background rounds and admins' calls join a run under way.
  let systemRun: Promise<SystemReencryption> | undefined;
  const reencryptSystemRecords = (agent: { id: string; role: string }, batch = 200) => {
    systemRun ??= (async () => {
      // Fetch the versions first: this is how a replica learns of a rotation without restarting.
      const { generation } = await systemKeyrings.refresh();
      let resealed = 0;
      let progress = await config.accounts.reencryptSystemRecords(batch);
      resealed += progress.resealed;
      // A batch that moved nothing while some remain: another replica is moving them; leave them to it.
      while (progress.remaining > 0 && progress.resealed > 0) {
        progress = await config.accounts.reencryptSystemRecords(batch);
        resealed += progress.resealed;
      }
      if (resealed > 0) {
        await audit.record(await systemTenant(), {
          type: { code: "110113", display: "Security Alert" },
          subtype: "reencrypt",
          action: "U",
          outcome: "0",
          agent,
        });
      }
      return { generation, resealed, remaining: progress.remaining };
    })().finally(() => {
      systemRun = undefined;
    });
    return systemRun;
  };
  app.decorate("reencryptSystemRecords", (batch?: number) =>
    reencryptSystemRecords({ id: "cloister-platform", role: "system" }, batch),
  );
  // The same for the platform's operators (`cloister keys rotate --system`), so a rotation need not wait for
  // the next round. It works on every tenant's accounts and answers with platform-wide counts, so a hospital's
  // admin may not ask for it: only an admin of the operator tenant.
  app.post("/admin/system/reencrypt", async (request) => {
    const principal = await principalOf(request);
    if (
      principal.role !== "admin" ||
      config.operatorTenant === undefined ||
      principal.tenantId !== config.operatorTenant
    ) {
      throw new PlatformError("ERR_FORBIDDEN", "only the platform operator's admins may do this");
    }
    const progress = await reencryptSystemRecords({ id: principal.subject, role: principal.role });
    request.log.info(
      { audit: "system.reencrypted", generation: progress.generation, resealed: progress.resealed },
      "system records re-encrypted",
    );
    return progress;
  });
  app.decorate("recoverDiagnosisJobs", async (tenantIds: readonly string[]) => {
    const jobs = workflow === undefined ? [] : await activeOrders(tenantIds);
    for (const job of jobs) {
      await workflow?.queue.enqueue(job);
    }
    return jobs.length;
  });
  return app;
}

export { PlatformError, platformErrors, type PlatformErrorCode } from "./errors.js";
export { AccountService, defaultLoginPolicy, type LoginPolicy } from "./auth/accounts.js";
export {
  createLocalSessions,
  createOidcSessions,
  roles,
  type Principal,
  type Role,
} from "./auth/sessions.js";
export { deriveTenantKeyring, type TenantKeyring } from "./storage/record-crypto.js";
export { openSqliteStore, backupSqliteDatabase } from "./storage/sqlite-store.js";
export { openPostgresStore } from "./storage/postgres-store.js";
export type { RecordStore } from "./storage/record-store.js";
export { AuditTrail, auditEventHash, type AuditInput } from "./audit/audit-trail.js";
export { createMemoryJobQueue, type DiagnosisJob, type JobQueue } from "./workflow/job-queue.js";
export { modelCodeSystem, findingCodeSystem, retryDelayMs } from "./workflow/diagnosis-worker.js";
export { createRedisJobQueue, type RedisJobQueueOptions } from "./workflow/redis-job-queue.js";
export {
  createMemoryResultCache,
  createRedisResultCache,
  type ResultCache,
} from "./workflow/result-cache.js";
