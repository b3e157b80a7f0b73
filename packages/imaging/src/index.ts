export { ImagingError, imagingErrorCodes, type ImagingErrorCode } from "./errors.js";
export { maxPixels, rgbaToGray, type GrayImage } from "./image.js";
export { decodeImage, grayImageFromBytes, imageContentTypes, type ImageContentType } from "./decode.js";
export { decodePng, isPng } from "./png.js";
export { decodeJpeg, isJpeg } from "./jpeg.js";
export {
  applyWindow,
  decodeDicom,
  decodeDicomModalityValues,
  isDicom,
  readDicomPatient,
  readPixelModule,
  transferSyntaxes,
  type DicomPatient,
  type DicomPixelModule,
} from "./dicom.js";
export { parsePreprocessing, preprocess, type Preprocessing } from "./preprocess.js";
export { encodeDicom, type DicomImageInit } from "./dicom-writer.js";
export { parseNpy, readMedMnistSplit, readNpz, type MedMnistSplit, type NpyArray } from "./npz.js";
export {
  ageInYears,
  completeFromImage,
  describeIntendedPatients,
  fitsIntendedPatients,
  imageContradictsRecord,
  parseIntendedPatients,
  type ImagePatient,
  type IntendedPatients,
  type PatientFacts,
  type PatientFit,
} from "./intended-use.js";
