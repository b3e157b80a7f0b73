// The platform API's error table: code, HTTP status, FHIR issue type, message. At /fhir every error is an
// OperationOutcome; elsewhere it is application/problem+json. Messages never carry PHI.

export const platformErrors = {
  ERR_BAD_REQUEST: { status: 400, issue: "invalid", message: "the request is not acceptable" },
  ERR_INVALID_RESOURCE: { status: 400, issue: "invalid", message: "the resource does not validate" },
  ERR_UNAUTHENTICATED: { status: 401, issue: "login", message: "sign in first" },
  ERR_LOGIN_FAILED: { status: 401, issue: "security", message: "the email or password is wrong" },
  ERR_SESSION_ENDED: {
    status: 401,
    issue: "login",
    message:
      "the session was ended (the account was disabled or changed, or its password changed): sign in again",
  },
  ERR_ACCOUNT_DISABLED: {
    status: 403,
    issue: "security",
    message: "the account is disabled: ask your administrator",
  },
  ERR_PASSWORD_CHANGE_REQUIRED: {
    status: 403,
    issue: "security",
    message: "an administrator set this password: sign in with a new one (newPassword)",
  },
  ERR_PASSWORD_POLICY: {
    status: 400,
    issue: "invalid",
    message:
      "a password has 12 to 1024 characters, is neither the email nor the current password, and is not easy to guess",
  },
  ERR_FORBIDDEN: { status: 403, issue: "forbidden", message: "your role may not do this" },
  ERR_NOT_FOUND: { status: 404, issue: "not-found", message: "no such resource" },
  ERR_GONE: { status: 410, issue: "deleted", message: "the resource was deleted" },
  ERR_VERSION_CONFLICT: { status: 409, issue: "conflict", message: "the resource changed since you read it" },
  ERR_DUPLICATE: { status: 409, issue: "duplicate", message: "a resource with this identifier exists" },
  ERR_LAST_ADMIN: {
    status: 409,
    issue: "business-rule",
    message: "the tenant's last active admin keeps that role and stays active",
  },
  ERR_ACCOUNTS_EXTERNAL: {
    status: 409,
    issue: "not-supported",
    message: "staff accounts are managed by the identity provider (OpenID Connect), not here",
  },
  ERR_REPORT_STATE: {
    status: 409,
    issue: "business-rule",
    message: "the report cannot be reviewed: it is cancelled or withdrawn",
  },
  ERR_ORDER_STATE: {
    status: 409,
    issue: "business-rule",
    message: "the order is completed, cancelled or withdrawn: it can no longer be changed",
  },
  ERR_ORDER_CHANGE: {
    status: 422,
    issue: "business-rule",
    message: "staff change an order only by cancelling it (status revoked), with an optional note",
  },
  ERR_IMAGE_PATIENT: {
    status: 422,
    issue: "business-rule",
    message: "the image was uploaded for another patient: it is not ordered for this one",
  },
  ERR_IMAGE_PATIENT_MISMATCH: {
    status: 422,
    issue: "business-rule",
    message:
      "the DICOM image's own header names another birth date or sex than this patient's record: check that the image is theirs, or correct the record",
  },
  ERR_IMMUTABLE: {
    status: 405,
    issue: "not-supported",
    message: "an image (Binary) is never changed once stored: upload a new one and order again",
  },
  ERR_PRECONDITION: { status: 412, issue: "conflict", message: "If-Match does not name the current version" },
  ERR_PRECONDITION_REQUIRED: {
    status: 428,
    issue: "business-rule",
    message: "this change needs If-Match with the version you read",
  },
  ERR_REQUEST_STALE: {
    status: 400,
    issue: "invalid",
    message: "the encapsulated request's Date is missing, too old or in the future",
  },
  ERR_PAYLOAD_TOO_LARGE: { status: 413, issue: "too-long", message: "the request is larger than allowed" },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, issue: "not-supported", message: "send application/fhir+json" },
  ERR_LOCKED: {
    status: 423,
    issue: "security",
    message: "the account is locked for a while after failed sign-ins",
  },
  ERR_RATE_LIMITED: { status: 429, issue: "throttled", message: "too many attempts; retry later" },
  ERR_NOT_READY: {
    status: 503,
    issue: "transient",
    message: "the platform is not ready (attestation or keys)",
  },
  ERR_OVERLOADED: {
    status: 503,
    issue: "transient",
    message: "the platform is at capacity; retry after Retry-After seconds",
  },
  ERR_KEY_UNAVAILABLE: {
    status: 503,
    issue: "transient",
    message: "the record is sealed under a data key version this server does not hold yet; retry shortly",
  },
  ERR_STORAGE_FULL: {
    status: 507,
    issue: "exception",
    message: "the record store is out of space; nothing was written",
  },
  ERR_STORAGE: { status: 500, issue: "exception", message: "the record store failed" },
  ERR_INTERNAL: { status: 500, issue: "exception", message: "the request could not be handled" },
} as const;

export type PlatformErrorCode = keyof typeof platformErrors;

/** The one error type of the platform API; `code` is stable, `status` follows the table. */
export class PlatformError extends Error {
  override readonly name = "PlatformError";
  readonly code: PlatformErrorCode;
  readonly status: number;
  /** FHIRPath of the offending element, for OperationOutcome.issue.expression. */
  readonly expression: string | undefined;

  constructor(code: PlatformErrorCode, message?: string, options?: { cause?: unknown; expression?: string }) {
    super(message ?? platformErrors[code].message, options);
    this.code = code;
    this.status = platformErrors[code].status;
    this.expression = options?.expression;
  }
}
