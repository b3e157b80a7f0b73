// Model preprocessing, as a model's config.json describes it: centre crop, resize, scale and normalise.
// The inference server, the model tools and the benchmark baseline all call this one function.
import { ImagingError } from "./errors.js";
import type { GrayImage } from "./image.js";

export interface Preprocessing {
  readonly colorSpace: "grayscale";
  readonly width: number;
  readonly height: number;
  /** "center-square" crops the longer side to the shorter one first (as MedMNIST v2 did). */
  readonly crop: "center-square" | "none";
  /** "area": every output pixel is the mean of the input area it covers (anti-aliased downscaling). */
  readonly resize: "area";
  /** Multiplies intensities (0..255) first, e.g. 1/255. */
  readonly scale: number;
  readonly mean: number;
  readonly std: number;
}

/** Validates a config.json `preprocessing` object. */
export function parsePreprocessing(value: unknown): Preprocessing {
  const p = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>;
  const positive = (name: string, max = Infinity): number => {
    const v = p[name];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > max) {
      throw new ImagingError("ERR_IMAGE_CONFIG", `preprocessing.${name} must be a positive number`);
    }
    return v;
  };
  if (p.colorSpace !== "grayscale") {
    throw new ImagingError("ERR_IMAGE_CONFIG", 'preprocessing.colorSpace must be "grayscale"');
  }
  if (p.resize !== "area") {
    throw new ImagingError("ERR_IMAGE_CONFIG", 'preprocessing.resize must be "area"');
  }
  const crop = p.crop ?? "none";
  if (crop !== "center-square" && crop !== "none") {
    throw new ImagingError("ERR_IMAGE_CONFIG", 'preprocessing.crop must be "center-square" or "none"');
  }
  const mean = p.mean;
  if (typeof mean !== "number" || !Number.isFinite(mean)) {
    throw new ImagingError("ERR_IMAGE_CONFIG", "preprocessing.mean must be a number");
  }
  return {
    colorSpace: "grayscale",
    width: Math.round(positive("width", 4096)),
    height: Math.round(positive("height", 4096)),
    crop,
    resize: "area",
    scale: positive("scale"),
    mean,
    std: positive("std"),
  };
}

/** For each output index along one axis: the input indices it covers and their weights (summing to 1). */
function areaWeights(inputLength: number, outputLength: number): { index: number; weight: number }[][] {
  const ratio = inputLength / outputLength;
  return Array.from({ length: outputLength }, (_, out) => {
    const start = out * ratio;
    const end = start + ratio;
    const taps: { index: number; weight: number }[] = [];
    for (let i = Math.floor(start); i < Math.min(inputLength, Math.ceil(end)); i++) {
      const overlap = Math.min(end, i + 1) - Math.max(start, i);
      if (overlap > 1e-12) {
        taps.push({ index: i, weight: overlap / ratio });
      }
    }
    return taps;
  });
}

/**
 * Turns a decoded image into the model's input tensor data (1×H×W, row-major).
 *
 * @example
 * ```ts
 * const tensor = preprocess(decodeImage("image/png", bytes), config.preprocessing);
 * ```
 */
export function preprocess(image: GrayImage, preprocessing: Preprocessing): Float32Array {
  let left = 0;
  let top = 0;
  let width = image.width;
  let height = image.height;
  if (preprocessing.crop === "center-square" && width !== height) {
    const side = Math.min(width, height);
    left = Math.floor((width - side) / 2);
    top = Math.floor((height - side) / 2);
    width = side;
    height = side;
  }
  const outWidth = preprocessing.width;
  const outHeight = preprocessing.height;
  const columns = areaWeights(width, outWidth);
  const rows = areaWeights(height, outHeight);
  // Separable: rows first into an intermediate outHeight × width buffer, then columns.
  const intermediate = new Float64Array(outHeight * width);
  for (let y = 0; y < outHeight; y++) {
    for (const { index, weight } of rows[y] ?? []) {
      const sourceRow = (top + index) * image.width + left;
      const targetRow = y * width;
      for (let x = 0; x < width; x++) {
        intermediate[targetRow + x] =
          (intermediate[targetRow + x] ?? 0) + (image.pixels[sourceRow + x] ?? 0) * weight;
      }
    }
  }
  const out = new Float32Array(outWidth * outHeight);
  const { scale, mean, std } = preprocessing;
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      let sum = 0;
      for (const { index, weight } of columns[x] ?? []) {
        sum += (intermediate[y * width + index] ?? 0) * weight;
      }
      out[y * outWidth + x] = (sum * scale - mean) / std;
    }
  }
  return out;
}
