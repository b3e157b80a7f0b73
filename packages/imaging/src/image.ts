/** A decoded grayscale image: intensities 0..255 (float, so DICOM windowing keeps its precision). */
export interface GrayImage {
  readonly width: number;
  readonly height: number;
  readonly pixels: Float32Array;
  /** How the image was read, in words, for the response's provenance (no PHI). */
  readonly source: string;
}

/** Largest decoded image accepted: 64 megapixels. */
export const maxPixels = 64 * 1024 * 1024;

/** ITU-R BT.601 luma, the usual grayscale conversion. */
export function rgbaToGray(width: number, height: number, rgba: Uint8Array, source: string): GrayImage {
  const pixels = new Float32Array(width * height);
  for (let i = 0, j = 0; i < pixels.length; i++, j += 4) {
    pixels[i] = 0.299 * (rgba[j] ?? 0) + 0.587 * (rgba[j + 1] ?? 0) + 0.114 * (rgba[j + 2] ?? 0);
  }
  return { width, height, pixels, source };
}
