import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import {
  applyWindow,
  decodeDicom,
  decodeDicomModalityValues,
  decodeImage,
  encodeDicom,
  grayImageFromBytes,
  ImagingError,
  parsePreprocessing,
  readMedMnistSplit,
  preprocess,
  readDicomPatient,
  type ImagingErrorCode,
} from "./index.js";

const run = promisify(execFile);
// Debian's python3-pydicom ships real test files; tests read them in place (never copied here).
const pydicomFiles = "/usr/lib/python3/dist-packages/pydicom/data/test_files";
const reference = new URL("../test-fixtures/dicom_reference.py", import.meta.url).pathname;
const haveReference = existsSync(pydicomFiles) && existsSync("/usr/bin/python3");
const skipReason = haveReference
  ? false
  : "python3-pydicom is not installed (apt-get install python3-pydicom python3-pil): the DICOM reference tests cannot run";
if (skipReason !== false) {
  console.warn(`SKIPPING: ${skipReason}`);
}

function rejects(run: () => unknown, code: ImagingErrorCode): void {
  assert.throws(run, (error: unknown) => error instanceof ImagingError && error.code === code);
}

async function pydicom(
  file: string,
): Promise<{ rows: number; columns: number; values?: number[]; luma?: number[] }> {
  const { stdout } = await run("/usr/bin/python3", [reference, join(pydicomFiles, file)], {
    maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout) as { rows: number; columns: number; values?: number[]; luma?: number[] };
}

function maxDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  }
  return max;
}

describe("DICOM against pydicom's reading of Debian's test files", { skip: skipReason }, () => {
  // Modality values (after rescale) must agree exactly for every lossless transfer syntax.
  for (const file of [
    "CT_small.dcm", // explicit VR little endian, signed 16-bit, rescale -1024
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_RLE.dcm",
    "image_dfl.dcm", // deflated
    "JPEG-lossy.dcm",
  ]) {
    it(`${file}: modality values match exactly`, async (t) => {
      const bytes = readFileSync(join(pydicomFiles, file));
      let ours;
      try {
        ours = decodeDicomModalityValues(bytes);
      } catch (error) {
        if (error instanceof ImagingError && error.code === "ERR_IMAGE_UNSUPPORTED") {
          // JPEG Extended (12-bit, process 2/4) is outside what we accept; it must say so, typed.
          assert.equal(file, "JPEG-lossy.dcm");
          t.diagnostic(error.message);
          return;
        }
        throw error;
      }
      const expected = await pydicom(file);
      assert.equal(ours.module.rows, expected.rows);
      assert.equal(ours.module.columns, expected.columns);
      assert.equal(maxDifference(ours.values, expected.values ?? []), 0);
    });
  }

  for (const [file, tolerance] of [
    ["SC_rgb_jpeg_dcmtk.dcm", 3], // JPEG Baseline, YBR_FULL
    ["SC_jpeg_no_color_transform.dcm", 3], // JPEG Baseline, RGB without colour transform
    ["SC_rgb_small_odd_jpeg.dcm", 3],
    ["SC_rgb_rle.dcm", 0.001], // float32 rounding only
    ["SC_ybr_full_422_uncompressed.dcm", 2], // Y vs luma of the clipped YBR→RGB conversion
  ] as const) {
    it(`${file}: luma matches within ${tolerance}`, async () => {
      const ours = decodeDicom(readFileSync(join(pydicomFiles, file)));
      const expected = await pydicom(file);
      assert.equal(ours.width, expected.columns);
      assert.ok(maxDifference(ours.pixels, expected.luma ?? []) <= tolerance);
    });
  }

  it("windows with the file's centre and width, and refuses what it cannot render with a typed error", () => {
    const mr = decodeDicom(readFileSync(join(pydicomFiles, "MR_small.dcm")));
    const { values } = decodeDicomModalityValues(readFileSync(join(pydicomFiles, "MR_small.dcm")));
    // Window 600/1600 (PS3.3 C.11.2.1.2.1): x ≤ -199.5 → 0, x > 1399.5 → 255, linear between.
    for (let i = 0; i < values.length; i++) {
      const x = values[i] ?? 0;
      const expected = x <= -199.5 ? 0 : x > 1399.5 ? 255 : ((x - 599.5) / 1599 + 0.5) * 255;
      assert.ok(Math.abs((mr.pixels[i] ?? 0) - expected) < 1e-3);
    }
    rejects(() => decodeDicom(readFileSync(join(pydicomFiles, "JPEG2000.dcm"))), "ERR_IMAGE_UNSUPPORTED");
    rejects(() => decodeDicom(readFileSync(join(pydicomFiles, "liver_1frame.dcm"))), "ERR_IMAGE_UNSUPPORTED");
    rejects(() => decodeDicom(readFileSync(join(pydicomFiles, "MR_truncated.dcm"))), "ERR_IMAGE_DECODE");
    rejects(() => decodeDicom(readFileSync(join(pydicomFiles, "rtplan.dcm"))), "ERR_IMAGE_DECODE");
    rejects(() => decodeDicom(readFileSync(join(pydicomFiles, "no_meta.dcm"))), "ERR_IMAGE_DECODE");
  });

  it("inverts MONOCHROME1 after windowing", () => {
    const bytes = new Uint8Array(readFileSync(join(pydicomFiles, "MR_small.dcm")));
    const normal = decodeDicom(bytes);
    const text = Buffer.from(bytes).toString("latin1");
    const at = text.indexOf("MONOCHROME2");
    assert.ok(at > 0);
    bytes[at + 10] = "1".charCodeAt(0);
    const inverted = decodeDicom(bytes);
    assert.ok(
      maxDifference(
        inverted.pixels,
        normal.pixels.map((v) => 255 - v),
      ) < 1e-4,
    );
  });

  it("survives every truncation and random corruption with an ImagingError", () => {
    const bytes = readFileSync(join(pydicomFiles, "CT_small.dcm"));
    for (let length = 0; length < bytes.length; length += 97) {
      try {
        decodeDicom(bytes.subarray(0, length));
      } catch (error) {
        assert.ok(error instanceof ImagingError, String(error));
      }
    }
    let seed = 7;
    for (let round = 0; round < 300; round++) {
      const copy = new Uint8Array(bytes);
      for (let k = 0; k < 8; k++) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        copy[132 + (seed % (copy.length - 132))] = seed & 0xff;
      }
      try {
        decodeDicom(copy);
      } catch (error) {
        assert.ok(error instanceof ImagingError, String(error));
      }
    }
  });
});

describe("PNG and JPEG", () => {
  const width = 40;
  const height = 30;
  const gray = new Uint8Array(width * height).map((_, i) => (i * 7) % 256);

  it("decodes PNG exactly and JPEG within compression error, to grayscale", () => {
    const png = new PNG({ width, height });
    gray.forEach((value, i) => {
      png.data.set([value, value, value, 255], i * 4);
    });
    const decoded = decodeImage("image/png", PNG.sync.write(png));
    assert.deepEqual([decoded.width, decoded.height], [width, height]);
    assert.ok(maxDifference(decoded.pixels, gray) < 0.01);

    const flat = new Uint8Array(width * height * 4).fill(128);
    const jpegImage = decodeImage("image/jpeg", jpeg.encode({ width, height, data: flat }, 95).data);
    assert.ok(maxDifference(jpegImage.pixels, new Float32Array(width * height).fill(128)) <= 2);
  });

  it("refuses mislabelled, corrupt and oversized images with typed errors", () => {
    const png = PNG.sync.write(new PNG({ width: 4, height: 4 }));
    rejects(() => decodeImage("image/jpeg", png), "ERR_IMAGE_DECODE");
    rejects(() => decodeImage("application/dicom", png), "ERR_IMAGE_DECODE");
    rejects(() => decodeImage("image/gif", png), "ERR_IMAGE_UNSUPPORTED");
    rejects(() => decodeImage("image/png", png.subarray(0, 40)), "ERR_IMAGE_DECODE");
    const huge = Buffer.from(png);
    huge.writeUInt32BE(100_000, 16);
    huge.writeUInt32BE(100_000, 20);
    rejects(() => decodeImage("image/png", huge), "ERR_IMAGE_TOO_LARGE");
    rejects(
      () => decodeImage("image/jpeg", Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2])),
      "ERR_IMAGE_DECODE",
    );
  });
});

describe("preprocessing", () => {
  const config = parsePreprocessing({
    colorSpace: "grayscale",
    width: 2,
    height: 2,
    crop: "center-square",
    resize: "area",
    scale: 1 / 255,
    mean: 0.5,
    std: 0.25,
  });

  it("area-averages, centre-crops and normalises", () => {
    // 6×4 image: the centre 4×4 square is columns 1..4; each output pixel averages a 2×2 block.
    const pixels = new Uint8Array(24).map((_, i) => (i % 6) * 40);
    const tensor = preprocess(grayImageFromBytes(6, 4, pixels), config);
    const normalise = (v: number): number => (v / 255 - 0.5) / 0.25;
    assert.deepEqual(
      Array.from(tensor).map((v) => v.toFixed(5)),
      [normalise(60), normalise(140), normalise(60), normalise(140)].map((v) => v.toFixed(5)),
    );
  });

  it("is the identity resize for images already at the model's size", () => {
    const pixels = new Uint8Array(4).map((_, i) => i * 50);
    const tensor = preprocess(grayImageFromBytes(2, 2, pixels), config);
    assert.deepEqual(
      Array.from(tensor).map((v) => v.toFixed(5)),
      Array.from(pixels).map((v) => ((v / 255 - 0.5) / 0.25).toFixed(5)),
    );
  });

  it("keeps a constant image constant at any scale (weights sum to one)", () => {
    const big = grayImageFromBytes(517, 389, new Uint8Array(517 * 389).fill(200));
    const tensor = preprocess(big, { ...config, width: 28, height: 28 });
    assert.ok(Array.from(tensor).every((v) => Math.abs(v - (200 / 255 - 0.5) / 0.25) < 1e-4));
  });

  it("rejects a bad configuration", () => {
    assert.throws(() => parsePreprocessing({ ...config, resize: "cubic" }), ImagingError);
    assert.throws(() => parsePreprocessing({ ...config, std: 0 }), ImagingError);
  });

  it("applies LINEAR_EXACT and SIGMOID VOI functions per PS3.3 C.11.2.1.3", () => {
    const values = Float64Array.from([0, 50, 100]);
    const exact = applyWindow(values, { window: { center: 50, width: 100 }, voiFunction: "LINEAR_EXACT" });
    assert.deepEqual(Array.from(exact), [0, 127.5, 255]);
    const sigmoid = applyWindow(values, { window: { center: 50, width: 100 }, voiFunction: "SIGMOID" });
    assert.ok(Math.abs((sigmoid[1] ?? 0) - 127.5) < 1e-4);
    assert.ok(Math.abs((sigmoid[2] ?? 0) - 255 / (1 + Math.exp(-2))) < 1e-3);
  });
});

describe("the test DICOM writer", () => {
  it("writes files that we and pydicom read identically, with window, rescale and MONOCHROME1", async (t) => {
    const pixels = new Uint16Array(64 * 48).map((_, i) => (i * 37) % 4096);
    const bytes = encodeDicom({
      rows: 48,
      columns: 64,
      pixels,
      bitsStored: 12,
      photometric: "MONOCHROME1",
      window: { center: 1500, width: 2000 },
      rescale: { slope: 2, intercept: -1000 },
      modality: "DX",
    });
    const { module, values } = decodeDicomModalityValues(bytes);
    assert.deepEqual(
      [module.rows, module.columns, module.bitsStored, module.photometric],
      [48, 64, 12, "MONOCHROME1"],
    );
    assert.deepEqual(Array.from(values.subarray(0, 3)), [-1000, -926, -852]);
    const image = decodeDicom(bytes);
    // MONOCHROME1: the lowest values are the brightest.
    assert.equal(image.pixels[0], 255);
    if (skipReason !== false) {
      t.skip(skipReason);
      return;
    }
    const file = join(mkdtempSync(join(tmpdir(), "cloister-dicom-")), "written.dcm");
    writeFileSync(file, bytes);
    const { stdout } = await run("/usr/bin/python3", [reference, file], { maxBuffer: 16 << 20 });
    const expected = JSON.parse(stdout) as { values: number[] };
    assert.equal(maxDifference(values, expected.values), 0);
  });
});

describe("a DICOM file's own patient", () => {
  const image = { rows: 2, columns: 2, pixels: new Uint8Array(4) };
  it("reads the header's birth date and sex, and leaves out what is absent or malformed", () => {
    assert.deepEqual(
      readDicomPatient(encodeDicom({ ...image, patientBirthDate: "19610412", patientSex: "F" })),
      {
        birthDate: "1961-04-12",
        sex: "F",
      },
    );
    assert.deepEqual(readDicomPatient(encodeDicom(image)), {});
    // Patient's Age (an Age String) when the image was taken, in whole years.
    for (const [age, years] of [
      ["045Y", 45],
      ["018M", 1],
      ["011M", 0],
      ["104W", 1],
      ["010D", 0],
    ] as const) {
      assert.deepEqual(
        readDicomPatient(encodeDicom({ ...image, patientAge: age })),
        { ageYears: years },
        age,
      );
    }
    assert.deepEqual(readDicomPatient(encodeDicom({ ...image, patientAge: "45Y" })), {}, "malformed");
    assert.deepEqual(readDicomPatient(encodeDicom({ ...image, patientBirthDate: "1961", patientSex: "O" })), {
      sex: "O",
    });
    assert.throws(
      () => readDicomPatient(new Uint8Array(200)),
      (error: unknown) => error instanceof ImagingError && error.code === "ERR_IMAGE_DECODE",
    );
  });
  it("reads Debian's real test files as pydicom does", { skip: skipReason }, async () => {
    const names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "waveform_ecg.dcm"];
    const script = `import json, pydicom
out = {}
for name in ${JSON.stringify(names)}:
    d = pydicom.dcmread("${pydicomFiles}/" + name, stop_before_pixels=True)
    b = str(d.get("PatientBirthDate", "") or "").strip()
    x = str(d.get("PatientSex", "") or "").strip().upper()
    a = str(d.get("PatientAge", "") or "").strip().upper()
    per = {"D": 365.25, "W": 52.18, "M": 12, "Y": 1}
    out[name] = {**({"birthDate": b[0:4] + "-" + b[4:6] + "-" + b[6:8]} if len(b) == 8 and b.isdigit() else {}),
                 **({"sex": x} if x in ("M", "F", "O") else {}),
                 **({"ageYears": int(int(a[0:3]) // per[a[3]])} if len(a) == 4 and a[0:3].isdigit() and a[3] in per else {})}
print(json.dumps(out))`;
    const { stdout } = await run("/usr/bin/python3", ["-c", script]);
    const expected = JSON.parse(stdout) as Record<string, unknown>;
    for (const name of names) {
      assert.deepEqual(
        readDicomPatient(new Uint8Array(readFileSync(join(pydicomFiles, name)))),
        expected[name],
        name,
      );
    }
    // One of them names a birth date (the ECG), the others only a sex.
    assert.ok(Object.values(expected).some((patient) => "birthDate" in (patient as object)));
  });
});

describe("MedMNIST .npz", () => {
  it("reads the PneumoniaMNIST validation split", () => {
    const path = new URL("../../../../shared/data/medmnist/pneumoniamnist_trainval.npz", import.meta.url)
      .pathname;
    const split = readMedMnistSplit(path, "val");
    assert.deepEqual([split.count, split.height, split.width], [524, 28, 28]);
    assert.equal(split.images.length, 524 * 28 * 28);
    // The README's class counts: 135 normal, 389 pneumonia.
    assert.equal(split.labels.filter((label) => label === 1).length, 389);
    assert.throws(() => readMedMnistSplit(path, "test"), ImagingError);
  });
});
