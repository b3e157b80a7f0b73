// The model repository: <model>/<version>/{config.json, model.onnx | model.onnx.enc}. Scanning hashes every
// model (before attestation, so the hashes are bound into the evidence); loading decrypts where needed,
// checks each plaintext against its hash, and opens an onnxruntime session.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InferenceSession } from "onnxruntime-node";
import { InferenceError } from "./errors.js";
import { decryptModel } from "./model-encryption.js";
import { parseModelConfig, type ModelConfig } from "./model-config.js";

export interface ModelEntry {
  readonly config: ModelConfig;
  readonly file: string;
  readonly encrypted: boolean;
  /** SHA-256 of the plaintext ONNX file: computed, or for encrypted models taken from config.json. */
  readonly sha256: string;
}

export interface LoadedModel extends ModelEntry {
  readonly session: InferenceSession;
}

/** What the server binds into its evidence: exactly which model bytes it serves. */
export interface ModelMeasurement {
  readonly model: string;
  readonly version: string;
  readonly sha256: string;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function scanModelRepository(directory: string): ModelEntry[] {
  if (!existsSync(directory)) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `the model repository ${directory} does not exist`);
  }
  const entries: ModelEntry[] = [];
  for (const name of readdirSync(directory).sort()) {
    const modelDirectory = join(directory, name);
    for (const version of readdirSync(modelDirectory).sort()) {
      const folder = join(modelDirectory, version);
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(join(folder, "config.json"), "utf8"));
      } catch (cause) {
        throw new InferenceError(
          "ERR_MODEL_REPOSITORY",
          `${name}/${version}/config.json is missing or not JSON`,
          {
            cause,
          },
        );
      }
      const config = parseModelConfig(raw, { name, version });
      const encrypted = config.encryption !== undefined;
      const file = join(folder, encrypted ? "model.onnx.enc" : "model.onnx");
      if (!existsSync(file)) {
        throw new InferenceError(
          "ERR_MODEL_REPOSITORY",
          `${name}/${version} has no ${encrypted ? "model.onnx.enc" : "model.onnx"}`,
        );
      }
      let sha256: string;
      if (encrypted) {
        sha256 = config.sha256 ?? "";
      } else {
        sha256 = sha256Hex(readFileSync(file));
        if (config.sha256 !== undefined && config.sha256 !== sha256) {
          throw new InferenceError(
            "ERR_MODEL_INTEGRITY",
            `${name}/${version}/model.onnx does not match its sha256`,
          );
        }
      }
      entries.push({ config, file, encrypted, sha256 });
    }
  }
  if (entries.length === 0) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `the model repository ${directory} holds no models`);
  }
  return entries;
}

export function modelMeasurements(entries: readonly ModelEntry[]): ModelMeasurement[] {
  return entries.map((entry) => ({
    model: entry.config.name,
    version: entry.config.version,
    sha256: entry.sha256,
  }));
}

export interface LoadOptions {
  /** Releases an encrypted model's key (from the key broker, with this server's attestation token). */
  readonly releaseModelKey?: (keyName: string) => Promise<Uint8Array>;
  /** onnxruntime intra-op threads per session (default 1: requests run in parallel instead). */
  readonly intraOpThreads?: number;
}

export async function loadModel(entry: ModelEntry, options: LoadOptions = {}): Promise<LoadedModel> {
  const { name, version } = entry.config;
  let bytes: Uint8Array = readFileSync(entry.file);
  if (entry.config.encryption !== undefined) {
    if (options.releaseModelKey === undefined) {
      throw new InferenceError(
        "ERR_MODEL_REPOSITORY",
        `${name}/${version} is encrypted and no key broker is configured`,
      );
    }
    const key = await options.releaseModelKey(entry.config.encryption.keyName);
    bytes = decryptModel(bytes, key, name, version);
    key.fill(0);
    if (sha256Hex(bytes) !== entry.sha256) {
      throw new InferenceError(
        "ERR_MODEL_INTEGRITY",
        `${name}/${version} decrypts to other bytes than its sha256`,
      );
    }
  }
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(bytes, {
      intraOpNumThreads: options.intraOpThreads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: "all",
    });
  } catch (cause) {
    throw new InferenceError("ERR_MODEL_REPOSITORY", `${name}/${version} is not a loadable ONNX model`, {
      cause,
    });
  }
  if (
    !session.inputNames.includes(entry.config.input.name) ||
    !session.outputNames.includes(entry.config.output.name)
  ) {
    throw new InferenceError(
      "ERR_MODEL_REPOSITORY",
      `${name}/${version}: config.json's tensor names are not the model's`,
    );
  }
  return { ...entry, session };
}

export async function loadModelRepository(
  directory: string,
  options: LoadOptions = {},
): Promise<LoadedModel[]> {
  return Promise.all(scanModelRepository(directory).map((entry) => loadModel(entry, options)));
}
