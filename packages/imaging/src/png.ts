import { PNG } from "pngjs";
import { ImagingError } from "./errors.js";
import { maxPixels, rgbaToGray, type GrayImage } from "./image.js";

const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPng(bytes: Uint8Array): boolean {
  return signature.every((byte, i) => bytes[i] === byte);
}

/** Decodes a PNG (any bit depth and colour type; alpha is ignored) to grayscale. */
export function decodePng(bytes: Uint8Array): GrayImage {
  if (!isPng(bytes) || bytes.length < 33) {
    throw new ImagingError("ERR_IMAGE_DECODE", "not a PNG file");
  }
  // IHDR first (PNG §11.2.2): refuse huge images before inflating them.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  if (width === 0 || height === 0 || width * height > maxPixels) {
    throw new ImagingError("ERR_IMAGE_TOO_LARGE", `a ${width}x${height} PNG is outside the accepted size`);
  }
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  } catch (cause) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the PNG is corrupt", { cause });
  }
  return rgbaToGray(png.width, png.height, png.data, "png");
}
