// A service that starts while a dependency restarts (the attestation service or the key broker refusing
// connections for a few seconds) waits it out with backoff, instead of ending the process and being counted
// as a crash loop by its supervisor (Kubernetes, or `cloister up`).
import { setTimeout as sleep } from "node:timers/promises";
import { EnclaveError } from "./errors.js";

export interface RetryWhileUnreachableOptions {
  /** Give up after this long (default 60 s): the last error is thrown. */
  readonly deadlineMs?: number;
  /** The first wait (default 250 ms); each next one doubles, up to `maxDelayMs` (default 5 s). */
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Called before each wait, for a log line: never given a token or a key. */
  readonly onRetry?: (attempt: number, delayMs: number) => void;
}

/**
 * `retryWhileUnreachable` for a service's main.ts: each retry is logged as a JSON warning line on stderr
 * (the services' log format), naming the dependency only.
 */
export function retryAtStart<T>(dependency: string, attempt: () => Promise<T>): Promise<T> {
  return retryWhileUnreachable(attempt, {
    onRetry: (tries, delayMs) => {
      process.stderr.write(
        `${JSON.stringify({ level: 40, time: Date.now(), msg: `${dependency} is unreachable; trying again`, attempt: tries, delayMs })}\n`,
      );
    },
  });
}

/**
 * Runs `attempt` until it succeeds, trying again only while it fails with ERR_UNREACHABLE (no connection);
 * any other error, a refusal included, is thrown at once.
 *
 * @example
 * ```ts
 * const attestation = await retryWhileUnreachable(() => attestAtStart(options), {
 *   onRetry: (attempt, delayMs) => log.warn({ attempt, delayMs }, "attestation service unreachable"),
 * });
 * ```
 */
export async function retryWhileUnreachable<T>(
  attempt: () => Promise<T>,
  options: RetryWhileUnreachableOptions = {},
): Promise<T> {
  const deadlineMs = options.deadlineMs ?? 60_000;
  const initialDelayMs = options.initialDelayMs ?? 250;
  const maxDelayMs = options.maxDelayMs ?? 5000;
  const started = Date.now();
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof EnclaveError && error.code === "ERR_UNREACHABLE")) {
        throw error;
      }
      const delayMs = Math.min(maxDelayMs, initialDelayMs * 2 ** (tries - 1));
      if (Date.now() - started + delayMs > deadlineMs) {
        throw error;
      }
      options.onRetry?.(tries, delayMs);
      await sleep(delayMs);
    }
  }
}
