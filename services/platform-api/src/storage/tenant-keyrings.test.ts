import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { openRecord, sealRecord } from "./record-crypto.js";
import { createTenantKeyrings, type ReleasedDataKey } from "./tenant-keyrings.js";

/** A key broker in memory: versions of `tenant-<id>`, releases counted. */
function fakeBroker(): {
  versions: Map<number, Uint8Array>;
  released: string[];
  fail: boolean;
  release: (name: string, version?: number) => Promise<ReleasedDataKey>;
} {
  const broker = {
    versions: new Map<number, Uint8Array>([[1, randomBytes(32)]]),
    released: [] as string[],
    fail: false,
    release: async (name: string, version?: number): Promise<ReleasedDataKey> => {
      if (broker.fail) {
        throw new Error("the key broker is down");
      }
      const numbers = [...broker.versions.keys()].sort((a, b) => a - b);
      const wanted = version ?? Math.max(...numbers);
      const value = broker.versions.get(wanted);
      assert.ok(value !== undefined, `${name} has version ${wanted}`);
      broker.released.push(`${name}@${version ?? "newest"}`);
      return { value, version: wanted, versions: numbers };
    },
  };
  return broker;
}

test("a keyring holds every version the broker lists; refresh and age pick up a rotation", async () => {
  const broker = fakeBroker();
  let clock = 0;
  const keyrings = createTenantKeyrings({ release: broker.release, refreshAfterMs: 1000, now: () => clock });
  const first = await keyrings.keyring("a");
  assert.equal(first.generation, 1);
  assert.equal(await keyrings.keyring("a"), first, "cached");
  const address = { tenantId: "a", type: "Patient", id: "p", versionId: 1 };
  const sealedUnderOne = sealRecord(first, address, Buffer.from("one"));

  broker.versions.set(2, randomBytes(32));
  assert.equal((await keyrings.keyring("a")).generation, 1, "not yet due");
  const refreshed = await keyrings.refresh("a");
  assert.equal(refreshed.generation, 2);
  assert.deepEqual([...refreshed.generations.keys()].sort(), [1, 2]);
  assert.equal(openRecord(refreshed, address, sealedUnderOne).toString(), "one");
  assert.deepEqual(broker.released.slice(-2), ["tenant-a@newest", "tenant-a@1"]);

  // Ageing: the old keyring serves while the broker is asked again in the background.
  broker.versions.set(3, randomBytes(32));
  clock = 5000;
  assert.equal((await keyrings.keyring("a")).generation, 2);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal((await keyrings.keyring("a")).generation, 3);

  // A failed refresh keeps the last good keyring.
  broker.fail = true;
  await assert.rejects(keyrings.refresh("a"));
  assert.equal((await keyrings.keyring("a")).generation, 3);
  // Concurrent refreshes share one round of releases.
  broker.fail = false;
  const before = broker.released.length;
  await Promise.all([keyrings.refresh("a"), keyrings.refresh("a"), keyrings.refresh("a")]);
  assert.equal(broker.released.length - before, 3, "one newest and two older versions, once");
});
