// Approvals of key broker changes by several people (a two-person rule). Who may obtain a key is its release
// policy; with the admin token alone, one insider could name a measurement of their own and have every key
// released to it, or destroy a key version and the data under it. A broker configured with policy approvers
// (public keys fixed in its measured configuration) and a quorum M accepts such a change only with M
// approvals from distinct approvers:
//
// - an approval is a compact JWS by one approver (ES256, ES384 or RS256; `kid` = the approver key's RFC 7638
//   thumbprint; `typ` = `cloister-key-approval+jwt`) over the change: the action, the key's name and either
//   the SHA-256 of the release policy in canonical JSON (RFC 8785: sorted members, no spaces) or the version
//   to destroy, with `iat` and `exp` (at most 7 days later);
// - the broker checks each approval against the change it is asked for, so an approval cannot be moved to
//   another key, policy or version, and ignores approvals for other changes.
import { createHash } from "node:crypto";
import {
  calculateJwkThumbprint,
  compactVerify,
  CompactSign,
  decodeProtectedHeader,
  importJWK,
  type JWK,
} from "jose";
import { EnclaveError } from "./errors.js";

export const keyApprovalType = "cloister-key-approval+jwt";

/** Longest an approval may be valid for. */
export const maxApprovalSeconds = 7 * 24 * 3600;

/** A change of the key broker that needs approvals. */
export type KeyChange =
  | { readonly action: "create" | "set-policy"; readonly key: string; readonly policy: unknown }
  | { readonly action: "destroy-version"; readonly key: string; readonly version: number };

/** RFC 8785 canonical JSON for the values policies hold (strings, finite numbers, booleans, null, arrays, objects). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new EnclaveError("ERR_APPROVAL", "canonical JSON has no NaN or Infinity");
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(",")}]`;
  }
  if (typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, member]) => member !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${members.map(([name, member]) => `${JSON.stringify(name)}:${canonicalJson(member)}`).join(",")}}`;
  }
  throw new EnclaveError("ERR_APPROVAL", `canonical JSON has no ${typeof value}`);
}

/** SHA-256 (base64url) of a release policy in canonical JSON: what an approval names. */
export function policyDigest(policy: unknown): string {
  return createHash("sha256").update(canonicalJson(policy)).digest("base64url");
}

interface ApprovalClaims {
  readonly act: KeyChange["action"];
  readonly key: string;
  readonly pol?: string;
  readonly ver?: number;
  readonly iat: number;
  readonly exp: number;
}

function claimsOf(change: KeyChange): Pick<ApprovalClaims, "act" | "key" | "pol" | "ver"> {
  return change.action === "destroy-version"
    ? { act: change.action, key: change.key, ver: change.version }
    : { act: change.action, key: change.key, pol: policyDigest(change.policy) };
}

/** An approver's identity: the RFC 7638 thumbprint of the public key. */
export function approverId(publicKey: JWK): Promise<string> {
  return calculateJwkThumbprint(publicKey, "sha256");
}

function algorithmFor(key: JWK): "ES256" | "ES384" | "RS256" {
  if (key.kty === "RSA") {
    return "RS256";
  }
  if (key.kty === "EC" && (key.crv === "P-256" || key.crv === "P-384")) {
    return key.crv === "P-256" ? "ES256" : "ES384";
  }
  throw new EnclaveError("ERR_APPROVAL", "an approver key is RSA, or EC on P-256 or P-384");
}

/** Signs one approver's approval of `change`, valid from `now` for `validSeconds` (at most 7 days). */
export async function approveKeyChange(
  change: KeyChange,
  approverPrivateKey: JWK,
  options: { readonly now?: Date; readonly validSeconds?: number } = {},
): Promise<string> {
  if (approverPrivateKey.d === undefined) {
    throw new EnclaveError("ERR_APPROVAL", "an approval is signed with the approver's private key");
  }
  const validSeconds = options.validSeconds ?? 24 * 3600;
  if (!Number.isInteger(validSeconds) || validSeconds < 60 || validSeconds > maxApprovalSeconds) {
    throw new EnclaveError("ERR_APPROVAL", "an approval is valid for 1 minute to 7 days");
  }
  const alg = algorithmFor(approverPrivateKey);
  const iat = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const claims: ApprovalClaims = { ...claimsOf(change), iat, exp: iat + validSeconds };
  return (
    new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
      // The thumbprint takes the public members only, so the private JWK gives the public key's id.
      .setProtectedHeader({ alg, kid: await approverId(approverPrivateKey), typ: keyApprovalType })
      .sign(await importJWK(approverPrivateKey, alg))
  );
}

export interface ApprovalCheck {
  /** The distinct approvers whose valid approval of this change was given. */
  readonly approvedBy: readonly string[];
  /** Why the other approvals given do not count (no secrets: for the error and the log). */
  readonly refused: readonly string[];
}

/**
 * Checks the approvals given for `change` against the configured approvers' public keys. Each approval counts
 * once per approver, and only if its signature verifies and it names exactly this change and is in date.
 */
export async function checkKeyChangeApprovals(
  change: KeyChange,
  approvals: readonly string[],
  approvers: readonly JWK[],
  now: Date,
): Promise<ApprovalCheck> {
  const byId = new Map<string, JWK>();
  for (const approver of approvers) {
    byId.set(await approverId(approver), approver);
  }
  const expected = claimsOf(change);
  const nowSeconds = Math.floor(now.getTime() / 1000);
  const approvedBy = new Set<string>();
  const refused: string[] = [];
  for (const [index, approval] of approvals.slice(0, 32).entries()) {
    const which = `approval ${index + 1}`;
    let kid: unknown;
    try {
      const header = decodeProtectedHeader(approval);
      kid = header.kid;
      if (header.typ !== keyApprovalType) {
        refused.push(`${which}: not a key approval`);
        continue;
      }
    } catch {
      refused.push(`${which}: not a JWS`);
      continue;
    }
    const approver = typeof kid === "string" ? byId.get(kid) : undefined;
    if (approver === undefined) {
      refused.push(`${which}: not by a configured approver`);
      continue;
    }
    let claims: ApprovalClaims;
    try {
      const alg = algorithmFor(approver);
      const { payload } = await compactVerify(approval, await importJWK(approver, alg), {
        algorithms: [alg],
      });
      claims = JSON.parse(new TextDecoder().decode(payload)) as ApprovalClaims;
    } catch {
      refused.push(`${which}: the signature does not verify`);
      continue;
    }
    if (
      claims.act !== expected.act ||
      claims.key !== expected.key ||
      claims.pol !== expected.pol ||
      claims.ver !== expected.ver
    ) {
      refused.push(`${which}: approves another change`);
      continue;
    }
    if (
      typeof claims.iat !== "number" ||
      typeof claims.exp !== "number" ||
      claims.exp - claims.iat > maxApprovalSeconds ||
      claims.iat > nowSeconds + 300 ||
      claims.exp <= nowSeconds
    ) {
      refused.push(`${which}: not in date`);
      continue;
    }
    approvedBy.add(kid as string);
  }
  return { approvedBy: [...approvedBy], refused };
}
