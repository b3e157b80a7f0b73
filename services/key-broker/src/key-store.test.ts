import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { SealedKeyStore, writeFileAtomically, type StoredKey } from "./key-store.js";
import type { ReleasePolicy } from "./release-policy.js";

const scratch = mkdtempSync(join(tmpdir(), "cloister-key-store-"));
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

const policy = { anyOf: [{ authority: "https://attest.example", allOf: [] }] } as unknown as ReleasePolicy;

function storedKey(name: string, versions: number): StoredKey {
  return {
    name,
    kind: "secret",
    policy,
    createdAt: "2026-11-29T10:00:00.000Z",
    lastVersion: versions,
    versions: Array.from({ length: versions }, (_, index) => ({
      version: index + 1,
      value: new Uint8Array(randomBytes(32)),
      createdAt: "2026-11-29T10:00:00.000Z",
    })),
  };
}

/** An export of five keys from a source store, as a recovery backup carries it. */
function fiveKeyExport(sealingKey: Uint8Array): { document: Uint8Array; keys: StoredKey[] } {
  const source = new SealedKeyStore(join(scratch, `source-${randomBytes(4).toString("hex")}`), sealingKey);
  const keys = ["tenant-a", "tenant-b", "platform", "redis-credentials", "database-credentials"].map(
    (name, index) => storedKey(name, 1 + (index % 3)),
  );
  for (const key of keys) {
    source.put(key);
  }
  return { document: source.exportKeys(), keys };
}

const sealedFiles = (directory: string): string[] =>
  readdirSync(directory)
    .filter((name) => name.endsWith(".sealed"))
    .sort();

test("a restore that fails on any write keeps no key, in memory or on disk, and succeeds when tried again", () => {
  const sealingKey = new Uint8Array(randomBytes(32));
  const { document, keys } = fiveKeyExport(sealingKey);
  // Five sealed files and the commit marker: a disk that fails at each of the six writes in turn.
  for (let failAt = 1; failAt <= keys.length + 1; failAt++) {
    const directory = join(scratch, `fails-at-${failAt}`);
    let writes = 0;
    let changes = 0;
    const store = new SealedKeyStore(
      directory,
      sealingKey,
      () => changes++,
      (path, content) => {
        writes++;
        if (writes === failAt) {
          throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
        }
        writeFileAtomically(path, content);
      },
    );
    assert.throws(() => store.importKeys(document), /no space left/);
    assert.deepEqual(store.list(), [], `in memory, failing at write ${failAt}`);
    assert.deepEqual(readdirSync(directory), [], `on disk, failing at write ${failAt}`);
    assert.equal(changes, 0, "no backup of a partial store");
    assert.deepEqual(new SealedKeyStore(directory, sealingKey).list(), [], "after a restart");
    // The disk works again: the same import now writes every key.
    assert.equal(store.importKeys(document), keys.length);
    assert.equal(changes, 1, "one backup for the whole import");
    const reopened = new SealedKeyStore(directory, sealingKey);
    assert.deepEqual(reopened.list(), keys.map((key) => key.name).sort());
    for (const key of keys) {
      assert.deepEqual(reopened.get(key.name), key, key.name);
    }
  }
});

test("a start after a crash mid-restore drops an uncommitted import and finishes a committed one", () => {
  const sealingKey = new Uint8Array(randomBytes(32));
  const { document, keys } = fiveKeyExport(sealingKey);
  const names = keys.map((key) => `${key.name}.sealed`).sort();
  // The sealed files as an import leaves them in its staging folder.
  const imported = join(scratch, "imported");
  new SealedKeyStore(imported, sealingKey).importKeys(document);

  // Crashed before the commit marker: three of five keys staged. The start drops them.
  const uncommitted = join(scratch, "uncommitted");
  mkdirSync(join(uncommitted, ".import-0a0b0c"), { recursive: true });
  for (const file of names.slice(0, 3)) {
    cpSync(join(imported, file), join(uncommitted, ".import-0a0b0c", file));
  }
  assert.deepEqual(new SealedKeyStore(uncommitted, sealingKey).list(), []);
  assert.deepEqual(readdirSync(uncommitted), []);

  // Crashed after the marker, with two files already moved into place. The start finishes the move.
  const committed = join(scratch, "committed");
  mkdirSync(join(committed, ".import-0d0e0f"), { recursive: true });
  for (const [index, file] of names.entries()) {
    cpSync(join(imported, file), join(committed, index < 2 ? "" : ".import-0d0e0f", file));
  }
  writeFileSync(join(committed, ".import-0d0e0f", "COMMITTED"), "");
  const finished = new SealedKeyStore(committed, sealingKey);
  assert.deepEqual(finished.list(), keys.map((key) => key.name).sort());
  assert.deepEqual(sealedFiles(committed), names);
  assert.deepEqual(readdirSync(committed).sort(), names, "no staging folder left");
});

test("an import is refused into a store that holds keys, and for an export that names a key twice", () => {
  const sealingKey = new Uint8Array(randomBytes(32));
  const { document } = fiveKeyExport(sealingKey);
  const directory = join(scratch, "occupied");
  const store = new SealedKeyStore(directory, sealingKey);
  store.put(storedKey("existing", 1));
  assert.throws(() => store.importKeys(document), /empty store/);
  assert.deepEqual(store.list(), ["existing"]);
  assert.deepEqual(sealedFiles(directory), ["existing.sealed"]);

  const twice = JSON.parse(Buffer.from(document).toString("utf8")) as { keys: unknown[] };
  twice.keys.push(twice.keys[0]);
  const empty = new SealedKeyStore(join(scratch, "twice"), sealingKey);
  assert.throws(() => empty.importKeys(Buffer.from(JSON.stringify(twice))), /twice/);
  assert.deepEqual(empty.list(), []);
});

test("an atomic write whose rename fails leaves no temporary file behind", () => {
  const directory = join(scratch, "atomic");
  const path = join(directory, "key.sealed");
  // The target is a non-empty folder: the rename fails after the temporary file was written and synced.
  mkdirSync(join(path, "inside"), { recursive: true });
  assert.throws(() => {
    writeFileAtomically(path, "new");
  });
  assert.deepEqual(readdirSync(directory), ["key.sealed"]);
});
