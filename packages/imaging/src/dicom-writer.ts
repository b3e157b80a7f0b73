// A minimal DICOM Part 10 writer (explicit VR little endian, one monochrome frame). The platform never
// writes DICOM for patients; this exists so tests and benchmarks can make real files with chosen tags.
import { randomBytes } from "node:crypto";

export interface DicomImageInit {
  readonly rows: number;
  readonly columns: number;
  /** Stored values, row-major: 8-bit or 16-bit unsigned. */
  readonly pixels: Uint8Array | Uint16Array;
  readonly bitsStored?: number;
  readonly photometric?: "MONOCHROME1" | "MONOCHROME2";
  readonly window?: { readonly center: number; readonly width: number };
  readonly rescale?: { readonly slope: number; readonly intercept: number };
  readonly modality?: string;
  readonly patientName?: string;
  readonly patientId?: string;
  /** DICOM DA: YYYYMMDD. */
  readonly patientBirthDate?: string;
  readonly patientSex?: "M" | "F" | "O";
  /** DICOM AS: nnnD, nnnW, nnnM or nnnY. */
  readonly patientAge?: string;
}

function uid(): string {
  // A UUID-derived OID under 2.25 (PS3.5 §B.2).
  return `2.25.${BigInt(`0x${randomBytes(16).toString("hex")}`).toString(10)}`;
}

const longLengthVrs = new Set(["OB", "OW", "SQ", "UN", "UT"]);

function element(group: number, elementNumber: number, vr: string, value: Buffer): Buffer {
  const padded =
    value.length % 2 === 0
      ? value
      : Buffer.concat([value, Buffer.from([vr === "UI" || vr === "OB" ? 0 : 0x20])]);
  const long = longLengthVrs.has(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(group, 0);
  header.writeUInt16LE(elementNumber, 2);
  header.write(vr, 4, "latin1");
  if (long) {
    header.writeUInt32LE(padded.length, 8);
  } else {
    header.writeUInt16LE(padded.length, 6);
  }
  return Buffer.concat([header, padded]);
}

const text = (value: string): Buffer => Buffer.from(value, "latin1");
const us = (value: number): Buffer => {
  const out = Buffer.alloc(2);
  out.writeUInt16LE(value);
  return out;
};

/** Writes a Part 10 file (Digital X-Ray or Secondary Capture) around one frame. */
export function encodeDicom(init: DicomImageInit): Uint8Array {
  const bitsAllocated = init.pixels instanceof Uint16Array ? 16 : 8;
  const bitsStored = init.bitsStored ?? bitsAllocated;
  const sopClass = init.modality === "DX" ? "1.2.840.10008.5.1.4.1.1.1.1" : "1.2.840.10008.5.1.4.1.1.7";
  const instance = uid();
  const transferSyntax = "1.2.840.10008.1.2.1";
  const metaElements = [
    element(0x0002, 0x0001, "OB", Buffer.from([0, 1])),
    element(0x0002, 0x0002, "UI", text(sopClass)),
    element(0x0002, 0x0003, "UI", text(instance)),
    element(0x0002, 0x0010, "UI", text(transferSyntax)),
    element(0x0002, 0x0012, "UI", text("2.25.1234567890")),
  ];
  const metaLength = Buffer.alloc(4);
  metaLength.writeUInt32LE(metaElements.reduce((sum, part) => sum + part.length, 0));
  const pixelBytes = Buffer.from(init.pixels.buffer, init.pixels.byteOffset, init.pixels.byteLength);
  const dataset = [
    element(0x0008, 0x0016, "UI", text(sopClass)),
    element(0x0008, 0x0018, "UI", text(instance)),
    element(0x0008, 0x0060, "CS", text(init.modality ?? "OT")),
    ...(init.patientName === undefined ? [] : [element(0x0010, 0x0010, "PN", text(init.patientName))]),
    ...(init.patientId === undefined ? [] : [element(0x0010, 0x0020, "LO", text(init.patientId))]),
    ...(init.patientBirthDate === undefined
      ? []
      : [element(0x0010, 0x0030, "DA", text(init.patientBirthDate))]),
    ...(init.patientSex === undefined ? [] : [element(0x0010, 0x0040, "CS", text(init.patientSex))]),
    ...(init.patientAge === undefined ? [] : [element(0x0010, 0x1010, "AS", text(init.patientAge))]),
    element(0x0028, 0x0002, "US", us(1)),
    element(0x0028, 0x0004, "CS", text(init.photometric ?? "MONOCHROME2")),
    element(0x0028, 0x0010, "US", us(init.rows)),
    element(0x0028, 0x0011, "US", us(init.columns)),
    element(0x0028, 0x0100, "US", us(bitsAllocated)),
    element(0x0028, 0x0101, "US", us(bitsStored)),
    element(0x0028, 0x0102, "US", us(bitsStored - 1)),
    element(0x0028, 0x0103, "US", us(0)),
    ...(init.window === undefined
      ? []
      : [
          element(0x0028, 0x1050, "DS", text(String(init.window.center))),
          element(0x0028, 0x1051, "DS", text(String(init.window.width))),
        ]),
    ...(init.rescale === undefined
      ? []
      : [
          element(0x0028, 0x1052, "DS", text(String(init.rescale.intercept))),
          element(0x0028, 0x1053, "DS", text(String(init.rescale.slope))),
        ]),
    element(0x7fe0, 0x0010, bitsAllocated === 16 ? "OW" : "OB", pixelBytes),
  ];
  return new Uint8Array(
    Buffer.concat([
      Buffer.alloc(128),
      text("DICM"),
      element(0x0002, 0x0000, "UL", metaLength),
      ...metaElements,
      ...dataset,
    ]),
  );
}
