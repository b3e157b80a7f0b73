// Release policies in Azure Key Vault's secure-key-release format:
//   {version: "1.0.0", anyOf: [{authority: <attestation service URL>, allOf: [{claim, equals} | {claim, greaterOrEquals} …]}]}
// A token satisfies the policy when its issuer is one entry's authority and every condition of that entry holds.
import { BrokerError } from "./errors.js";

type Operator = "equals" | "greaterOrEquals" | "lessOrEquals" | "greater" | "less";
const operators: readonly Operator[] = ["equals", "greaterOrEquals", "lessOrEquals", "greater", "less"];

export interface ReleaseCondition {
  readonly claim: string;
  readonly operator: Operator;
  readonly value: string | number | boolean;
}

export interface ReleasePolicy {
  readonly version: "1.0.0";
  readonly anyOf: readonly { readonly authority: string; readonly allOf: readonly ReleaseCondition[] }[];
}

export function normalizeAuthority(url: string): string {
  return url.replace(/\/+$/, "");
}

/** Validates a policy document (as stored and as shown by GET /keys/{name}). */
export function parseReleasePolicy(input: unknown): ReleasePolicy {
  const fail = (reason: string): never => {
    throw new BrokerError("ERR_BAD_REQUEST", `release policy: ${reason}`);
  };
  const document = input as { version?: unknown; anyOf?: unknown } | null;
  if (
    typeof document !== "object" ||
    document === null ||
    document.version !== "1.0.0" ||
    !Array.isArray(document.anyOf) ||
    document.anyOf.length === 0
  ) {
    return fail('expected {version: "1.0.0", anyOf: [ … ]}');
  }
  const anyOf = document.anyOf.map((raw: unknown, i) => {
    const entry = raw as { authority?: unknown; allOf?: unknown } | null;
    if (
      typeof entry?.authority !== "string" ||
      !/^https?:\/\//.test(entry.authority) ||
      !Array.isArray(entry.allOf) ||
      entry.allOf.length === 0
    ) {
      return fail(`anyOf[${i}] needs an authority URL and a non-empty allOf`);
    }
    const allOf = entry.allOf.map((rawCondition: unknown, j): ReleaseCondition => {
      const condition = rawCondition as Record<string, unknown> | null;
      const operator = operators.find(
        (name) => condition !== null && typeof condition === "object" && name in condition,
      );
      const value = operator === undefined ? undefined : condition?.[operator];
      if (
        typeof condition?.claim !== "string" ||
        operator === undefined ||
        (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean")
      ) {
        return fail(`anyOf[${i}].allOf[${j}] needs a claim and one of ${operators.join(", ")}`);
      }
      if (operator !== "equals" && typeof value !== "number") {
        return fail(`anyOf[${i}].allOf[${j}]: ${operator} compares numbers`);
      }
      return { claim: condition.claim, operator, value };
    });
    return { authority: normalizeAuthority(entry.authority), allOf };
  });
  return { version: "1.0.0", anyOf };
}

/** Reads a claim by name, or by a dotted path into nested objects (`x-ms-runtime.service`). */
function claimValue(claims: Record<string, unknown>, name: string): unknown {
  if (name in claims) {
    return claims[name];
  }
  let current: unknown = claims;
  for (const part of name.split(".")) {
    if (typeof current !== "object" || current === null || !(part in current)) {
      return undefined;
    }
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

function holds(condition: ReleaseCondition, claims: Record<string, unknown>): boolean {
  const actual = claimValue(claims, condition.claim);
  if (condition.operator === "equals") {
    return typeof actual === "string" && typeof condition.value === "string"
      ? actual.toLowerCase() === condition.value.toLowerCase()
      : actual === condition.value;
  }
  if (typeof actual !== "number" || typeof condition.value !== "number") {
    return false;
  }
  switch (condition.operator) {
    case "greaterOrEquals":
      return actual >= condition.value;
    case "lessOrEquals":
      return actual <= condition.value;
    case "greater":
      return actual > condition.value;
    case "less":
      return actual < condition.value;
  }
}

/** True when some entry for `authority` has all its conditions met by `claims`. */
export function satisfiesReleasePolicy(
  policy: ReleasePolicy,
  authority: string,
  claims: Record<string, unknown>,
): boolean {
  return policy.anyOf.some(
    (entry) => entry.authority === authority && entry.allOf.every((condition) => holds(condition, claims)),
  );
}
