// The services of `cloister up`, each a separate Node process with its own log file. A service that dies is
// started again, as Kubernetes does in production: after a growing pause while it keeps dying soon after
// starting (a crash loop), never given up on; Ctrl-C stops them all.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { openSync, closeSync } from "node:fs";
import { requestJson } from "@cloister/enclave";

export interface ServiceSpec {
  readonly name: string;
  /** The JavaScript file to run with node. */
  readonly script: string;
  readonly env: Readonly<Record<string, string>>;
  readonly url: string;
  readonly logFile: string;
}

export interface SupervisorEvents {
  readonly onRestart: (name: string, exitCode: number | null, signal: NodeJS.Signals | null) => void;
  /** The service keeps dying soon after starting: it is started again after `delayMs`. */
  readonly onCrashLoop: (name: string, delayMs: number) => void;
  readonly onPidChange: () => void;
}

/** Refuses to start when a port is taken, naming it. */
export async function checkPortsFree(ports: readonly { name: string; port: number }[]): Promise<void> {
  for (const { name, port } of ports) {
    await new Promise<void>((resolve, reject) => {
      const server = createServer();
      server.once("error", (error: NodeJS.ErrnoException) => {
        reject(
          new Error(
            error.code === "EADDRINUSE"
              ? `port ${port} (${name}) is taken on 127.0.0.1; stop what uses it, or choose other ports with --port-base N (services use N…N+4)`
              : `port ${port} (${name}) cannot be used: ${error.code ?? error.message}`,
          ),
        );
      });
      server.listen(port, "127.0.0.1", () =>
        server.close(() => {
          resolve();
        }),
      );
    });
  }
}

async function waitHealthy(url: string, ca: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited (${child.exitCode ?? child.signalCode}) before it was ready`);
    }
    try {
      const response = await requestJson("GET", new URL("/healthz", url), undefined, { ca, timeoutMs: 1000 });
      if (response.status === 200) {
        return;
      }
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      throw new Error(`was not ready after ${timeoutMs / 1000} s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A service that exits sooner than this after starting is failing, not merely stopped from outside. */
const failingWithinMs = 5_000;

/** Early exits within this window count towards the pause before the next start. */
const crashLoopWindowMs = 60_000;

/** The longest pause before starting a failing service again. */
export const longestRestartPauseMs = 30_000;

/**
 * The restart policy, as Kubernetes' CrashLoopBackOff: a service that stayed up a while is started again
 * after 1 s; one that dies soon after starting waits twice as long each time (up to 30 s), counting its
 * early exits of the last minute, and from the fifth on it is reported as crash-looping. It is never left
 * stopped: a service killed from outside again and again (by an operator, the OOM killer, a fault test) must
 * come back, and one that is broken says why in its log.
 */
export function restartPolicy(
  earlierFailures: readonly number[],
  now: number,
  failedEarly: boolean,
): { failures: number[]; delayMs: number; crashLooping: boolean } {
  const failures = failedEarly ? [...earlierFailures.filter((at) => now - at < crashLoopWindowMs), now] : [];
  return {
    failures,
    delayMs: Math.min(longestRestartPauseMs, 1000 * 2 ** Math.max(0, failures.length - 1)),
    crashLooping: failures.length >= 5,
  };
}

export class ServiceSupervisor {
  private readonly children = new Map<string, ChildProcess>();
  private readonly specs: ServiceSpec[] = [];
  private readonly restarts = new Map<string, number[]>();
  private stopping = false;

  private readonly ca: string;
  private readonly events: SupervisorEvents;

  constructor(ca: string, events: SupervisorEvents) {
    this.ca = ca;
    this.events = events;
  }

  /** Starts a service and resolves when its /healthz answers over TLS. */
  async start(spec: ServiceSpec, timeoutMs = 30_000): Promise<void> {
    this.specs.push(spec);
    const child = this.spawn(spec);
    try {
      await waitHealthy(spec.url, this.ca, child, timeoutMs);
    } catch (error) {
      throw new Error(`${spec.name} ${(error as Error).message}; see ${spec.logFile}`);
    }
  }

  pids(): Record<string, number> {
    return Object.fromEntries(
      [...this.children].flatMap(([name, child]) => (child.pid === undefined ? [] : [[name, child.pid]])),
    );
  }

  private spawn(spec: ServiceSpec): ChildProcess {
    const log = openSync(spec.logFile, "a", 0o600);
    const child = spawn(process.execPath, [spec.script], {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...spec.env },
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    this.children.set(spec.name, child);
    this.events.onPidChange();
    const startedAt = Date.now();
    child.once("exit", (code, signal) => {
      if (this.stopping || this.children.get(spec.name) !== child) {
        return;
      }
      const now = Date.now();
      const { failures, delayMs, crashLooping } = restartPolicy(
        this.restarts.get(spec.name) ?? [],
        now,
        now - startedAt < failingWithinMs,
      );
      this.restarts.set(spec.name, failures);
      if (crashLooping) {
        this.events.onCrashLoop(spec.name, delayMs);
      } else {
        this.events.onRestart(spec.name, code, signal);
      }
      setTimeout(() => {
        if (!this.stopping) {
          this.spawn(spec);
        }
      }, delayMs).unref();
    });
    return child;
  }

  /** Stops every service, last started first: SIGTERM, then SIGKILL after `graceMs`. */
  async stopAll(graceMs = 8000): Promise<void> {
    this.stopping = true;
    for (const spec of [...this.specs].reverse()) {
      const child = this.children.get(spec.name);
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
        continue;
      }
      const exited = new Promise<void>((resolve) =>
        child.once("exit", () => {
          resolve();
        }),
      );
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    }
  }
}
