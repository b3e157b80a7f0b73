// The inference server's HTTP surface, outside the encapsulation: its evidence, its OHTTP key
// configuration, and the gateway. The host sees sizes, timings and outcome codes, never content.
import { attestRequestBody, type Evidence } from "@cloister/enclave";
import {
  decapsulationProblem,
  decodeRequest,
  encodeResponse,
  OhttpGateway,
  ohttpKeysMediaType,
  ohttpRequestMediaType,
  ohttpResponseMediaType,
  type OhttpKeyPair,
} from "@cloister/ohttp";
import { nodeHpke } from "@cloister/ohttp/node";
import { createServiceApp, isClientError } from "@cloister/service-kit";
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from "fastify";
import { Counter, Histogram } from "prom-client";
import { InferenceError, type InferenceErrorCode } from "./errors.js";
import type { LoadedModel } from "./model-repository.js";
import { errorResponse, handleOpenInference, type CallerVerifier } from "./open-inference.js";

/** What attestAtStart gives the server: its token, evidence and the keys bound into it. */
export interface ServerAttestation {
  readonly token: () => string;
  readonly evidence: Evidence;
  readonly runtimeData: Uint8Array;
  readonly keys: {
    readonly ohttp: OhttpKeyPair;
    /** Older versions of the shared OHTTP key, still opened during a roll (`SharedOhttpKeys`). */
    readonly ohttpPrevious?: readonly OhttpKeyPair[];
  };
}

export interface InferenceServerConfig {
  readonly attestation: ServerAttestation;
  readonly models: readonly LoadedModel[];
  readonly callers: CallerVerifier;
  readonly logger?: FastifyServerOptions["logger"];
  /**
   * Shed load by event-loop delay: over this many ms in two 0.5 s windows running, requests get 503
   * ERR_OVERLOADED with Retry-After. main.ts sets it from CLOISTER_MAX_EVENT_LOOP_DELAY_MS (default 500);
   * in-process tests leave it off, since their own work shares the loop.
   */
  readonly maxEventLoopDelayMs?: number;
  readonly https?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** Largest encapsulated request (default 32 MiB: a 20 MB image in base64, with room). */
  readonly bodyLimit?: number;
  /** Requests handled at once before the gateway answers 503 with Retry-After (default 16). */
  readonly maxInFlight?: number;
  readonly replayWindowMs?: number;
  readonly clockSkewMs?: number;
  readonly now?: () => number;
}

function clientErrorCode(status: number): InferenceErrorCode {
  return status === 413
    ? "ERR_PAYLOAD_TOO_LARGE"
    : status === 415
      ? "ERR_UNSUPPORTED_MEDIA_TYPE"
      : "ERR_BAD_REQUEST";
}

/**
 * @example
 * ```ts
 * const app = await buildApp({ attestation, models: await loadModelRepository(dir), callers });
 * await app.listen({ port: 7445, host: "127.0.0.1" });
 * ```
 */
export async function buildApp(config: InferenceServerConfig): Promise<FastifyInstance> {
  const now = config.now ?? Date.now;
  const gateway = new OhttpGateway({
    keys: [config.attestation.keys.ohttp],
    previousKeys: config.attestation.keys.ohttpPrevious ?? [],
    replayWindowMs: config.replayWindowMs ?? 600_000,
    now,
    hpke: nodeHpke,
  });
  const { app, registry } = createServiceApp({
    logger: config.logger,
    bodyLimit: config.bodyLimit ?? 32 * 1024 * 1024,
    ...(config.maxEventLoopDelayMs === undefined
      ? {}
      : {
          loadShedding: {
            maxEventLoopDelayMs: config.maxEventLoopDelayMs,
            overloaded: () => new InferenceError("ERR_OVERLOADED"),
          },
        }),
    ...(config.https === undefined ? {} : { https: config.https }),
  });
  const outcomes = new Counter({
    name: "inference_requests_total",
    help: "Encapsulated requests by outcome code",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const stages = new Histogram({
    name: "inference_request_seconds",
    help: "Time to open, handle and seal an encapsulated request",
    labelNames: ["stage"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  // Bound once: a label lookup per observation is a hash per request.
  const openSeconds = stages.labels("open");
  const handleSeconds = stages.labels("handle");
  const sealSeconds = stages.labels("seal");
  const maxInFlight = config.maxInFlight ?? 16;
  let inFlight = 0;

  app.addContentTypeParser(ohttpRequestMediaType, { parseAs: "buffer" }, (_request, body, done) => {
    done(null, body);
  });
  app.setErrorHandler(async (error, request, reply) => {
    const failure =
      error instanceof InferenceError
        ? error
        : isClientError(error)
          ? new InferenceError(clientErrorCode((error as { statusCode: number }).statusCode))
          : new InferenceError("ERR_INTERNAL");
    if (failure.code === "ERR_INTERNAL") {
      request.log.error({ errorName: error instanceof Error ? error.name : "unknown" }, "unexpected failure");
    }
    return reply
      .status(failure.status)
      .header("content-type", "application/problem+json")
      .send({ title: failure.message, status: failure.status, code: failure.code });
  });
  app.setNotFoundHandler(async () => {
    throw new InferenceError("ERR_NOT_FOUND");
  });

  app.get("/attestation", async () => ({
    ...attestRequestBody(config.attestation.evidence, config.attestation.runtimeData),
    token: config.attestation.token(),
    keyConfig: Buffer.from(config.attestation.keys.ohttp.keyConfig).toString("base64url"),
  }));

  app.get("/ohttp-keys", async (_request, reply) =>
    reply.header("content-type", ohttpKeysMediaType).send(Buffer.from(gateway.keyConfigList())),
  );

  app.get("/readyz", async () => ({ status: "ready", models: config.models.length }));

  app.post("/ohttp", async (request, reply) => {
    if (request.headers["content-type"] !== ohttpRequestMediaType || !Buffer.isBuffer(request.body)) {
      return reply
        .status(415)
        .header("content-type", "application/problem+json")
        .send({ title: `send ${ohttpRequestMediaType}`, status: 415, code: "ERR_UNSUPPORTED_MEDIA_TYPE" });
    }
    if (inFlight >= maxInFlight) {
      outcomes.inc({ outcome: "ERR_OVERLOADED" });
      return reply
        .status(503)
        .header("retry-after", "1")
        .header("content-type", "application/problem+json")
        .send({ title: "the server is at capacity", status: 503, code: "ERR_OVERLOADED" });
    }
    inFlight++;
    let answer: { status: number; type: string; body: unknown };
    try {
      answer = await serveEncapsulated(request.body, request.log);
    } finally {
      inFlight--;
    }
    return reply
      .status(answer.status)
      .header("content-type", answer.type)
      .header("cache-control", "no-store")
      .send(answer.body);
  });

  const serveEncapsulated = async (
    body: Buffer,
    log: FastifyBaseLogger,
  ): Promise<{ status: number; type: string; body: unknown }> => {
    const started = performance.now();
    let opened;
    try {
      // A view, not a copy: encapsulated images are large.
      opened = await gateway.decapsulate(new Uint8Array(body.buffer, body.byteOffset, body.length));
    } catch (error) {
      const refusal = decapsulationProblem(error);
      outcomes.inc({ outcome: refusal.code });
      log.info({ requestBytes: body.length, outcome: refusal.code }, "encapsulated request refused");
      return { status: 400, type: "application/problem+json", body: refusal.body };
    }
    const openedAt = performance.now();
    let handled;
    try {
      handled = await handleOpenInference(decodeRequest(opened.request), {
        models: config.models,
        callers: config.callers,
        acceptsDate: (date) => gateway.acceptsDate(date, now(), config.clockSkewMs),
        now,
        serverVersion: "0.1.0",
      });
    } catch {
      handled = errorResponse(new InferenceError("ERR_BAD_REQUEST", "the inner message is not Binary HTTP"));
    }
    const handledAt = performance.now();
    const sealed = await opened.sealResponse(encodeResponse(handled.response));
    const sealedAt = performance.now();
    openSeconds.observe((openedAt - started) / 1000);
    handleSeconds.observe((handledAt - openedAt) / 1000);
    sealSeconds.observe((sealedAt - handledAt) / 1000);
    outcomes.inc({ outcome: handled.outcome });
    log.info(
      {
        requestBytes: body.length,
        responseBytes: sealed.length,
        ms: Number((sealedAt - started).toFixed(2)),
        outcome: handled.outcome,
      },
      "encapsulated request handled",
    );
    return { status: 200, type: ohttpResponseMediaType, body: Buffer.from(sealed) };
  };
  return app;
}

export { InferenceError, inferenceErrors, type InferenceErrorCode } from "./errors.js";
export { parseModelConfig, type ModelConfig } from "./model-config.js";
export { decryptModel, encryptModel } from "./model-encryption.js";
export {
  loadModel,
  loadModelRepository,
  modelMeasurements,
  scanModelRepository,
  type LoadedModel,
  type ModelEntry,
  type ModelMeasurement,
} from "./model-repository.js";
export { inputSize, runModel } from "./inference.js";
export { handleOpenInference, type CallerVerifier, type OpenInferenceContext } from "./open-inference.js";
