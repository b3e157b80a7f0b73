/** Stable error codes of `@cloister/ohttp`, documented in its README. */
export const ohttpErrorCodes = [
  "ERR_OHTTP_KEY_CONFIG",
  "ERR_OHTTP_UNSUPPORTED_SUITE",
  "ERR_OHTTP_UNKNOWN_KEY",
  "ERR_OHTTP_MALFORMED",
  "ERR_OHTTP_DECRYPT",
  "ERR_OHTTP_REPLAY",
  "ERR_BHTTP_MALFORMED",
] as const;

export type OhttpErrorCode = (typeof ohttpErrorCodes)[number];

/** The one error type of this package; `code` is stable. */
export class OhttpError extends Error {
  override readonly name = "OhttpError";
  readonly code: OhttpErrorCode;

  constructor(code: OhttpErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
