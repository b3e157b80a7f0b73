// Diagnosis jobs: at-least-once delivery with leases; the worker makes the effects idempotent, so each
// ServiceRequest gets exactly one result. An in-memory queue is the embedded default; a Redis one (for
// several replicas) implements the same interface. Of the jobs due, those of urgent orders (priority stat,
// asap or urgent) are taken first, so a STAT order is not analysed after a backlog of routine ones.

export interface DiagnosisJob {
  readonly tenantId: string;
  readonly serviceRequestId: string;
  readonly attempt: number;
  /** The order's priority is stat, asap or urgent (absent: routine, as are jobs queued before priorities). */
  readonly urgent?: boolean;
}

/** Whether an order (a ServiceRequest) is urgent for the queue: its priority is stat, asap or urgent. */
export function isUrgentOrder(order: Readonly<Record<string, unknown>>): boolean {
  return order.priority === "stat" || order.priority === "asap" || order.priority === "urgent";
}

export interface JobQueue {
  /**
   * Adds a job unless one for the same ServiceRequest is already waiting; a running one is replaced (how a
   * worker schedules its own retry, and how a starting platform takes back the jobs of a dead one).
   */
  readonly enqueue: (job: DiagnosisJob, delayMs?: number) => Promise<void>;
  /**
   * Adds a job only if none for the same ServiceRequest is waiting or running; true if it was added. The
   * reconciler uses it to queue active orders whose job was never queued, without disturbing running ones.
   */
  readonly ensureQueued: (job: DiagnosisJob) => Promise<boolean>;
  /** Waits for the next due job (or undefined when closed). */
  readonly take: () => Promise<DiagnosisJob | undefined>;
  /** The job is done (or given up): forget it. */
  readonly complete: (job: DiagnosisJob) => Promise<void>;
  /** For monitoring: jobs waiting and running, and when the longest-overdue waiting job fell due. */
  readonly stats: () => Promise<QueueStats>;
  readonly close: () => Promise<void>;
}

export interface QueueStats {
  readonly waiting: number;
  readonly running: number;
  /** Due time (ms) of the oldest job that is due but not taken, if any. */
  readonly oldestDueAt: number | undefined;
}

export function createMemoryJobQueue(now: () => number = Date.now): JobQueue {
  const pending = new Map<string, { job: DiagnosisJob; dueAt: number }>();
  const running = new Set<string>();
  let waiters: ((job: DiagnosisJob | undefined) => void)[] = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const key = (job: DiagnosisJob): string => `${job.tenantId}/${job.serviceRequestId}`;

  const dispatch = (): void => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    while (waiters.length > 0) {
      // Urgent ones first, then the longest due.
      const due = [...pending.values()]
        .filter((entry) => entry.dueAt <= now())
        .sort(
          (a, b) => Number(b.job.urgent === true) - Number(a.job.urgent === true) || a.dueAt - b.dueAt,
        )[0];
      if (due === undefined) {
        break;
      }
      pending.delete(key(due.job));
      running.add(key(due.job));
      waiters.shift()?.(due.job);
    }
    const next = Math.min(...[...pending.values()].map((entry) => entry.dueAt));
    if (waiters.length > 0 && Number.isFinite(next)) {
      timer = setTimeout(dispatch, Math.max(0, next - now()));
      timer.unref();
    }
  };

  return {
    enqueue: async (job, delayMs = 0) => {
      if (closed || pending.has(key(job))) {
        return;
      }
      running.delete(key(job));
      pending.set(key(job), { job, dueAt: now() + delayMs });
      dispatch();
    },
    ensureQueued: async (job) => {
      if (closed || pending.has(key(job)) || running.has(key(job))) {
        return false;
      }
      pending.set(key(job), { job, dueAt: now() });
      dispatch();
      return true;
    },
    take: async () =>
      closed
        ? undefined
        : new Promise((resolve) => {
            waiters.push(resolve);
            dispatch();
          }),
    complete: async (job) => {
      running.delete(key(job));
    },
    stats: async () => {
      const due = [...pending.values()].map((entry) => entry.dueAt).filter((dueAt) => dueAt <= now());
      return {
        waiting: pending.size,
        running: running.size,
        oldestDueAt: due.length === 0 ? undefined : Math.min(...due),
      };
    },
    close: async () => {
      closed = true;
      if (timer !== undefined) {
        clearTimeout(timer);
      }
      for (const waiter of waiters) {
        waiter(undefined);
      }
      waiters = [];
    },
  };
}
