// Keys at rest: one file per key, AES-256-GCM sealed with the broker's own sealing key (bound to its
// measurement), written atomically (temp file, fsync, rename, fsync of the folder) so a restart or a torn
// write loses nothing. A restore writes every key or none: the keys are sealed into a staging folder, which
// counts only once its commit marker is written; a start finishes a committed import and drops any other.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { ReleasePolicy } from "./release-policy.js";

/** One value of a key. Rotation adds a version; the newest is the one released by default. */
export interface KeyVersion {
  /** 1, 2, 3, …: never reused, even after an older version is destroyed. */
  readonly version: number;
  readonly value: Uint8Array;
  readonly createdAt: string;
}

export interface StoredKey {
  readonly name: string;
  /** "secret": a 256-bit key the broker generated; "named-secret": a value given by the admin (e.g. Redis credentials). */
  readonly kind: "secret" | "named-secret";
  /** The highest version number ever issued, so a destroyed newest-but-one number is never reused. */
  readonly lastVersion?: number;
  /** Oldest first; never empty. */
  readonly versions: readonly KeyVersion[];
  readonly policy: ReleasePolicy;
  readonly createdAt: string;
}

/**
 * Writes a file so that a restart or a torn write leaves the old content or the new, never a mix: a temporary
 * file, fsynced, renamed over the target, then the folder fsynced.
 */
export function writeFileAtomically(path: string, content: string | Uint8Array): void {
  const temporary = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const descriptor = openSync(temporary, "wx", 0o600);
  try {
    try {
      writeSync(descriptor, typeof content === "string" ? Buffer.from(content) : content);
      fsyncSync(descriptor);
    } finally {
      closeSync(descriptor);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
  syncFolder(dirname(path));
}

function syncFolder(path: string): void {
  const folder = openSync(path, "r");
  try {
    fsyncSync(folder);
  } finally {
    closeSync(folder);
  }
}

/** A restore's staging folder inside the store's folder, and the file that commits it. */
const importPrefix = ".import-";
const importCommitted = "COMMITTED";

/** The version released when none is named: the newest. */
export function newestVersion(key: StoredKey): KeyVersion {
  const newest = key.versions[key.versions.length - 1];
  if (newest === undefined) {
    throw new Error(`key ${key.name} has no versions`);
  }
  return newest;
}

export const keyNamePattern = /^[A-Za-z0-9][A-Za-z0-9-]{0,126}$/;

export class SealedKeyStore {
  private readonly directory: string;
  private readonly sealingKey: Uint8Array;
  private readonly keys = new Map<string, StoredKey>();

  private readonly onChange: (() => void) | undefined;
  private readonly writeFile: (path: string, content: Uint8Array) => void;

  /**
   * `onChange` runs after every write (the broker then writes a fresh recovery backup). `writeFile` is how a
   * file is written: `writeFileAtomically`, or in tests a writer that fails like a full or broken disk.
   */
  constructor(
    directory: string,
    sealingKey: Uint8Array,
    onChange?: () => void,
    writeFile: (path: string, content: Uint8Array) => void = writeFileAtomically,
  ) {
    this.directory = directory;
    this.sealingKey = sealingKey;
    this.onChange = onChange;
    this.writeFile = writeFile;
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    // A restore cut short by a crash: finished if it was committed, dropped if not.
    for (const staging of readdirSync(directory).filter((name) => name.startsWith(importPrefix))) {
      const path = join(directory, staging);
      if (readdirSync(path).includes(importCommitted)) {
        this.moveImportIntoPlace(path);
      } else {
        rmSync(path, { recursive: true, force: true });
      }
    }
    for (const file of readdirSync(directory).filter((name) => name.endsWith(".sealed"))) {
      const key = this.unseal(readFileSync(join(directory, file)), file.slice(0, -".sealed".length));
      this.keys.set(key.name, key);
    }
  }

  get(name: string): StoredKey | undefined {
    return this.keys.get(name);
  }

  list(): string[] {
    return [...this.keys.keys()].sort();
  }

  put(key: StoredKey): void {
    this.writeFile(join(this.directory, `${key.name}.sealed`), this.seal(key));
    this.keys.set(key.name, key);
    this.onChange?.();
  }

  /** Every key, for a recovery backup: JSON `{keys: [...]}` with base64 values. Never leaves the TEE in clear. */
  exportKeys(): Uint8Array {
    return Buffer.from(JSON.stringify({ keys: [...this.keys.values()].map(keyJson) }));
  }

  /**
   * Writes every key of an `exportKeys` document into this empty store (a restore); answers how many. All or
   * nothing: when a write fails, the store stays empty, in memory and on disk, and the import can be tried
   * again; a crash after the commit marker is finished by the next start.
   */
  importKeys(document: Uint8Array): number {
    if (this.keys.size > 0) {
      throw new Error("a restore needs an empty store");
    }
    const parsed = JSON.parse(Buffer.from(document).toString("utf8")) as { keys?: unknown };
    if (!Array.isArray(parsed.keys)) {
      throw new Error("not a key store export");
    }
    const keys = parsed.keys.map((entry) => parseKeyJson(entry as KeyJson, "an exported key"));
    for (const key of keys) {
      if (!keyNamePattern.test(key.name)) {
        throw new Error("an exported key has an invalid name");
      }
    }
    if (new Set(keys.map((key) => key.name)).size !== keys.length) {
      throw new Error("an export names a key twice");
    }
    // This store is empty, so anything on disk is left over from an import that failed in this process.
    for (const name of readdirSync(this.directory)) {
      if (name.startsWith(importPrefix) || name.endsWith(".sealed")) {
        rmSync(join(this.directory, name), { recursive: true, force: true });
      }
    }
    const staging = join(this.directory, `${importPrefix}${randomBytes(6).toString("hex")}`);
    mkdirSync(staging, { mode: 0o700 });
    try {
      for (const key of keys) {
        this.writeFile(join(staging, `${key.name}.sealed`), this.seal(key));
      }
      this.writeFile(join(staging, importCommitted), new Uint8Array(0));
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error;
    }
    this.moveImportIntoPlace(staging);
    for (const key of keys) {
      this.keys.set(key.name, key);
    }
    this.onChange?.();
    return keys.length;
  }

  /** Moves a committed import's sealed files into the store's folder, then removes its staging folder. */
  private moveImportIntoPlace(staging: string): void {
    for (const file of readdirSync(staging).filter((name) => name.endsWith(".sealed"))) {
      renameSync(join(staging, file), join(this.directory, file));
    }
    syncFolder(this.directory);
    // The marker goes last: until then, a crash leaves the import to be finished again at the next start.
    unlinkSync(join(staging, importCommitted));
    rmSync(staging, { recursive: true, force: true });
    syncFolder(this.directory);
  }

  private seal(key: StoredKey): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.sealingKey, iv);
    cipher.setAAD(Buffer.from(key.name));
    const plaintext = Buffer.from(JSON.stringify(keyJson(key)));
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.from("CKB1"), iv, cipher.getAuthTag(), ciphertext]);
  }

  private unseal(sealed: Buffer, name: string): StoredKey {
    if (sealed.subarray(0, 4).toString() !== "CKB1" || sealed.length < 32) {
      throw new Error(`sealed key ${name} has an unknown format`);
    }
    const decipher = createDecipheriv("aes-256-gcm", this.sealingKey, sealed.subarray(4, 16));
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(sealed.subarray(16, 32));
    const plaintext = Buffer.concat([decipher.update(sealed.subarray(32)), decipher.final()]);
    return parseKeyJson(JSON.parse(plaintext.toString()) as KeyJson, `sealed key ${name}`);
  }
}

/** A key as JSON (sealed files and recovery exports): values in base64. */
type KeyJson = Omit<StoredKey, "versions"> & {
  versions?: { version: number; value: string; createdAt: string }[];
  /** Keys sealed before versions existed carry one value: their version 1. */
  value?: string;
};

function keyJson(key: StoredKey): KeyJson {
  return {
    ...key,
    versions: key.versions.map((entry) => ({ ...entry, value: Buffer.from(entry.value).toString("base64") })),
  };
}

function parseKeyJson(parsed: KeyJson, what: string): StoredKey {
  const versions =
    parsed.versions ??
    (parsed.value === undefined ? [] : [{ version: 1, value: parsed.value, createdAt: parsed.createdAt }]);
  if (typeof parsed.name !== "string" || versions.length === 0) {
    throw new Error(`${what} has no name or no versions`);
  }
  return {
    name: parsed.name,
    kind: parsed.kind,
    ...(parsed.lastVersion === undefined ? {} : { lastVersion: parsed.lastVersion }),
    policy: parsed.policy,
    createdAt: parsed.createdAt,
    versions: versions.map((entry) => ({
      version: entry.version,
      createdAt: entry.createdAt,
      value: new Uint8Array(Buffer.from(entry.value, "base64")),
    })),
  };
}
