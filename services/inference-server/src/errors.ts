// The inference server's error table: code, HTTP status, message. Inside OHTTP, errors are Open Inference
// Protocol bodies `{error, code}`; at the gateway (outside), `application/problem+json`.

export const inferenceErrors = {
  ERR_BAD_REQUEST: { status: 400, message: "the request is not a valid Open Inference Protocol request" },
  ERR_REQUEST_STALE: { status: 400, message: "the request's Date is missing or outside the replay window" },
  ERR_CALLER_UNAUTHENTICATED: { status: 401, message: "the request carries no caller attestation token" },
  ERR_CALLER_FORBIDDEN: {
    status: 403,
    message: "the caller's attestation does not satisfy the caller policy",
  },
  ERR_NOT_FOUND: { status: 404, message: "no such route" },
  ERR_MODEL_NOT_FOUND: { status: 404, message: "no such model or version" },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: `the gateway takes message/ohttp-req bodies` },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, message: "the request is larger than the configured limit" },
  ERR_IMAGE_UNSUPPORTED: { status: 415, message: "the image format or encoding is not supported" },
  ERR_IMAGE_DECODE: { status: 422, message: "the image could not be decoded" },
  ERR_IMAGE_TOO_LARGE: { status: 413, message: "the image is too large" },
  ERR_GATEWAY: { status: 400, message: "the encapsulated request could not be opened" },
  ERR_OVERLOADED: { status: 503, message: "the server is at capacity; retry later" },
  ERR_INFERENCE: { status: 500, message: "the model failed to run" },
  ERR_INTERNAL: { status: 500, message: "the request could not be handled" },
  ERR_MODEL_REPOSITORY: { status: 500, message: "the model repository is invalid" },
  ERR_MODEL_INTEGRITY: { status: 500, message: "a model does not match its recorded SHA-256" },
} as const;

export type InferenceErrorCode = keyof typeof inferenceErrors;

/** The one error type of the inference server; `code` is stable, `status` follows the table. */
export class InferenceError extends Error {
  override readonly name = "InferenceError";
  readonly code: InferenceErrorCode;
  readonly status: number;

  constructor(code: InferenceErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? inferenceErrors[code].message, options);
    this.code = code;
    this.status = inferenceErrors[code].status;
  }
}
