/** Stable error codes of `@cloister/enclave`, documented in its README. Browser-safe. */
export const enclaveErrorCodes = [
  "ERR_PROVIDER_UNAVAILABLE",
  "ERR_PROVIDER_IO",
  "ERR_PROVIDER_RACE",
  "ERR_SEALING_UNAVAILABLE",
  "ERR_MEASUREMENT",
  "ERR_ATTESTATION_SERVICE",
  "ERR_UNREACHABLE",
  "ERR_KEY_RELEASE",
  "ERR_KEY_NOT_FOUND",
  "ERR_KEY_BROKER_IDENTITY",
  "ERR_PEER_TOKEN",
  "ERR_PEER_TEE",
  "ERR_PEER_MEASUREMENT",
  "ERR_PEER_DEBUG",
  "ERR_PEER_SIMULATION",
  "ERR_PEER_KEY_BINDING",
  "ERR_PEER_RESPONSE",
  "ERR_RECOVERY",
  "ERR_APPROVAL",
] as const;

export type EnclaveErrorCode = (typeof enclaveErrorCodes)[number];

/** The one error type of this package; `code` is stable. */
export class EnclaveError extends Error {
  override readonly name = "EnclaveError";
  readonly code: EnclaveErrorCode;

  constructor(code: EnclaveErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
