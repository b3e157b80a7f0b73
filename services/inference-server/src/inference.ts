// Running a model: one or more preprocessed images in, one probability vector per image out.
import { Tensor } from "onnxruntime-node";
import { InferenceError } from "./errors.js";
import type { LoadedModel } from "./model-repository.js";

/** Runs `batch` images, each `inputSize` floats long, concatenated in `data`; returns the raw output. */
export async function runModel(model: LoadedModel, data: Float32Array, batch: number): Promise<Float32Array> {
  const shape = model.config.input.shape.map((d) => (d === -1 ? batch : d));
  const expected = shape.reduce((product, d) => product * d, 1);
  if (data.length !== expected) {
    throw new InferenceError(
      "ERR_BAD_REQUEST",
      `the input holds ${data.length} values, the model takes ${expected}`,
    );
  }
  try {
    const outputs = await model.session.run({
      [model.config.input.name]: new Tensor("float32", data, shape),
    });
    const output = outputs[model.config.output.name];
    if (output === undefined || !(output.data instanceof Float32Array)) {
      throw new Error("the model produced no float output");
    }
    return output.data;
  } catch (cause) {
    if (cause instanceof InferenceError) {
      throw cause;
    }
    throw new InferenceError("ERR_INFERENCE", undefined, { cause });
  }
}

/** Values per image for a model's input (the product of its non-batch dimensions). */
export function inputSize(model: LoadedModel): number {
  return model.config.input.shape.slice(1).reduce((product, d) => product * d, 1);
}
