#!/usr/bin/python3
"""Independent reference for the DICOM decoder tests: pydicom's reading of a file's first frame.

Prints JSON: rows, columns, photometric, and either the modality-LUT values (monochrome) or the BT.601
luma of the RGB pixels (colour). Run with Debian's python3 (python3-pydicom, python3-pil, python3-numpy).
"""
import json
import sys

import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut, convert_color_space

ds = pydicom.dcmread(sys.argv[1])
pixels = ds.pixel_array
if int(ds.get("NumberOfFrames", 1)) > 1:
    pixels = pixels[0]
photometric = ds.PhotometricInterpretation
out = {"rows": int(ds.Rows), "columns": int(ds.Columns), "photometric": photometric}
if ds.SamplesPerPixel == 1:
    out["values"] = apply_modality_lut(pixels, ds).astype(np.float64).ravel().tolist()
else:
    if photometric.startswith("YBR"):
        pixels = convert_color_space(pixels, photometric, "RGB")
    rgb = pixels.astype(np.float64)
    out["luma"] = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).ravel().tolist()
json.dump(out, sys.stdout)
