/** Stable error codes of `@cloister/imaging`, documented in its README. */
export const imagingErrorCodes = [
  "ERR_IMAGE_UNSUPPORTED",
  "ERR_IMAGE_DECODE",
  "ERR_IMAGE_TOO_LARGE",
  "ERR_IMAGE_CONFIG",
] as const;

export type ImagingErrorCode = (typeof imagingErrorCodes)[number];

/** The one error type of this package; `code` is stable. Messages never contain pixel data or tag values. */
export class ImagingError extends Error {
  override readonly name = "ImagingError";
  readonly code: ImagingErrorCode;

  constructor(code: ImagingErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
