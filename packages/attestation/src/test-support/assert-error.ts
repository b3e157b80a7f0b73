import assert from "node:assert/strict";
import { AttestationError, type AttestationErrorCode } from "../errors.js";

/** Asserts that `action` throws an AttestationError with `code`, or one of `code` (sync or async). */
export async function assertAttestationError(
  action: () => unknown,
  code: AttestationErrorCode | readonly AttestationErrorCode[],
  message?: RegExp,
): Promise<AttestationError> {
  const codes: readonly AttestationErrorCode[] = typeof code === "string" ? [code] : code;
  let thrown: unknown;
  try {
    await action();
  } catch (error) {
    thrown = error;
  }
  assert.ok(
    thrown instanceof AttestationError,
    `expected AttestationError ${codes.join("|")}, got ${String(thrown)}`,
  );
  assert.ok(
    codes.includes(thrown.code),
    `expected ${codes.join("|")}, got ${thrown.code}: ${thrown.message}`,
  );
  if (message !== undefined) {
    assert.match(thrown.message, message);
  }
  return thrown;
}
