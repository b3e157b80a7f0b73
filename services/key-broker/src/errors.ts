// The key broker's error table: `{error:{code,message}}` with the status below.
export const brokerErrors = {
  ERR_BAD_REQUEST: { status: 400, description: "The request body, key name or release policy is malformed." },
  ERR_UNAUTHORIZED: { status: 401, description: "The admin API needs the configured bearer token." },
  ERR_TOKEN_INVALID: {
    status: 401,
    description: "The attestation token does not verify (code in the message).",
  },
  ERR_AUTHORITY_UNKNOWN: {
    status: 403,
    description: "The token's issuer is not an authority of the key's release policy.",
  },
  ERR_POLICY_DENIED: {
    status: 403,
    description: "The token's claims do not satisfy the key's release policy.",
  },
  ERR_NO_RUNTIME_KEY: {
    status: 400,
    description: "The token binds no runtime encryption key (x-ms-runtime.keys).",
  },
  ERR_NOT_FOUND: { status: 404, description: "No key of that name, or no version of that number." },
  ERR_CONFLICT: {
    status: 409,
    description:
      "A key of that name exists already (never overwritten), or the newest version was to be destroyed.",
  },
  ERR_APPROVAL_REQUIRED: {
    status: 403,
    description:
      "The change (a key's creation, a release policy, a version's destruction) lacks valid approvals from the quorum of policy approvers (Cloister-Approvals header).",
  },
  ERR_RECOVERY_INVALID: {
    status: 400,
    description:
      "A recovery backup or share is malformed, belongs to another backup, or does not open with this broker's exchange key.",
  },
  ERR_RECOVERY_STATE: {
    status: 409,
    description:
      "Recovery is not configured (no custodians), a restore needs an empty store, or no restore is in progress.",
  },
  ERR_OVERLOADED: {
    status: 503,
    description: "The broker is overloaded (event-loop delay over its limit); retry after Retry-After.",
  },
  ERR_AUTHORITY_UNREACHABLE: { status: 502, description: "The authority's key set could not be fetched." },
  ERR_NOT_ATTESTED: {
    status: 503,
    description: "This broker has no attestation token (only tests run it so); workloads refuse it.",
  },
  ERR_INTERNAL: {
    status: 500,
    description: "An unexpected failure; details are in the broker's log, never in the response.",
  },
} as const;

export type BrokerErrorCode = keyof typeof brokerErrors;

export class BrokerError extends Error {
  override readonly name = "BrokerError";
  readonly code: BrokerErrorCode;
  readonly status: number;

  constructor(code: BrokerErrorCode, message: string) {
    super(message);
    this.code = code;
    this.status = brokerErrors[code].status;
  }
}
