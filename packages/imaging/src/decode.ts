import { decodeDicom, isDicom } from "./dicom.js";
import { ImagingError } from "./errors.js";
import type { GrayImage } from "./image.js";
import { decodeJpeg, isJpeg } from "./jpeg.js";
import { decodePng, isPng } from "./png.js";

export const imageContentTypes = ["image/png", "image/jpeg", "application/dicom"] as const;
export type ImageContentType = (typeof imageContentTypes)[number];

/**
 * Decodes a PNG, JPEG or DICOM Part 10 image to grayscale. The content type must match the bytes: a file
 * labelled one thing and containing another is refused, not guessed.
 *
 * @example
 * ```ts
 * const image = decodeImage("application/dicom", bytes); // windowed, MONOCHROME1 inverted
 * ```
 */
export function decodeImage(contentType: string, bytes: Uint8Array): GrayImage {
  const type = contentType.split(";")[0]?.trim().toLowerCase();
  switch (type) {
    case "image/png":
      if (!isPng(bytes)) {
        throw new ImagingError("ERR_IMAGE_DECODE", "the data is not a PNG file");
      }
      return decodePng(bytes);
    case "image/jpeg":
      if (!isJpeg(bytes)) {
        throw new ImagingError("ERR_IMAGE_DECODE", "the data is not a JPEG file");
      }
      return decodeJpeg(bytes);
    case "application/dicom":
      if (!isDicom(bytes)) {
        throw new ImagingError("ERR_IMAGE_DECODE", "the data is not a DICOM Part 10 file");
      }
      return decodeDicom(bytes);
    default:
      throw new ImagingError(
        "ERR_IMAGE_UNSUPPORTED",
        `content type ${JSON.stringify(type ?? "")} is not one of ${imageContentTypes.join(", ")}`,
      );
  }
}

/** A grayscale image from raw 8-bit pixels (MedMNIST arrays, tests). */
export function grayImageFromBytes(
  width: number,
  height: number,
  bytes: Uint8Array,
  source = "raw",
): GrayImage {
  if (bytes.length !== width * height) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the pixel count does not match width × height");
  }
  return { width, height, pixels: Float32Array.from(bytes), source };
}
