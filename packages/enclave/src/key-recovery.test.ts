// The key broker's recovery backup: Shamir M-of-N over GF(256), custodians' shares, and the encrypted store.
import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { describe, it } from "node:test";
import fc from "fast-check";
import { exportJWK, type JWK } from "jose";
import { EnclaveError } from "./errors.js";
import {
  combineShares,
  createRecoveryBackup,
  openCustodianShare,
  openRecoveryBackup,
  parseRecoveryBackup,
  splitSecret,
  type RecoveryShare,
} from "./key-recovery.js";

/** Every subset of `items` of size `size`. */
function subsets<T>(items: readonly T[], size: number): T[][] {
  if (size === 0) {
    return [[]];
  }
  return items.flatMap((item, index) =>
    subsets(items.slice(index + 1), size - 1).map((rest) => [item, ...rest]),
  );
}

const isRecoveryError = (error: unknown): boolean =>
  error instanceof EnclaveError && error.code === "ERR_RECOVERY";

async function custodianKeys(): Promise<{ publicJwk: JWK; privateJwk: JWK }[]> {
  const pairs = [
    generateKeyPairSync("rsa", { modulusLength: 2048 }),
    generateKeyPairSync("ec", { namedCurve: "P-256" }),
    generateKeyPairSync("ec", { namedCurve: "P-384" }),
  ];
  return Promise.all(
    pairs.map(async (pair) => ({
      publicJwk: await exportJWK(pair.publicKey),
      privateJwk: await exportJWK(pair.privateKey),
    })),
  );
}

describe("Shamir secret sharing over GF(256)", () => {
  it("any quorum of shares rebuilds the secret, for every quorum and count", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 48 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 3 }),
        (secret, quorum, extra) => {
          const shares = splitSecret(secret, quorum, quorum + extra);
          for (const chosen of subsets(shares, quorum)) {
            assert.deepEqual(combineShares(chosen), secret);
            assert.deepEqual(combineShares([...chosen].reverse()), secret);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it("fewer shares than the quorum give a value unrelated to the secret, and shares are fresh each time", () => {
    const secret = randomBytes(32);
    const shares = splitSecret(secret, 3, 5);
    for (const short of subsets(shares, 2)) {
      assert.notDeepEqual(Buffer.from(combineShares(short)), secret);
    }
    // The same secret split again: other shares (random coefficients), the same secret back.
    const again = splitSecret(secret, 3, 5);
    assert.notDeepEqual(again[0]?.y, shares[0]?.y);
    assert.deepEqual(Buffer.from(combineShares(again.slice(2))), secret);
  });

  it("a quorum of 1 gives every custodian the secret itself; bad parameters and duplicates are refused", () => {
    const secret = randomBytes(16);
    for (const share of splitSecret(secret, 1, 3)) {
      assert.deepEqual(Buffer.from(share.y), secret);
    }
    assert.throws(() => splitSecret(secret, 0, 3), isRecoveryError);
    assert.throws(() => splitSecret(secret, 4, 3), isRecoveryError);
    assert.throws(() => splitSecret(secret, 2, 256), isRecoveryError);
    const [first] = splitSecret(secret, 2, 2) as [RecoveryShare, RecoveryShare];
    assert.throws(() => combineShares([first, first]), isRecoveryError);
    assert.throws(() => combineShares([]), isRecoveryError);
  });
});

describe("recovery backups", () => {
  it("a quorum of custodians (RSA, P-256, P-384) opens the store; one alone cannot; shares from another backup are refused", async () => {
    const custodians = await custodianKeys();
    const store = new TextEncoder().encode(
      JSON.stringify({ keys: [{ name: "tenant-a", value: "c2VjcmV0" }] }),
    );
    const backup = parseRecoveryBackup(
      JSON.parse(
        JSON.stringify(
          await createRecoveryBackup(
            store,
            custodians.map((custodian) => custodian.publicJwk),
            2,
          ),
        ),
      ),
    );
    assert.equal(backup.shares.length, 3);
    assert.ok(!JSON.stringify(backup).includes("tenant-a"), "the store is encrypted");
    const shares = await Promise.all(
      custodians.map((custodian) => openCustodianShare(backup, custodian.privateJwk)),
    );
    for (const pair of subsets(shares, 2)) {
      assert.deepEqual(await openRecoveryBackup(backup, pair), store);
    }
    await assert.rejects(openRecoveryBackup(backup, shares.slice(0, 1)), isRecoveryError);

    // A share of another backup of the same store, by the same custodians, does not pass the commitment.
    const other = await createRecoveryBackup(
      store,
      custodians.map((custodian) => custodian.publicJwk),
      2,
    );
    const foreign = await openCustodianShare(other, custodians[0]?.privateJwk ?? {});
    await assert.rejects(openRecoveryBackup(backup, [foreign, shares[1] as RecoveryShare]), isRecoveryError);
    // A share with one bit flipped neither.
    const flipped = {
      x: shares[0]?.x ?? 1,
      y: Uint8Array.from(shares[0]?.y ?? [], (byte, i) => (i === 0 ? byte ^ 1 : byte)),
    };
    await assert.rejects(openRecoveryBackup(backup, [flipped, shares[1] as RecoveryShare]), isRecoveryError);
    // A key that is not a custodian's has no share.
    const stranger = await exportJWK(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
    await assert.rejects(openCustodianShare(backup, stranger), isRecoveryError);
    assert.throws(() => parseRecoveryBackup({ ...backup, format: "other" }), isRecoveryError);
    assert.throws(
      () => parseRecoveryBackup({ ...backup, shares: backup.shares.slice(0, 1) }),
      isRecoveryError,
    );
  });
});
