// For tests: a real redis-server on a free loopback port, with a password and an fsync'd append-only file,
// that can be SIGKILLed and restarted on the same data.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";

export const redisBinary = "/usr/bin/redis-server";

/** false when redis-server is present; otherwise the loud reason to skip. */
export const redisSkipReason: string | false = existsSync(redisBinary)
  ? false
  : "redis-server is not installed (apt-get install redis-server); .ci/run installs it";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => {
        resolve(typeof address === "object" && address !== null ? address.port : 0);
      });
    });
  });
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.end();
      resolve(true);
    });
    socket.on("error", () => {
      resolve(false);
    });
  });
}

export interface TestRedis {
  readonly url: string;
  readonly password: string;
  readonly kill: () => void;
  readonly start: () => Promise<void>;
  readonly stop: () => void;
}

export async function startTestRedis(): Promise<TestRedis> {
  const port = await freePort();
  const password = randomBytes(12).toString("hex");
  const directory = mkdtempSync(join(tmpdir(), "cloister-redis-"));
  let server: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    server = spawn(
      redisBinary,
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--requirepass",
        password,
        "--dir",
        directory,
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
      ],
      { stdio: "ignore" },
    );
    for (let i = 0; i < 100; i++) {
      if (await canConnect(port)) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error("redis-server did not start");
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    password,
    kill: () => server?.kill("SIGKILL"),
    start,
    stop: () => {
      server?.kill("SIGKILL");
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/**
 * For a test file: a redis-server started before its tests (unless redis-server is missing, which is
 * reported once) and stopped after them, with the closers registered meanwhile run first.
 */
export function useTestRedis(): {
  readonly redis: () => TestRedis;
  readonly onClose: (close: () => Promise<void>) => void;
} {
  let redis: TestRedis | undefined;
  const closers: (() => Promise<void>)[] = [];
  if (redisSkipReason !== false) {
    console.warn(`SKIPPING: ${redisSkipReason}`);
  }
  before(async () => {
    if (redisSkipReason === false) {
      redis = await startTestRedis();
    }
  });
  after(async () => {
    for (const close of closers.reverse()) {
      await close();
    }
    redis?.stop();
  });
  return {
    redis: () => {
      if (redis === undefined) {
        throw new Error("redis-server is not running");
      }
      return redis;
    },
    onClose: (close) => {
      closers.push(close);
    },
  };
}
