// A DICOM image's preview, rendered in the browser with the same decoder the inference server uses
// (@cloister/imaging: transfer syntaxes, rescale, VOI window, MONOCHROME1), into a canvas's PNG data URL.
import { decodeDicom } from "@cloister/imaging/dicom";

export function isDicomFile(file: File, bytes: Uint8Array): boolean {
  return (
    file.type === "application/dicom" ||
    /\.dcm$/i.test(file.name) ||
    (bytes.length > 132 && String.fromCharCode(...bytes.subarray(128, 132)) === "DICM")
  );
}

/** Renders the image (grey levels 0…255) to a data URL, at most 512 px on its longer side. */
export function dicomPreviewUrl(bytes: Uint8Array): { url: string; width: number; height: number } {
  const image = decodeDicom(bytes);
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  if (context === null) {
    throw new Error("no 2D canvas");
  }
  const pixels = context.createImageData(image.width, image.height);
  for (let i = 0; i < image.width * image.height; i++) {
    const grey = Math.max(0, Math.min(255, Math.round(image.pixels[i] ?? 0)));
    pixels.data[i * 4] = grey;
    pixels.data[i * 4 + 1] = grey;
    pixels.data[i * 4 + 2] = grey;
    pixels.data[i * 4 + 3] = 255;
  }
  context.putImageData(pixels, 0, 0);
  return { url: canvas.toDataURL("image/png"), width: image.width, height: image.height };
}
