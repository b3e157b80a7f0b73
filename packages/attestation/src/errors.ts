/**
 * Stable error codes of `@cloister/attestation`. Each is documented in the package README's error table,
 * and a test keeps that table and this list in step.
 */
export const attestationErrorCodes = [
  "ERR_QUOTE_FORMAT",
  "ERR_QUOTE_UNSUPPORTED",
  "ERR_QUOTE_SIGNATURE",
  "ERR_QE_REPORT_SIGNATURE",
  "ERR_QE_BINDING",
  "ERR_QE_IDENTITY_MISMATCH",
  "ERR_CERT_FORMAT",
  "ERR_CERT_CHAIN",
  "ERR_CERT_EXPIRED",
  "ERR_CERT_REVOKED",
  "ERR_CRL_INVALID",
  "ERR_COLLATERAL_MISSING",
  "ERR_COLLATERAL_FORMAT",
  "ERR_COLLATERAL_SIGNATURE",
  "ERR_COLLATERAL_EXPIRED",
  "ERR_COLLATERAL_MISMATCH",
  "ERR_TCB_NO_MATCH",
  "ERR_TCB_REVOKED",
  "ERR_SNP_FORMAT",
  "ERR_SNP_SIGNATURE",
  "ERR_SNP_TCB_MISMATCH",
  "ERR_RUNTIME_DATA_BINDING",
  "ERR_POLICY_SYNTAX",
  "ERR_POLICY_DENIED",
  "ERR_TOKEN_INVALID",
  "ERR_TOKEN_SIGNATURE",
  "ERR_TOKEN_EXPIRED",
  "ERR_TOKEN_CLAIM",
  "ERR_TOKEN_KEY_UNKNOWN",
  "ERR_SIM_PLATFORM",
] as const;

export type AttestationErrorCode = (typeof attestationErrorCodes)[number];

/**
 * The one error type of this package. `code` is stable and safe to switch on; `message` says what failed,
 * and never contains key material or evidence bytes beyond identifiers such as FMSPC or a measurement.
 *
 * @example
 * ```ts
 * try {
 *   verifyQuote(quote, { collateral, now });
 * } catch (err) {
 *   if (err instanceof AttestationError && err.code === "ERR_COLLATERAL_EXPIRED") refreshCollateral();
 * }
 * ```
 */
export class AttestationError extends Error {
  override readonly name = "AttestationError";
  readonly code: AttestationErrorCode;

  constructor(code: AttestationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Runs `action`; anything it throws that is not an AttestationError becomes one with `code`. Our parsers
 * raise AttestationError themselves: this is the net that keeps the "only AttestationError" promise even
 * for a defect, with the original error kept as `cause`.
 */
export function guard<T>(code: AttestationErrorCode, message: string, action: () => T): T {
  try {
    return action();
  } catch (error) {
    if (error instanceof AttestationError) {
      throw error;
    }
    throw new AttestationError(code, message, { cause: error });
  }
}

/** {@link guard} for async actions. */
export async function guardAsync<T>(
  code: AttestationErrorCode,
  message: string,
  action: () => Promise<T>,
): Promise<T> {
  try {
    return await action();
  } catch (error) {
    if (error instanceof AttestationError) {
      throw error;
    }
    throw new AttestationError(code, message, { cause: error });
  }
}
