// The Open Inference Protocol v2 (KServe) REST surface, served inside the OHTTP encapsulation: every
// request is checked for freshness and for its caller's attestation before anything else is read.
import { decodeImage, ImagingError, preprocess } from "@cloister/imaging";
import { fieldValue, type BinaryRequest, type ResponseInit } from "@cloister/ohttp";
import { InferenceError, type InferenceErrorCode } from "./errors.js";
import { inputSize, runModel } from "./inference.js";
import type { LoadedModel } from "./model-repository.js";

export interface CallerVerifier {
  /** Resolves with the caller's identity, or rejects: the caller may not use this server. */
  readonly verify: (token: string) => Promise<{ readonly measurement: string }>;
}

export interface OpenInferenceContext {
  readonly models: readonly LoadedModel[];
  readonly callers: CallerVerifier;
  /** Whether the inner request's Date is fresh (the gateway's `acceptsDate`, so replays are refused). */
  readonly acceptsDate: (date: string | undefined) => boolean;
  readonly now: () => number;
  readonly serverVersion: string;
}

export interface OpenInferenceOutcome {
  readonly response: ResponseInit;
  /** A stable code for logs and metrics: "OK" or an error code. */
  readonly outcome: "OK" | InferenceErrorCode;
}

const maxBatch = 64;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const jsonHeaders = { "content-type": "application/json" };

function json(status: number, body: unknown, extraHeaders: Record<string, string> = {}): ResponseInit {
  return { status, headers: { ...jsonHeaders, ...extraHeaders }, body: JSON.stringify(body) };
}

export function errorResponse(error: InferenceError): OpenInferenceOutcome {
  return { response: json(error.status, { error: error.message, code: error.code }), outcome: error.code };
}

function modelMetadata(model: LoadedModel, versions: readonly string[]): Record<string, unknown> {
  const { config } = model;
  return {
    name: config.name,
    versions,
    platform: "onnxruntime_onnx",
    inputs: [{ name: config.input.name, datatype: config.input.datatype, shape: config.input.shape }],
    outputs: [{ name: config.output.name, datatype: config.output.datatype, shape: config.output.shape }],
    // Extension fields: what a clinician and a relying party need to know about the model.
    parameters: {
      title: config.title,
      labels: config.labels,
      intended_use: config.intendedUse,
      sha256: model.sha256,
      image_input: ["image/png", "image/jpeg", "application/dicom"],
      ...(config.modality === undefined ? {} : { modality: config.modality }),
      ...(config.bodySite === undefined ? {} : { body_site: config.bodySite }),
      // {minAgeYears?, maxAgeYears?, sex?}: the platform analyses no image of a patient outside them.
      ...(config.intendedPatients === undefined ? {} : { intended_patients: config.intendedPatients }),
    },
  };
}

function checkFreshness(request: BinaryRequest, context: OpenInferenceContext): void {
  if (!context.acceptsDate(fieldValue(request.headers, "date"))) {
    throw new InferenceError("ERR_REQUEST_STALE");
  }
}

async function authorizeCaller(request: BinaryRequest, context: OpenInferenceContext): Promise<void> {
  const header = fieldValue(request.headers, "authorization");
  const match =
    header === undefined
      ? null
      : /^Attestation ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(header);
  if (match?.[1] === undefined) {
    throw new InferenceError("ERR_CALLER_UNAUTHENTICATED");
  }
  try {
    await context.callers.verify(match[1]);
  } catch (cause) {
    const code =
      typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : "unknown";
    throw new InferenceError("ERR_CALLER_FORBIDDEN", `the caller's attestation is not accepted (${code})`, {
      cause,
    });
  }
}

interface InferRequestBody {
  readonly id?: unknown;
  readonly inputs?: unknown;
  readonly image?: { readonly contentType?: unknown; readonly data?: unknown } | null;
}

function flatten(data: unknown, out: number[]): void {
  if (Array.isArray(data)) {
    for (const item of data) {
      flatten(item, out);
    }
  } else if (typeof data === "number" && Number.isFinite(data)) {
    out.push(data);
  } else {
    throw new InferenceError("ERR_BAD_REQUEST", "tensor data must be finite numbers");
  }
}

interface PreparedInput {
  readonly data: Float32Array;
  readonly batch: number;
  readonly fromImage: boolean;
}

function prepareInput(
  model: LoadedModel,
  body: InferRequestBody,
  timings: Map<string, number>,
): PreparedInput {
  if (body.image !== undefined) {
    const image = body.image;
    if (typeof image?.contentType !== "string" || typeof image.data !== "string") {
      throw new InferenceError("ERR_BAD_REQUEST", 'image must be {"contentType", "data": base64}');
    }
    let started = performance.now();
    let decoded;
    try {
      decoded = decodeImage(image.contentType, Buffer.from(image.data, "base64"));
    } catch (cause) {
      if (cause instanceof ImagingError && cause.code !== "ERR_IMAGE_CONFIG") {
        throw new InferenceError(cause.code, cause.message, { cause });
      }
      throw cause;
    }
    timings.set("decode", performance.now() - started);
    started = performance.now();
    const data = preprocess(decoded, model.config.preprocessing);
    timings.set("preprocess", performance.now() - started);
    return { data, batch: 1, fromImage: true };
  }
  const inputs = body.inputs;
  if (!Array.isArray(inputs) || inputs.length !== 1) {
    throw new InferenceError("ERR_BAD_REQUEST", "send one input tensor in inputs, or an image");
  }
  const input = inputs[0] as { name?: unknown; shape?: unknown; datatype?: unknown; data?: unknown } | null;
  const shape = input?.shape;
  if (input?.name !== model.config.input.name || input.datatype !== "FP32" || !Array.isArray(shape)) {
    throw new InferenceError(
      "ERR_BAD_REQUEST",
      `the input must be named ${model.config.input.name}, FP32, with a shape`,
    );
  }
  const expected = model.config.input.shape;
  const batch = shape[0] as unknown;
  if (
    shape.length !== expected.length ||
    typeof batch !== "number" ||
    !Number.isInteger(batch) ||
    batch < 1 ||
    batch > maxBatch ||
    !shape.every((d, i) => i === 0 || d === expected[i])
  ) {
    throw new InferenceError(
      "ERR_BAD_REQUEST",
      `the input shape must be [1..${maxBatch}, ${expected.slice(1).join(", ")}]`,
    );
  }
  const values: number[] = [];
  flatten(input.data, values);
  if (values.length !== batch * inputSize(model)) {
    throw new InferenceError("ERR_BAD_REQUEST", "the input data does not fill its shape");
  }
  return { data: Float32Array.from(values), batch, fromImage: false };
}

async function infer(
  model: LoadedModel,
  request: BinaryRequest,
  timings: Map<string, number>,
): Promise<ResponseInit> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(strictUtf8.decode(request.body));
  } catch {
    throw new InferenceError("ERR_BAD_REQUEST", "the body is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new InferenceError("ERR_BAD_REQUEST", "the body must be a JSON object");
  }
  const body = parsed as InferRequestBody;
  const input = prepareInput(model, body, timings);
  const started = performance.now();
  const output = await runModel(model, input.data, input.batch);
  timings.set("infer", performance.now() - started);
  const classes = model.config.labels.length;
  const result: Record<string, unknown> = {
    model_name: model.config.name,
    model_version: model.config.version,
    ...(typeof body.id === "string" ? { id: body.id.slice(0, 128) } : {}),
    outputs: [
      {
        name: model.config.output.name,
        shape: [input.batch, classes],
        datatype: "FP32",
        data: Array.from(output),
      },
    ],
  };
  if (input.fromImage) {
    const probabilities = Array.from(output.subarray(0, classes));
    const best = probabilities.indexOf(Math.max(...probabilities));
    result.parameters = {
      predicted_index: best,
      predicted_label: model.config.labels[best] ?? "",
      probability: probabilities[best] ?? 0,
      model_sha256: model.sha256,
    };
  }
  const serverTiming = [...timings].map(([stage, ms]) => `${stage};dur=${ms.toFixed(3)}`).join(", ");
  return json(200, result, { "server-timing": serverTiming });
}

function findModel(models: readonly LoadedModel[], name: string, version: string | undefined): LoadedModel {
  const candidates = models.filter((model) => model.config.name === name);
  const model =
    version === undefined
      ? candidates.sort((a, b) => Number(b.config.version) - Number(a.config.version))[0]
      : candidates.find((candidate) => candidate.config.version === version);
  if (model === undefined) {
    throw new InferenceError("ERR_MODEL_NOT_FOUND");
  }
  return model;
}

const modelRoute =
  /^\/v2\/models\/([a-z0-9][a-z0-9._-]{0,63})(?:\/versions\/([0-9]{1,9}))?(\/ready|\/infer)?$/;

/** Handles one decapsulated request. Never throws: every failure is an encrypted OIP error body. */
export async function handleOpenInference(
  request: BinaryRequest,
  context: OpenInferenceContext,
): Promise<OpenInferenceOutcome> {
  const timings = new Map<string, number>();
  try {
    checkFreshness(request, context);
    let started = performance.now();
    await authorizeCaller(request, context);
    timings.set("auth", performance.now() - started);
    started = performance.now();
    const path = request.path.split("?")[0] ?? "";
    const method = request.method;
    if (method === "GET" && path === "/v2") {
      return {
        response: json(200, {
          name: "cloister-inference",
          version: context.serverVersion,
          extensions: ["image_input"],
        }),
        outcome: "OK",
      };
    }
    if (method === "GET" && (path === "/v2/health/ready" || path === "/v2/health/live")) {
      return {
        response: json(200, path.endsWith("ready") ? { ready: true } : { live: true }),
        outcome: "OK",
      };
    }
    if (method === "GET" && path === "/v2/models") {
      const names = [...new Set(context.models.map((model) => model.config.name))];
      return {
        response: json(200, {
          models: names.map((name) => {
            const versions = context.models
              .filter((m) => m.config.name === name)
              .map((m) => m.config.version);
            return modelMetadata(findModel(context.models, name, undefined), versions);
          }),
        }),
        outcome: "OK",
      };
    }
    const match = modelRoute.exec(path);
    if (match === null) {
      throw new InferenceError("ERR_NOT_FOUND");
    }
    const [, name = "", version, action] = match;
    const model = findModel(context.models, name, version);
    if (method === "GET" && action === undefined) {
      const versions = context.models.filter((m) => m.config.name === name).map((m) => m.config.version);
      return { response: json(200, modelMetadata(model, versions)), outcome: "OK" };
    }
    if (method === "GET" && action === "/ready") {
      return { response: json(200, { name, ready: true }), outcome: "OK" };
    }
    if (method === "POST" && action === "/infer") {
      return { response: await infer(model, request, timings), outcome: "OK" };
    }
    throw new InferenceError("ERR_NOT_FOUND");
  } catch (error) {
    return errorResponse(
      error instanceof InferenceError
        ? error
        : new InferenceError("ERR_INTERNAL", undefined, { cause: error }),
    );
  }
}
