// Keys at rest: one file per key, AES-256-GCM sealed with the broker's own sealing key (bound to its
// measurement), written atomically (temp file, fsync, rename, fsync of the folder) so a restart or a torn
// write loses nothing.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
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
    writeSync(descriptor, typeof content === "string" ? Buffer.from(content) : content);
    fsyncSync(descriptor);
  } finally {
    closeSync(descriptor);
  }
  renameSync(temporary, path);
  const folder = openSync(dirname(path), "r");
  try {
    fsyncSync(folder);
  } finally {
    closeSync(folder);
  }
}

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

  /** `onChange` runs after every write (the broker then writes a fresh recovery backup). */
  constructor(directory: string, sealingKey: Uint8Array, onChange?: () => void) {
    this.directory = directory;
    this.sealingKey = sealingKey;
    this.onChange = onChange;
    mkdirSync(directory, { recursive: true, mode: 0o700 });
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
    writeFileAtomically(join(this.directory, `${key.name}.sealed`), this.seal(key));
    this.keys.set(key.name, key);
    this.onChange?.();
  }

  /** Every key, for a recovery backup: JSON `{keys: [...]}` with base64 values. Never leaves the TEE in clear. */
  exportKeys(): Uint8Array {
    return Buffer.from(JSON.stringify({ keys: [...this.keys.values()].map(keyJson) }));
  }

  /** Writes every key of an `exportKeys` document (a restore into an empty store); answers how many. */
  importKeys(document: Uint8Array): number {
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
    for (const key of keys) {
      this.put(key);
    }
    return keys.length;
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
