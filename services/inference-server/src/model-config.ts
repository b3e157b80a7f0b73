// A model's config.json: what the server needs to feed it and what a clinician needs to read its output.
import {
  parseIntendedPatients,
  parsePreprocessing,
  type IntendedPatients,
  type Preprocessing,
} from "@cloister/imaging";
import { InferenceError } from "./errors.js";

export interface TensorSpec {
  readonly name: string;
  readonly datatype: "FP32";
  /** -1 for the batch dimension. */
  readonly shape: readonly number[];
}

export interface ModelConfig {
  readonly name: string;
  readonly version: string;
  readonly title: string;
  readonly input: TensorSpec;
  readonly output: TensorSpec;
  readonly preprocessing: Preprocessing;
  readonly labels: readonly string[];
  readonly intendedUse: string;
  /** SHA-256 (hex) of the plaintext model.onnx; required for encrypted models, checked when present. */
  readonly sha256?: string;
  /** Encrypted models: the key broker key that decrypts `model.onnx.enc`. */
  readonly encryption?: { readonly keyName: string };
  readonly modality?: string;
  readonly bodySite?: string;
  /** The patients it was trained on (ages, sex): the platform analyses no image of a patient outside them. */
  readonly intendedPatients?: IntendedPatients;
}

const namePattern = /^[a-z0-9][a-z0-9._-]{0,63}$/;

function tensorSpec(value: unknown, where: string): TensorSpec {
  const spec = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const shape = spec.shape;
  if (
    typeof spec.name !== "string" ||
    spec.datatype !== "FP32" ||
    !Array.isArray(shape) ||
    !shape.every((d) => Number.isInteger(d) && ((d as number) > 0 || d === -1))
  ) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `${where} must be {name, datatype: "FP32", shape}`);
  }
  return { name: spec.name, datatype: "FP32", shape: shape as number[] };
}

/** Parses and checks a config.json; `folder` names the model and version it must describe. */
export function parseModelConfig(value: unknown, folder: { name: string; version: string }): ModelConfig {
  const config = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const where = `${folder.name}/${folder.version}/config.json`;
  if (config.name !== folder.name || String(config.version) !== folder.version) {
    throw new InferenceError(
      "ERR_MODEL_REPOSITORY",
      `${where} names another model or version than its folder`,
    );
  }
  if (!namePattern.test(folder.name) || !/^[0-9]{1,9}$/.test(folder.version)) {
    throw new InferenceError(
      "ERR_MODEL_REPOSITORY",
      `${where}: names are lowercase tokens, versions numbers`,
    );
  }
  const labels = config.labels;
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((label) => typeof label === "string")) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `${where}: labels must list at least two strings`);
  }
  const output = tensorSpec(config.output, `${where} output`);
  if (output.shape.at(-1) !== labels.length) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `${where}: the output has not one value per label`);
  }
  const sha256 = config.sha256;
  if (sha256 !== undefined && (typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256))) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `${where}: sha256 must be 64 lowercase hex digits`);
  }
  const encryption = config.encryption as { keyName?: unknown } | undefined;
  if (encryption !== undefined && (typeof encryption.keyName !== "string" || sha256 === undefined)) {
    throw new InferenceError(
      "ERR_MODEL_REPOSITORY",
      `${where}: encrypted models need encryption.keyName and sha256`,
    );
  }
  let preprocessing: Preprocessing;
  let intendedPatients: IntendedPatients | undefined;
  try {
    preprocessing = parsePreprocessing(config.preprocessing);
    intendedPatients = parseIntendedPatients(config.intendedPatients);
  } catch (cause) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `${where}: ${(cause as Error).message}`, { cause });
  }
  return {
    name: folder.name,
    version: folder.version,
    title: typeof config.title === "string" ? config.title : folder.name,
    input: tensorSpec(config.input, `${where} input`),
    output,
    preprocessing,
    labels: labels,
    intendedUse: typeof config.intendedUse === "string" ? config.intendedUse : "",
    ...(sha256 === undefined ? {} : { sha256 }),
    ...(encryption === undefined ? {} : { encryption: { keyName: encryption.keyName as string } }),
    ...(typeof config.modality === "string" ? { modality: config.modality } : {}),
    ...(typeof config.bodySite === "string" ? { bodySite: config.bodySite } : {}),
    ...(intendedPatients === undefined ? {} : { intendedPatients }),
  };
}
