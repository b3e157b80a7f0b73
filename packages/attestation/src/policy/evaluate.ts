// Evaluation follows the claim rule semantics MAA inherits from AD FS: a rule fires once for every
// combination of incoming claims that satisfies its conditions; add() extends the incoming set,
// issue() extends the incoming and the outgoing sets. Authorization needs a permit() and no deny().
import { createHash } from "node:crypto";
import { AttestationError, guard } from "../errors.js";
import type { ClaimValue, Claims } from "../claims.js";
import {
  parsePolicy,
  type ClaimAction,
  type ClaimProperty,
  type Condition,
  type Expression,
  type Literal,
  type Policy,
  type Predicate,
  type Rule,
} from "./syntax.js";

/** Issuer of the claims the attestation service derives from evidence. */
export const evidenceIssuer = "AttestationService";
/** Issuer of the claims a policy adds or issues. */
export const policyIssuer = "AttestationPolicy";

export interface PolicyClaim {
  readonly type: string;
  readonly value: ClaimValue;
  readonly valueType: string;
  readonly issuer: string;
}

export interface PolicyResult {
  /** Claims issued by issuancerules, as they go into the token (top level and `x-ms-policy`). */
  readonly issuedClaims: Claims;
  /** Properties set by configurationrules. */
  readonly properties: Claims;
  /** `x-ms-policy-hash` of the policy text. */
  readonly policyHash: string;
}

function valueTypeOf(value: ClaimValue): string {
  if (typeof value === "boolean") {
    return "Boolean";
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? "Integer" : "Double";
  }
  if (typeof value === "string") {
    return "String";
  }
  return "Json";
}

export function toPolicyClaims(claims: Claims, issuer = evidenceIssuer): PolicyClaim[] {
  return Object.entries(claims).map(([type, value]) => ({
    type,
    value,
    valueType: valueTypeOf(value),
    issuer,
  }));
}

function compare(actual: ClaimValue, operator: Predicate["operator"], expected: Literal): boolean {
  if (operator === "==" || operator === "!=") {
    const equal =
      typeof actual === "string" && typeof expected === "string"
        ? actual.toLowerCase() === expected.toLowerCase() // MAA compares hex measurements case-insensitively
        : actual === expected;
    return operator === "==" ? equal : !equal;
  }
  if (typeof actual !== typeof expected || (typeof actual !== "number" && typeof actual !== "string")) {
    return false;
  }
  switch (operator) {
    case "<":
      return actual < expected;
    case "<=":
      return actual <= expected;
    case ">":
      return actual > expected;
    case ">=":
      return actual >= expected;
  }
}

function property(claim: PolicyClaim, name: ClaimProperty): ClaimValue {
  return claim[name];
}

function matches(claim: PolicyClaim, condition: Condition): boolean {
  return condition.predicates.every((predicate) =>
    compare(property(claim, predicate.property), predicate.operator, predicate.literal),
  );
}

/** Every assignment of claims to the rule's conditions that satisfies them all (cartesian, in order). */
function* bindingsFor(rule: Rule, claims: readonly PolicyClaim[]): Generator<Map<string, PolicyClaim>> {
  const candidates = rule.conditions.map((condition) => claims.filter((claim) => matches(claim, condition)));
  if (candidates.some((list) => list.length === 0)) {
    return;
  }
  const chosen: PolicyClaim[] = [];
  function* walk(depth: number): Generator<Map<string, PolicyClaim>> {
    if (depth === rule.conditions.length) {
      const bound = new Map<string, PolicyClaim>();
      rule.conditions.forEach((condition, i) => {
        if (condition.binding !== undefined) {
          bound.set(condition.binding, chosen[i] as PolicyClaim);
        }
      });
      yield bound;
      return;
    }
    for (const claim of candidates[depth] as PolicyClaim[]) {
      chosen[depth] = claim;
      yield* walk(depth + 1);
    }
  }
  yield* walk(0);
}

function evaluateExpression(expression: Expression, bound: Map<string, PolicyClaim>): ClaimValue {
  if (expression.kind === "literal") {
    return expression.value;
  }
  const claim = bound.get(expression.binding);
  if (claim === undefined) {
    throw new AttestationError("ERR_POLICY_SYNTAX", `"${expression.binding}" is not bound`);
  }
  return property(claim, expression.property);
}

function produce(action: ClaimAction, bound: Map<string, PolicyClaim>): PolicyClaim {
  const type = evaluateExpression(action.type, bound);
  if (typeof type !== "string" || type.length === 0) {
    throw new AttestationError(
      "ERR_POLICY_DENIED",
      `${action.kind}() produced a claim without a string type`,
    );
  }
  const value = evaluateExpression(action.value, bound);
  const valueType =
    action.valueType === undefined ? valueTypeOf(value) : evaluateExpression(action.valueType, bound);
  if (typeof valueType !== "string") {
    throw new AttestationError(
      "ERR_POLICY_DENIED",
      `${action.kind}() produced a claim whose valueType is not a string`,
    );
  }
  return { type, value, valueType, issuer: policyIssuer };
}

/** Runs the rules of one section over `incoming`, in order. */
function runRules(
  rules: readonly Rule[],
  incoming: PolicyClaim[],
  outgoing: PolicyClaim[],
): { permits: number; denies: number } {
  let permits = 0;
  let denies = 0;
  for (const rule of rules) {
    const snapshot = [...incoming];
    for (const bound of bindingsFor(rule, snapshot)) {
      const action = rule.action;
      if (action.kind === "permit" || action.kind === "deny") {
        if (action.kind === "permit") {
          permits++;
        } else {
          denies++;
        }
        break;
      }
      const claim = produce(action, bound);
      incoming.push(claim);
      if (action.kind === "issue" || action.kind === "issueproperty") {
        outgoing.push(claim);
      }
    }
  }
  return { permits, denies };
}

function collect(claims: readonly PolicyClaim[]): Claims {
  const out: Record<string, ClaimValue> = {};
  const multiValued = new Set<string>();
  for (const claim of claims) {
    const existing = out[claim.type];
    if (existing === undefined) {
      out[claim.type] = claim.value;
    } else if (JSON.stringify(existing) !== JSON.stringify(claim.value)) {
      // A type issued more than once with different values becomes a list, as in MAA tokens.
      out[claim.type] = multiValued.has(claim.type)
        ? [...(existing as ClaimValue[]), claim.value]
        : [existing, claim.value];
      multiValued.add(claim.type);
    }
  }
  return out;
}

/** `x-ms-policy-hash`: base64url(SHA-256(base64url(policy text))), as MAA computes it. */
export function policyHash(text: string): string {
  const encoded = Buffer.from(text, "utf8").toString("base64url");
  return createHash("sha256").update(encoded).digest("base64url");
}

/**
 * Evaluates a policy over the evidence claims. Throws ERR_POLICY_DENIED unless the authorization rules
 * permit, and returns what the issuance rules issue.
 *
 * @example
 * ```ts
 * const result = evaluatePolicy(parsePolicy(text), evidence.claims);
 * const token = { ...evidence.claims, ...result.issuedClaims, "x-ms-policy": result.issuedClaims };
 * ```
 */
export function evaluatePolicy(policy: Policy | string, claims: Claims): PolicyResult {
  return guard("ERR_POLICY_DENIED", "the policy could not be evaluated over these claims", () =>
    evaluatePolicyUnguarded(policy, claims),
  );
}

function evaluatePolicyUnguarded(policy: Policy | string, claims: Claims): PolicyResult {
  const untrusted: unknown = claims;
  if (typeof untrusted !== "object" || untrusted === null || Array.isArray(untrusted)) {
    throw new AttestationError("ERR_POLICY_DENIED", "claims must be an object");
  }
  const parsed = typeof policy === "string" ? parsePolicy(policy) : policy;
  const incoming = toPolicyClaims(claims);
  const properties: PolicyClaim[] = [];
  runRules(parsed.configurationRules, [...incoming], properties);
  const authorization = runRules(parsed.authorizationRules, incoming, []);
  if (authorization.denies > 0 || authorization.permits === 0) {
    throw new AttestationError(
      "ERR_POLICY_DENIED",
      authorization.denies > 0
        ? "the attestation policy denied the evidence"
        : "no authorization rule permitted the evidence",
    );
  }
  const issued: PolicyClaim[] = [];
  runRules(parsed.issuanceRules, incoming, issued);
  return {
    issuedClaims: collect(issued),
    properties: collect(properties),
    policyHash: policyHash(parsed.text),
  };
}
