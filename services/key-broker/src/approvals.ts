// The two-person rule at the key broker (@cloister/enclave key-approvals.ts): with policy approvers
// configured, creating a key, replacing its release policy and destroying a version each need approvals from
// a quorum of them, sent in the `Cloister-Approvals` header (compact JWS, comma-separated), besides the admin
// token. Without approvers the admin token alone suffices, and the broker says so in its log at start.
import { checkKeyChangeApprovals, type KeyChange } from "@cloister/enclave";
import type { FastifyRequest } from "fastify";
import type { JWK } from "jose";
import { BrokerError } from "./errors.js";
import { publicKeySetFromFile, quorumFromEnv } from "./public-key-sets.js";

export interface ApprovalConfig {
  /** The approvers' public keys (RSA, or EC P-256 / P-384), fixed in the measured configuration. */
  readonly approvers: readonly JWK[];
  /** Distinct approvers needed per change. */
  readonly quorum: number;
}

/** Reads CLOISTER_POLICY_APPROVERS_FILE (a JWK Set of public keys) and CLOISTER_POLICY_APPROVAL_QUORUM. */
export function approvalConfigFromEnv(
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string,
): ApprovalConfig | undefined {
  const file = env.CLOISTER_POLICY_APPROVERS_FILE;
  if (file === undefined || file === "") {
    return undefined;
  }
  const approvers = publicKeySetFromFile(file, readFile, "approver", ["P-256", "P-384"]);
  const quorum = quorumFromEnv(
    env.CLOISTER_POLICY_APPROVAL_QUORUM,
    approvers.length,
    "CLOISTER_POLICY_APPROVAL_QUORUM",
  );
  return { approvers, quorum };
}

/** The approvals a request carries. */
export function approvalsOf(request: FastifyRequest): string[] {
  const header = request.headers["cloister-approvals"];
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  return text
    .split(",")
    .map((approval) => approval.trim())
    .filter((approval) => approval.length > 0);
}

/**
 * Refuses `change` unless a quorum of configured approvers approved exactly it; answers who did (for the
 * audit line). Without approvers configured, answers an empty list.
 */
export async function requireApprovals(
  config: ApprovalConfig | undefined,
  request: FastifyRequest,
  change: KeyChange,
  now: Date,
): Promise<readonly string[]> {
  if (config === undefined) {
    return [];
  }
  const { approvedBy, refused } = await checkKeyChangeApprovals(
    change,
    approvalsOf(request),
    config.approvers,
    now,
  );
  if (approvedBy.length < config.quorum) {
    request.log.warn(
      { audit: "key.approval-missing", key: change.key, action: change.action, approvedBy, refused },
      "a key change lacked its approvals",
    );
    throw new BrokerError(
      "ERR_APPROVAL_REQUIRED",
      `${change.action} of ${change.key} needs approvals from ${config.quorum} policy approvers; ` +
        `${approvedBy.length} valid${refused.length === 0 ? "" : ` (${refused.join("; ")})`}`,
    );
  }
  return approvedBy;
}
