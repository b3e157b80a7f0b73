// Bounded memo for pure parsers of collateral that repeats across verifications (Intel's chains, CRLs,
// TCB info). Only parsing is cached, keyed by the exact input text; every signature is checked each time.
const limit = 256;
const caches: Map<string, unknown>[] = [];

export function memoizeParse<T>(parse: (input: string) => T): (input: string) => T {
  const cache = new Map<string, T>();
  caches.push(cache);
  return (input: string): T => {
    const hit = cache.get(input);
    if (hit !== undefined) {
      return hit;
    }
    const value = parse(input);
    if (cache.size >= limit) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) {
        cache.delete(oldest.value);
      }
    }
    cache.set(input, value);
    return value;
  };
}

/** Empties every parse cache (benchmarks use it to measure cold verification). */
export function clearParseCaches(): void {
  for (const cache of caches) {
    cache.clear();
  }
}
