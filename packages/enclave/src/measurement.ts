// The simulated MRENCLAVE: SHA-256 over a service's built code, so one changed line changes it.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { EnclaveError } from "./errors.js";

export interface MeasureOptions {
  /** File names to leave out (source maps and build info do not change behaviour). */
  readonly exclude?: (relativePath: string) => boolean;
}

const defaultExclude = (path: string): boolean => path.endsWith(".map") || path.endsWith(".tsbuildinfo");

/**
 * SHA-256 over the files below `directories` (sorted by their path relative to `base`): for each file,
 * its path, a NUL byte, its length as 8 bytes big-endian, and its bytes. Deterministic across machines.
 *
 * @example
 * ```ts
 * const mrenclave = measureCode(repositoryRoot, ["services/attestation-service/dist", "packages/attestation/dist"]);
 * ```
 */
export function measureCode(
  base: string,
  directories: readonly string[],
  options: MeasureOptions = {},
): string {
  const exclude = options.exclude ?? defaultExclude;
  const files: string[] = [];
  const walk = (directory: string): void => {
    for (const name of readdirSync(directory)) {
      const path = join(directory, name);
      if (statSync(path).isDirectory()) {
        walk(path);
      } else {
        const relativePath = relative(base, path).split(sep).join("/");
        if (!exclude(relativePath)) {
          files.push(relativePath);
        }
      }
    }
  };
  try {
    for (const directory of directories) {
      walk(join(base, directory));
    }
  } catch (cause) {
    throw new EnclaveError("ERR_MEASUREMENT", "the code to measure could not be read", { cause });
  }
  if (files.length === 0) {
    throw new EnclaveError("ERR_MEASUREMENT", "there is no code to measure");
  }
  files.sort();
  const hash = createHash("sha256");
  for (const file of files) {
    const content = readFileSync(join(base, file));
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(content.length));
    hash.update(file).update("\0").update(length).update(content);
  }
  return hash.digest("hex");
}

/** MRSIGNER of the simulation: SHA-256 of the signing key's SubjectPublicKeyInfo (DER). */
export function measureSigner(spkiDer: Uint8Array): string {
  return createHash("sha256").update(spkiDer).digest("hex");
}
