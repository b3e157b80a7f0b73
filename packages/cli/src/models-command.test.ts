// The committed models: their hashes match the model card and config.json, and their validation
// accuracy, measured by the same path the inference server uses, is what the card says.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { binaryAuc, classificationMetrics } from "./classification-metrics.js";
import { runCli, type CliIo } from "./index.js";

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const medmnist = resolve(repositoryRoot, "../shared/data/medmnist");
const card = readFileSync(join(repositoryRoot, "models/MODEL_CARD.md"), "utf8");
const scratch = mkdtempSync(join(tmpdir(), "cloister-models-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) };
  const code = await runCli(argv, io);
  return { code, stdout, stderr };
}

const models = [
  { name: "chest-xray-pneumonia", npz: "pneumoniamnist_trainval.npz", minAcc: 0.95, minAuc: 0.99 },
  { name: "breast-ultrasound", npz: "breastmnist_trainval.npz", minAcc: 0.87, minAuc: 0.92 },
];

describe("committed models", () => {
  for (const model of models) {
    it(`${model.name}: the file's SHA-256 is the card's and config.json's, and validation is as reported`, async () => {
      const folder = join(repositoryRoot, "models/repository", model.name, "1");
      const sha256 = createHash("sha256")
        .update(readFileSync(join(folder, "model.onnx")))
        .digest("hex");
      const config = JSON.parse(readFileSync(join(folder, "config.json"), "utf8")) as {
        sha256: string;
        validation: { acc: number; auc: number };
      };
      assert.equal(config.sha256, sha256);
      assert.match(card, new RegExp(`\\| \`${model.name}\` .*\\| \`${sha256}\` \\|`));

      const predictions = join(scratch, `${model.name}.csv`);
      const result = await run([
        "models",
        "evaluate",
        model.name,
        "--npz",
        join(medmnist, model.npz),
        "--split",
        "val",
        "--json",
        "--predictions",
        predictions,
      ]);
      assert.equal(result.code, 0, result.stderr);
      const metrics = JSON.parse(result.stdout) as { n: number; acc: number; auc: number };
      // The MedMNIST v2 ResNet-18 (28) baselines are beaten clearly on validation.
      assert.ok(metrics.acc >= model.minAcc, `ACC ${metrics.acc}`);
      assert.ok(metrics.auc >= model.minAuc, `AUC ${metrics.auc}`);
      assert.ok(Math.abs(metrics.acc - config.validation.acc) < 1e-3, "ACC differs from config.json");
      assert.ok(Math.abs(metrics.auc - config.validation.auc) < 1e-3, "AUC differs from config.json");
      assert.ok(card.includes(`**${metrics.acc.toFixed(4)}**`), "the card reports another ACC");
      const lines = readFileSync(predictions, "utf8").trim().split("\n");
      assert.equal(lines[0], "index,label,prob_0,prob_1");
      assert.equal(lines.length, metrics.n + 1);
    });
  }

  it("refuses unknown models and splits, and bad arguments", async () => {
    const npz = join(medmnist, "pneumoniamnist_trainval.npz");
    assert.equal(
      (await run(["models", "evaluate", "no-such-model", "--npz", npz, "--split", "val"])).code,
      2,
    );
    assert.equal(
      (await run(["models", "evaluate", "chest-xray-pneumonia", "--npz", npz, "--split", "x"])).code,
      2,
    );
    const missing = await run([
      "models",
      "evaluate",
      "chest-xray-pneumonia",
      "--npz",
      npz,
      "--split",
      "test",
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no test_images/);
    assert.equal((await run(["models", "list"])).code, 2);
  });
});

describe("classification metrics", () => {
  it("computes AUC with ties averaged, and macro one-vs-rest", () => {
    assert.equal(binaryAuc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 0.75);
    assert.equal(binaryAuc([0.5, 0.5], [false, true]), 0.5);
    const three = classificationMetrics(
      [
        [0.8, 0.1, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.1, 0.8],
        [0.6, 0.3, 0.1],
      ],
      [0, 1, 2, 1],
    );
    assert.equal(three.acc, 0.75);
    assert.ok(three.auc > 0.5 && three.auc <= 1);
  });
});
