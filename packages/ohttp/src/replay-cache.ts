// Remembers the encapsulated keys (enc) of opened requests for a window. Every honest request has a fresh
// ephemeral key, so a second request with the same enc within the window is a replay (RFC 9458 §6.5).
// The inner request's Date bounds the window from the other side (see the gateway's `maxRequestAgeMs`).

export interface ReplayCacheOptions {
  readonly windowMs: number;
  /** Upper bound on remembered entries; beyond it the oldest are dropped (and requests that old rejected). */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

export class ReplayCache {
  private readonly seen = new Map<string, number>();
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Entries older than this were evicted early; requests from before it cannot be checked and are refused. */
  private evictedBefore = 0;

  constructor(options: ReplayCacheOptions) {
    this.windowMs = options.windowMs;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.now = options.now ?? Date.now;
  }

  /** The earliest request time this cache can still vouch for. */
  horizon(): number {
    return Math.max(this.now() - this.windowMs, this.evictedBefore);
  }

  /** Records `key`; false when it was already seen within the window. */
  remember(key: string): boolean {
    const now = this.now();
    this.expire(now);
    if (this.seen.has(key)) {
      return false;
    }
    this.seen.set(key, now);
    while (this.seen.size > this.maxEntries) {
      const oldest = this.seen.entries().next().value;
      if (oldest === undefined) {
        break;
      }
      this.seen.delete(oldest[0]);
      this.evictedBefore = oldest[1] + 1;
    }
    return true;
  }

  get size(): number {
    return this.seen.size;
  }

  private expire(now: number): void {
    // Insertion order is time order, so expired entries are at the front.
    for (const [key, at] of this.seen) {
      if (at > now - this.windowMs) {
        break;
      }
      this.seen.delete(key);
    }
  }
}
