// A record store whose searches answer late, for tests of checks that two replicas run at the same moment.
import { setTimeout as sleep } from "node:timers/promises";
import type { RecordStore } from "../storage/record-store.js";

/**
 * The store with every search's answer `delayMs` (default 50) late: the answer is read first and handed back
 * late, so when two replicas check a rule by searching, both have read before either one writes.
 */
export function slowSearches(store: RecordStore, delayMs = 50): RecordStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (property === "search" && typeof value === "function") {
        return async (...args: unknown[]) => {
          const answer: unknown = await (value as (...parameters: unknown[]) => unknown).apply(target, args);
          await sleep(delayMs);
          return answer;
        };
      }
      return typeof value === "function"
        ? (value as (...parameters: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}
