// The people the key broker's measured configuration names (recovery custodians, policy approvers): a JWK Set
// file of their public keys, and how many of them are needed.
import type { JWK } from "jose";

/**
 * Reads a JWK Set of public RSA or EC keys (on `curves`) from `file`; refuses private keys, other keys and an
 * empty set, naming `who` ("custodian", "approver").
 */
export function publicKeySetFromFile(
  file: string,
  readFile: (path: string) => string,
  who: string,
  curves: readonly string[],
): JWK[] {
  const parsed = JSON.parse(readFile(file)) as { keys?: unknown };
  const keys = Array.isArray(parsed.keys) ? (parsed.keys as JWK[]) : [];
  for (const key of keys) {
    const usable =
      (key.kty === "RSA" && typeof key.n === "string" && typeof key.e === "string") ||
      (key.kty === "EC" && curves.includes(key.crv ?? "") && typeof key.x === "string");
    if (!usable) {
      throw new Error(`${file}: each ${who} key is an RSA or EC (${curves.join(", ")}) public JWK`);
    }
    if ("d" in key) {
      throw new Error(`${file}: holds a private key; give the broker the ${who}s' public keys only`);
    }
  }
  if (keys.length === 0) {
    throw new Error(`${file}: a JWK Set {"keys": [...]} of at least one ${who}'s public key`);
  }
  return keys;
}

/** A quorum from the environment (default 2, or all when fewer), 1 to `count`. */
export function quorumFromEnv(value: string | undefined, count: number, variable: string): number {
  const quorum = Number(value ?? Math.min(2, count));
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > count) {
    throw new Error(`${variable} is 1 to ${count} (the number of keys named)`);
  }
  return quorum;
}
