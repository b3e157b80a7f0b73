// `cloister models evaluate <model> --npz FILE --split SPLIT`: runs a committed model exactly as the
// inference server does (same loader, same preprocessing, same onnxruntime session) on every image of a
// MedMNIST-format .npz, and reports accuracy and AUC.
import { writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { grayImageFromBytes, preprocess, readMedMnistSplit } from "@cloister/imaging";
import { inputSize, loadModel, runModel, scanModelRepository } from "@cloister/inference-server";
import { classificationMetrics } from "./classification-metrics.js";
import { ExitCode, type CliIo, parseCommandLine } from "./cli-io.js";

export const modelsUsage = `Usage: cloister models evaluate <model>[/<version>] --npz FILE --split train|val|test
                                [--predictions OUT.csv] [--json] [--repository DIR]

Runs the model on every image of a MedMNIST-format .npz with the inference server's own preprocessing and
prints {n, acc, auc} (macro one-vs-rest AUC for more than two classes). --predictions writes a CSV with a
header and one line per image: index,label,prob_0,prob_1,…
The repository defaults to models/repository.`;

const defaultRepository = resolve(dirname(fileURLToPath(import.meta.url)), "../../../models/repository");

export async function runModels(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      npz: { type: "string" },
      split: { type: "string" },
      predictions: { type: "string" },
      repository: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    modelsUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  const [action, wanted] = positionals;
  const split = values.split;
  if (action !== "evaluate" || wanted === undefined || values.npz === undefined || split === undefined) {
    io.stderr(`${modelsUsage}\n`);
    return ExitCode.usage;
  }
  if (!["train", "val", "test"].includes(split)) {
    io.stderr(`--split must be train, val or test\n`);
    return ExitCode.usage;
  }
  try {
    const [name, version] = wanted.split("/");
    const candidates = scanModelRepository(resolve(values.repository ?? defaultRepository))
      .filter(
        (entry) => entry.config.name === name && (version === undefined || entry.config.version === version),
      )
      .sort((a, b) => Number(b.config.version) - Number(a.config.version));
    const entry = candidates[0];
    if (entry === undefined) {
      io.stderr(`cloister models: no model ${wanted} in the repository\n`);
      return ExitCode.usage;
    }
    const model = await loadModel(entry);
    const data = readMedMnistSplit(resolve(values.npz), split);
    const pixelsPerImage = data.height * data.width;
    const size = inputSize(model);
    const classes = model.config.labels.length;
    const probabilities: number[][] = [];
    const batchSize = 64;
    for (let start = 0; start < data.count; start += batchSize) {
      const count = Math.min(batchSize, data.count - start);
      const batch = new Float32Array(count * size);
      for (let i = 0; i < count; i++) {
        const offset = (start + i) * pixelsPerImage;
        const image = grayImageFromBytes(
          data.width,
          data.height,
          data.images.subarray(offset, offset + pixelsPerImage),
        );
        batch.set(preprocess(image, model.config.preprocessing), i * size);
      }
      const output = await runModel(model, batch, count);
      for (let i = 0; i < count; i++) {
        probabilities.push(Array.from(output.subarray(i * classes, (i + 1) * classes)));
      }
    }
    await model.session.release();
    const labels = Array.from(data.labels);
    const metrics = classificationMetrics(probabilities, labels);
    if (values.predictions !== undefined) {
      const header = ["index", "label", ...Array.from({ length: classes }, (_, c) => `prob_${c}`)].join(",");
      const lines = probabilities.map((row, i) =>
        [i, labels[i], ...row.map((p) => p.toPrecision(7))].join(","),
      );
      writeFileSync(values.predictions, `${header}\n${lines.join("\n")}\n`);
    }
    if (values.json === true) {
      io.stdout(`${JSON.stringify(metrics)}\n`);
    } else {
      io.stdout(
        `${model.config.name} v${model.config.version} on ${split} (${metrics.n} images): ACC ${metrics.acc.toFixed(4)}, AUC ${metrics.auc.toFixed(4)}\n`,
      );
    }
    return ExitCode.ok;
  } catch (error) {
    const code =
      typeof error === "object" && error !== null && "code" in error ? ` (${String(error.code)})` : "";
    io.stderr(`cloister models: ${(error as Error).message}${code}\n`);
    return ExitCode.rejected;
  }
}
