// Reads NumPy .npz archives (a ZIP of .npy arrays, NEP 1) of unsigned 8-bit arrays: the MedMNIST format.
import { readFileSync } from "node:fs";
import { inflateRawSync } from "node:zlib";
import { ImagingError } from "./errors.js";

export interface NpyArray {
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

function fail(message: string): never {
  throw new ImagingError("ERR_IMAGE_DECODE", `npz: ${message}`);
}

/** Parses one .npy file (format versions 1 to 3) holding uint8 data in C order. */
export function parseNpy(bytes: Buffer): NpyArray {
  if (bytes.length < 10 || bytes.toString("latin1", 0, 6) !== "\x93NUMPY") {
    fail("not a .npy array");
  }
  const major = bytes[6] ?? 0;
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const headerStart = major === 1 ? 10 : 12;
  const header = bytes.toString("latin1", headerStart, headerStart + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if ((descr !== "|u1" && descr !== "<u1") || fortran !== "False" || shapeText === undefined) {
    fail(`only C-ordered uint8 arrays are supported (got ${descr ?? "?"})`);
  }
  const shape = shapeText
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => Number.parseInt(part, 10));
  const count = shape.reduce((product, d) => product * d, 1);
  const data = bytes.subarray(headerStart + headerLength);
  if (data.length !== count) {
    fail("the array data does not match its shape");
  }
  return { shape, data: new Uint8Array(data) };
}

/** Reads every array of an .npz file (stored or deflated members; no ZIP64). */
export function readNpz(path: string): Map<string, NpyArray> {
  const zip = readFileSync(path);
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (end < 0 || end + 22 > zip.length) {
    fail("no ZIP end of central directory");
  }
  const entries = zip.readUInt16LE(end + 10);
  let offset = zip.readUInt32LE(end + 16);
  const arrays = new Map<string, NpyArray>();
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(offset) !== 0x02014b50) {
      fail("corrupt central directory");
    }
    const method = zip.readUInt16LE(offset + 10);
    const compressedSize = zip.readUInt32LE(offset + 20);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extraLength = zip.readUInt16LE(offset + 30);
    const commentLength = zip.readUInt16LE(offset + 32);
    const localOffset = zip.readUInt32LE(offset + 42);
    const name = zip.toString("utf8", offset + 46, offset + 46 + nameLength);
    if (compressedSize === 0xffffffff || localOffset === 0xffffffff) {
      fail("ZIP64 archives are not supported");
    }
    const localNameLength = zip.readUInt16LE(localOffset + 26);
    const localExtraLength = zip.readUInt16LE(localOffset + 28);
    const start = localOffset + 30 + localNameLength + localExtraLength;
    const raw = zip.subarray(start, start + compressedSize);
    const member =
      method === 0 ? raw : method === 8 ? inflateRawSync(raw) : fail(`compression method ${method}`);
    arrays.set(name.replace(/\.npy$/, ""), parseNpy(member));
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return arrays;
}

/** A MedMNIST split: N images of H×W uint8 and N labels. */
export interface MedMnistSplit {
  readonly count: number;
  readonly height: number;
  readonly width: number;
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
}

export function readMedMnistSplit(path: string, split: string): MedMnistSplit {
  const arrays = readNpz(path);
  const images = arrays.get(`${split}_images`);
  const labels = arrays.get(`${split}_labels`);
  if (images === undefined || labels === undefined) {
    throw new ImagingError("ERR_IMAGE_DECODE", `npz: ${path} has no ${split}_images and ${split}_labels`);
  }
  const [count = 0, height = 0, width = 0] = images.shape;
  if (images.shape.length !== 3 || labels.data.length !== count) {
    fail(`${split} must be N×H×W grayscale images with N labels`);
  }
  return { count, height, width, images: images.data, labels: labels.data };
}
