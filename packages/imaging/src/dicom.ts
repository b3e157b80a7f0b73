// DICOM Part 10 to a grayscale image (PS3.3 C.7.6.3 Image Pixel, C.11.1 Modality LUT, C.11.2 VOI LUT).
// Native transfer syntaxes (implicit and explicit VR little endian, explicit big endian, deflated), RLE
// Lossless (PS3.5 Annex G) and JPEG Baseline (Process 1). The first frame of multi-frame images is used.
import dicomParser from "dicom-parser";
import { inflateRawSync } from "node:zlib";
import { ImagingError } from "./errors.js";
import { maxPixels, type GrayImage } from "./image.js";
import { decodeJpegRgba } from "./jpeg.js";

export const transferSyntaxes = {
  implicitLittle: "1.2.840.10008.1.2",
  explicitLittle: "1.2.840.10008.1.2.1",
  deflatedExplicitLittle: "1.2.840.10008.1.2.1.99",
  explicitBig: "1.2.840.10008.1.2.2",
  jpegBaseline: "1.2.840.10008.1.2.4.50",
  rleLossless: "1.2.840.10008.1.2.5",
} as const;

const supported = new Set<string>(Object.values(transferSyntaxes));

export function isDicom(bytes: Uint8Array): boolean {
  return (
    bytes.length > 132 &&
    bytes[128] === 0x44 &&
    bytes[129] === 0x49 &&
    bytes[130] === 0x43 &&
    bytes[131] === 0x4d
  );
}

/** The attributes of the Image Pixel, Modality LUT and VOI LUT modules that rendering needs. */
export interface DicomPixelModule {
  readonly transferSyntax: string;
  readonly rows: number;
  readonly columns: number;
  readonly samplesPerPixel: number;
  readonly photometric: string;
  readonly bitsAllocated: number;
  readonly bitsStored: number;
  readonly signed: boolean;
  readonly planar: boolean;
  readonly frames: number;
  readonly rescaleSlope: number;
  readonly rescaleIntercept: number;
  readonly window: { readonly center: number; readonly width: number } | undefined;
  readonly voiFunction: "LINEAR" | "LINEAR_EXACT" | "SIGMOID";
}

function parse(bytes: Uint8Array): dicomParser.DataSet {
  if (!isDicom(bytes)) {
    throw new ImagingError("ERR_IMAGE_DECODE", "not a DICOM Part 10 file (no DICM prefix)");
  }
  try {
    return dicomParser.parseDicom(bytes, {
      // A deflate bomb stops at 160 MB: room for the largest image we accept (64 MP at 16 bits) and its tags.
      inflater: (array: Uint8Array, position: number) => {
        const inflated = inflateRawSync(array.subarray(position), { maxOutputLength: 160 * 1024 * 1024 });
        const whole = new Uint8Array(position + inflated.length);
        whole.set(array.subarray(0, position));
        whole.set(inflated, position);
        return whole;
      },
    });
  } catch (cause) {
    // dicom-parser throws strings and plain objects as well as Errors.
    throw new ImagingError("ERR_IMAGE_DECODE", "the DICOM file is malformed or truncated", {
      cause: cause instanceof Error ? cause : undefined,
    });
  }
}

function decimal(dataSet: dicomParser.DataSet, tag: string): number | undefined {
  const value = dataSet.floatString(tag);
  return value === undefined || !Number.isFinite(value) ? undefined : value;
}

/** Reads the pixel-describing attributes; rejects what we cannot render with a typed error. */
export function readPixelModule(dataSet: dicomParser.DataSet): DicomPixelModule {
  const transferSyntax = (dataSet.string("x00020010") ?? "").replace(/\0/g, "").trim();
  if (!supported.has(transferSyntax)) {
    throw new ImagingError(
      "ERR_IMAGE_UNSUPPORTED",
      `DICOM transfer syntax ${transferSyntax || "(none)"} is not supported; send uncompressed, RLE or JPEG Baseline`,
    );
  }
  const rows = dataSet.uint16("x00280010") ?? 0;
  const columns = dataSet.uint16("x00280011") ?? 0;
  const samplesPerPixel = dataSet.uint16("x00280002") ?? 1;
  const bitsAllocated = dataSet.uint16("x00280100") ?? 0;
  const bitsStored = dataSet.uint16("x00280101") ?? bitsAllocated;
  const photometric = (dataSet.string("x00280004") ?? "").trim();
  if (dataSet.elements.x7fe00010 === undefined) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the DICOM file has no pixel data");
  }
  if (rows === 0 || columns === 0) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the DICOM image has no rows or columns");
  }
  if (rows * columns > maxPixels) {
    throw new ImagingError(
      "ERR_IMAGE_TOO_LARGE",
      `a ${columns}x${rows} DICOM image is outside the accepted size`,
    );
  }
  if (![8, 16].includes(bitsAllocated) || bitsStored < 1 || bitsStored > bitsAllocated) {
    throw new ImagingError(
      "ERR_IMAGE_UNSUPPORTED",
      `DICOM images with ${bitsAllocated} bits allocated are not supported`,
    );
  }
  const monochrome = photometric === "MONOCHROME1" || photometric === "MONOCHROME2";
  const color = ["RGB", "YBR_FULL", "YBR_FULL_422"].includes(photometric);
  if (!(monochrome && samplesPerPixel === 1) && !(color && samplesPerPixel === 3)) {
    throw new ImagingError(
      "ERR_IMAGE_UNSUPPORTED",
      `photometric interpretation ${photometric || "(none)"} with ${samplesPerPixel} samples is not supported`,
    );
  }
  const centre = decimal(dataSet, "x00281050");
  const width = decimal(dataSet, "x00281051");
  const voi = (dataSet.string("x00281056") ?? "LINEAR").trim();
  return {
    transferSyntax,
    rows,
    columns,
    samplesPerPixel,
    photometric,
    bitsAllocated,
    bitsStored,
    signed: dataSet.uint16("x00280103") === 1,
    planar: dataSet.uint16("x00280006") === 1,
    frames: Math.max(1, dataSet.intString("x00280008") ?? 1),
    rescaleSlope: decimal(dataSet, "x00281053") ?? 1,
    rescaleIntercept: decimal(dataSet, "x00281052") ?? 0,
    window: centre !== undefined && width !== undefined && width >= 1 ? { center: centre, width } : undefined,
    voiFunction: voi === "LINEAR_EXACT" || voi === "SIGMOID" ? voi : "LINEAR",
  };
}

/** Stored values of the first frame, one plane per sample (so RGB comes out as three planes). */
function nativePlanes(dataSet: dicomParser.DataSet, module: DicomPixelModule): Float64Array[] {
  const element = dataSet.elements.x7fe00010;
  const count = module.rows * module.columns;
  if (module.photometric === "YBR_FULL_422") {
    // PS3.3 C.7.6.3.1.2: two pixels share chroma, stored Y1 Y2 Cb Cr; luma is all we need.
    if (module.bitsAllocated !== 8 || element === undefined || element.length < count * 2) {
      throw new ImagingError("ERR_IMAGE_DECODE", "the YBR_FULL_422 pixel data is not one 8-bit frame");
    }
    const luma = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      luma[i] = dataSet.byteArray[element.dataOffset + 4 * Math.floor(i / 2) + (i % 2)] ?? 0;
    }
    return [luma];
  }
  const bytesPerSample = module.bitsAllocated / 8;
  const frameBytes = count * module.samplesPerPixel * bytesPerSample;
  if (
    element === undefined ||
    element.length < frameBytes ||
    element.dataOffset + frameBytes > dataSet.byteArray.length
  ) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the DICOM pixel data is shorter than one frame");
  }
  const bytes = dataSet.byteArray;
  const bigEndian = module.transferSyntax === transferSyntaxes.explicitBig;
  const planes = Array.from({ length: module.samplesPerPixel }, () => new Float64Array(count));
  for (let i = 0; i < count; i++) {
    for (let s = 0; s < module.samplesPerPixel; s++) {
      const index = module.planar ? s * count + i : i * module.samplesPerPixel + s;
      const at = element.dataOffset + index * bytesPerSample;
      const raw =
        bytesPerSample === 1
          ? (bytes[at] ?? 0)
          : bigEndian
            ? ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0)
            : ((bytes[at + 1] ?? 0) << 8) | (bytes[at] ?? 0);
      (planes[s] as Float64Array)[i] = raw;
    }
  }
  return planes;
}

function encapsulatedFrame(dataSet: dicomParser.DataSet, module: DicomPixelModule): Uint8Array {
  const element = dataSet.elements.x7fe00010;
  if (element?.fragments === undefined || element.fragments.length === 0) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the compressed DICOM pixel data has no fragments");
  }
  try {
    if (module.frames === 1) {
      return dicomParser.readEncapsulatedPixelDataFromFragments(
        dataSet,
        element,
        0,
        element.fragments.length,
      );
    }
    const offsets =
      element.basicOffsetTable !== undefined && element.basicOffsetTable.length > 0
        ? element.basicOffsetTable
        : dicomParser.createJPEGBasicOffsetTable(dataSet, element);
    return dicomParser.readEncapsulatedImageFrame(dataSet, element, 0, offsets);
  } catch (cause) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the compressed DICOM frame could not be read", {
      cause: cause instanceof Error ? cause : undefined,
    });
  }
}

/** PS3.5 Annex G: a 64-byte header of segment offsets, then one PackBits segment per byte plane. */
function rlePlanes(frame: Uint8Array, module: DicomPixelModule): Float64Array[] {
  const count = module.rows * module.columns;
  const bytesPerSample = module.bitsAllocated / 8;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  if (frame.length < 64) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the RLE frame has no header");
  }
  const segments = view.getUint32(0, true);
  if (segments !== module.samplesPerPixel * bytesPerSample) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the RLE frame has the wrong number of segments");
  }
  const planes = Array.from({ length: module.samplesPerPixel }, () => new Float64Array(count));
  for (let k = 0; k < segments; k++) {
    const start = view.getUint32(4 + 4 * k, true);
    const end = k + 1 < segments ? view.getUint32(8 + 4 * k, true) : frame.length;
    if (start < 64 || end > frame.length || end < start) {
      throw new ImagingError("ERR_IMAGE_DECODE", "an RLE segment offset is out of range");
    }
    const plane = planes[Math.floor(k / bytesPerSample)] as Float64Array;
    const shift = 8 * (bytesPerSample - 1 - (k % bytesPerSample));
    let out = 0;
    let at = start;
    while (out < count && at < end) {
      const header = frame[at++] ?? 0;
      if (header < 128) {
        for (let n = 0; n <= header && out < count; n++) {
          plane[out] = (plane[out] ?? 0) + (frame[at++] ?? 0) * 2 ** shift;
          out++;
        }
      } else if (header > 128) {
        const value = (frame[at++] ?? 0) * 2 ** shift;
        for (let n = 0; n < 257 - header && out < count; n++) {
          plane[out] = (plane[out] ?? 0) + value;
          out++;
        }
      }
    }
    if (out < count) {
      throw new ImagingError("ERR_IMAGE_DECODE", "an RLE segment ends early");
    }
  }
  return planes;
}

function jpegPlanes(frame: Uint8Array, module: DicomPixelModule): Float64Array[] {
  const decoded = decodeJpegRgba(
    frame,
    module.photometric.startsWith("YBR") ? true : module.photometric === "RGB" ? false : undefined,
  );
  if (decoded.width !== module.columns || decoded.height !== module.rows) {
    throw new ImagingError("ERR_IMAGE_DECODE", "the JPEG frame's size does not match Rows and Columns");
  }
  const count = module.rows * module.columns;
  const planes = Array.from({ length: module.samplesPerPixel }, () => new Float64Array(count));
  for (let i = 0; i < count; i++) {
    for (let s = 0; s < module.samplesPerPixel; s++) {
      (planes[s] as Float64Array)[i] = decoded.data[i * 4 + s] ?? 0;
    }
  }
  return planes;
}

/** Masks to Bits Stored and sign-extends (PS3.5 §8.1.1). */
function storedValues(plane: Float64Array, module: DicomPixelModule): Float64Array {
  const range = 2 ** module.bitsStored;
  for (let i = 0; i < plane.length; i++) {
    let value = (plane[i] ?? 0) % range;
    if (module.signed && value >= range / 2) {
      value -= range;
    }
    plane[i] = value;
  }
  return plane;
}

/** Stored values through the modality LUT: rescale slope and intercept (PS3.3 C.11.1). */
function modalityValues(plane: Float64Array, module: DicomPixelModule): Float64Array {
  const values = storedValues(plane, module);
  for (let i = 0; i < values.length; i++) {
    values[i] = (values[i] ?? 0) * module.rescaleSlope + module.rescaleIntercept;
  }
  return values;
}

/**
 * The first frame's values after the modality LUT (monochrome images), before any windowing: what a
 * radiologist's viewer calls Hounsfield units for CT.
 */
export function decodeDicomModalityValues(bytes: Uint8Array): {
  module: DicomPixelModule;
  values: Float64Array;
} {
  const dataSet = parse(bytes);
  const module = readPixelModule(dataSet);
  if (module.samplesPerPixel !== 1) {
    throw new ImagingError("ERR_IMAGE_UNSUPPORTED", "modality values exist for monochrome images only");
  }
  return { module, values: modalityValues(framePlanes(dataSet, module)[0] as Float64Array, module) };
}

function framePlanes(dataSet: dicomParser.DataSet, module: DicomPixelModule): Float64Array[] {
  return module.transferSyntax === transferSyntaxes.jpegBaseline
    ? jpegPlanes(encapsulatedFrame(dataSet, module), module)
    : module.transferSyntax === transferSyntaxes.rleLossless
      ? rlePlanes(encapsulatedFrame(dataSet, module), module)
      : nativePlanes(dataSet, module);
}

/** The VOI LUT function (PS3.3 C.11.2.1.2) to 0..255; the full value range when no window is given. */
export function applyWindow(
  values: Float64Array,
  module: Pick<DicomPixelModule, "window" | "voiFunction">,
): Float32Array {
  let window = module.window;
  if (window === undefined) {
    let low = Infinity;
    let high = -Infinity;
    for (const value of values) {
      low = Math.min(low, value);
      high = Math.max(high, value);
    }
    window = { center: (low + high + 1) / 2, width: Math.max(1, high - low + 1) };
  }
  const { center: c, width: w } = window;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = values[i] ?? 0;
    let y: number;
    if (module.voiFunction === "SIGMOID") {
      y = 255 / (1 + Math.exp((-4 * (x - c)) / w));
    } else if (module.voiFunction === "LINEAR_EXACT") {
      y = x <= c - w / 2 ? 0 : x > c + w / 2 ? 255 : ((x - c) / w + 0.5) * 255;
    } else {
      const w1 = Math.max(w - 1, 1e-9);
      y =
        x <= c - 0.5 - (w - 1) / 2 ? 0 : x > c - 0.5 + (w - 1) / 2 ? 255 : ((x - (c - 0.5)) / w1 + 0.5) * 255;
    }
    out[i] = y;
  }
  return out;
}

/**
 * Decodes the first frame of a DICOM Part 10 file to grayscale: stored values, then the modality LUT
 * (rescale slope and intercept), the VOI LUT (window centre and width, or the value range), and
 * MONOCHROME1 inversion. Colour images become ITU-R BT.601 luma.
 */
/** What a DICOM file's own header says of its patient (PS3.3 C.7.1.1 Patient Module), where it says it. */
export interface DicomPatient {
  /** Patient's Birth Date (0010,0030), as a FHIR date (YYYY-MM-DD). */
  readonly birthDate?: string;
  /** Patient's Sex (0010,0040): M, F or O. */
  readonly sex?: "M" | "F" | "O";
  /** Patient's Age (0010,1010) when the image was taken, in whole years. */
  readonly ageYears?: number;
}

/** A DICOM Age String (nnnD, nnnW, nnnM or nnnY) in whole years, or undefined. */
function ageStringYears(value: string): number | undefined {
  const match = /^(\d{3})([DWMY])$/.exec(value);
  if (match === null) {
    return undefined;
  }
  const count = Number(match[1]);
  const perYear = { D: 365.25, W: 52.18, M: 12, Y: 1 }[match[2] as "D" | "W" | "M" | "Y"];
  return Math.floor(count / perYear);
}

/**
 * The patient's birth date and sex from a DICOM file's header, for a check against the record it is filed in
 * (a wrong-patient image); absent, empty or malformed values are left out. The pixel data is not decoded.
 */
export function readDicomPatient(bytes: Uint8Array): DicomPatient {
  const dataSet = parse(bytes);
  const birthDate = /^(\d{4})(\d{2})(\d{2})$/.exec((dataSet.string("x00100030") ?? "").trim());
  const sex = (dataSet.string("x00100040") ?? "").trim().toUpperCase();
  const ageYears = ageStringYears((dataSet.string("x00101010") ?? "").trim().toUpperCase());
  return {
    ...(birthDate === null
      ? {}
      : { birthDate: `${birthDate[1] ?? ""}-${birthDate[2] ?? ""}-${birthDate[3] ?? ""}` }),
    ...(sex === "M" || sex === "F" || sex === "O" ? { sex } : {}),
    ...(ageYears === undefined ? {} : { ageYears }),
  };
}

export function decodeDicom(bytes: Uint8Array): GrayImage {
  const dataSet = parse(bytes);
  const module = readPixelModule(dataSet);
  const planes = framePlanes(dataSet, module);
  const source = `dicom ${module.photometric} ${module.bitsStored}-bit ts ${module.transferSyntax}`;
  const count = module.rows * module.columns;
  if (module.samplesPerPixel === 3 && planes.length === 1) {
    return { width: module.columns, height: module.rows, pixels: Float32Array.from(planes[0] ?? []), source };
  }
  if (module.samplesPerPixel === 3) {
    const [first, second, third] = planes as [Float64Array, Float64Array, Float64Array];
    const pixels = new Float32Array(count);
    const ybr =
      module.photometric.startsWith("YBR") && module.transferSyntax !== transferSyntaxes.jpegBaseline;
    for (let i = 0; i < count; i++) {
      // YBR_FULL's Y is already luma; RGB (and JPEG, decoded to RGB) is converted.
      pixels[i] = ybr
        ? (first[i] ?? 0)
        : 0.299 * (first[i] ?? 0) + 0.587 * (second[i] ?? 0) + 0.114 * (third[i] ?? 0);
    }
    return { width: module.columns, height: module.rows, pixels, source };
  }
  const values = modalityValues(planes[0] as Float64Array, module);
  const pixels = applyWindow(values, module);
  if (module.photometric === "MONOCHROME1") {
    for (let i = 0; i < pixels.length; i++) {
      pixels[i] = 255 - (pixels[i] ?? 0);
    }
  }
  return { width: module.columns, height: module.rows, pixels, source };
}
