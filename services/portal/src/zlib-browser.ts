// node:zlib's inflateRawSync for the browser build, on fflate: what the DICOM decoder needs for the
// Deflated Explicit VR Little Endian transfer syntax.
import { inflateSync } from "fflate";

export function inflateRawSync(data: Uint8Array, options: { maxOutputLength?: number } = {}): Uint8Array {
  const inflated = inflateSync(data);
  if (options.maxOutputLength !== undefined && inflated.length > options.maxOutputLength) {
    throw new RangeError("inflated data is larger than allowed");
  }
  return inflated;
}
