// The service's error table: every failure answers `{error:{code,message}}` with an `x-ms-error-code`
// header (as MAA does). Evidence failures carry @cloister/attestation's code with status 400.
export const serviceErrors = {
  ERR_BAD_REQUEST: { status: 400, description: "The request body or path is malformed." },
  ERR_EVIDENCE_INVALID: {
    status: 400,
    description: "The evidence failed verification (the attestation code is in the message).",
  },
  ERR_RUNTIME_DATA_BINDING: {
    status: 400,
    description: "The evidence does not bind the runtime data (or init-time data).",
  },
  ERR_COLLATERAL_UNAVAILABLE: {
    status: 400,
    description: "No collateral is known for the quote's FMSPC and TEE type.",
  },
  ERR_COLLATERAL_EXPIRED: {
    status: 400,
    description: "The collateral for the quote has expired; refresh the collateral store.",
  },
  ERR_POLICY_DENIED: { status: 400, description: "The attestation policy did not permit the evidence." },
  ERR_UNAUTHORIZED: {
    status: 401,
    description: "Policy management needs a policy signed by a configured certificate.",
  },
  ERR_FORBIDDEN: {
    status: 403,
    description: "The policy envelope is unsigned, or signed by an unknown key, outside dev mode.",
  },
  ERR_POLICY_INVALID: {
    status: 400,
    description: "The policy text does not parse (line and column in the message).",
  },
  ERR_NOT_FOUND: { status: 404, description: "Unknown attestation type or route." },
  ERR_POLICY_DECLARED: {
    status: 409,
    description:
      "The attestation type's policy is set by configuration (CLOISTER_POLICIES_DIR); change it there, not by the API.",
  },
  ERR_OVERLOADED: {
    status: 503,
    description: "The service is overloaded (event-loop delay over its limit); retry after Retry-After.",
  },
  ERR_INTERNAL: {
    status: 500,
    description: "An unexpected failure; details are in the service log, never in the response.",
  },
} as const;

export type ServiceErrorCode = keyof typeof serviceErrors;

export class ServiceError extends Error {
  override readonly name = "ServiceError";
  readonly code: ServiceErrorCode;
  readonly status: number;
  /** The @cloister/attestation code behind an evidence failure. */
  readonly attestationCode: string | undefined;

  constructor(code: ServiceErrorCode, message: string, attestationCode?: string) {
    super(message);
    this.code = code;
    this.status = serviceErrors[code].status;
    this.attestationCode = attestationCode;
  }
}
