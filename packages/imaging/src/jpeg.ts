import jpeg from "jpeg-js";
import { ImagingError } from "./errors.js";
import { maxPixels, rgbaToGray, type GrayImage } from "./image.js";

export function isJpeg(bytes: Uint8Array): boolean {
  return bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Decodes baseline or progressive 8-bit JPEG to RGBA; `colorTransform` as the file says (undefined: auto). */
export function decodeJpegRgba(
  bytes: Uint8Array,
  colorTransform?: boolean,
): { width: number; height: number; data: Uint8Array } {
  if (!isJpeg(bytes)) {
    throw new ImagingError("ERR_IMAGE_DECODE", "not a JPEG stream");
  }
  try {
    return jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      maxResolutionInMP: maxPixels / (1024 * 1024),
      maxMemoryUsageInMB: 1024,
      ...(colorTransform === undefined ? {} : { colorTransform }),
    });
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : "";
    if (/maxResolutionInMP|maxMemoryUsageInMB/.test(message)) {
      throw new ImagingError("ERR_IMAGE_TOO_LARGE", "the JPEG is outside the accepted size", { cause });
    }
    throw new ImagingError("ERR_IMAGE_DECODE", "the JPEG is corrupt or uses an unsupported coding", {
      cause,
    });
  }
}

export function decodeJpeg(bytes: Uint8Array): GrayImage {
  const decoded = decodeJpegRgba(bytes);
  return rgbaToGray(decoded.width, decoded.height, decoded.data, "jpeg");
}
