// Verified results keyed by the exact bytes that were verified, each kept only for the window in which
// every time-dependent check it passed stays true. Opt-in (VerifyQuoteOptions.cache): a verification
// service that sees the same collateral and platforms again and again checks their signatures once.
import { createHash } from "node:crypto";

interface Entry {
  readonly value: unknown;
  readonly validFrom: number;
  readonly validUntil: number;
}

/**
 * A bounded cache of verification results. Only results whose inputs are named in full by the key are
 * stored, so a hit means "these exact bytes verified"; entries outside their validity window are ignored and
 * the caller verifies again (raising the precise error).
 *
 * @example
 * ```ts
 * const cache = createVerificationCache();
 * verifyQuote(quote, { collateral, cache });
 * ```
 */
export class VerificationCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;

  constructor(maxEntries = 1024) {
    this.maxEntries = maxEntries;
  }

  static key(...parts: readonly (string | Uint8Array)[]): string {
    const hash = createHash("sha256");
    for (const part of parts) {
      const bytes = typeof part === "string" ? Buffer.from(part) : part;
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      hash.update(length).update(bytes);
    }
    return hash.digest("base64");
  }

  get(key: string, now: Date): unknown {
    const entry = this.entries.get(key);
    const time = now.getTime();
    if (entry === undefined || time < entry.validFrom || time > entry.validUntil) {
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  set(key: string, value: unknown, validFrom: Date, validUntil: Date): void {
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) {
        this.entries.delete(oldest.value);
      }
    }
    this.entries.set(key, { value, validFrom: validFrom.getTime(), validUntil: validUntil.getTime() });
  }

  get size(): number {
    return this.entries.size;
  }
}

export function createVerificationCache(options: { maxEntries?: number } = {}): VerificationCache {
  return new VerificationCache(options.maxEntries);
}
