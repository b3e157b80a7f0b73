// The job queue on Redis, for several platform replicas. Redis sees only ciphertext and HMACs: a job's
// member name is an HMAC of its ServiceRequest, its payload is sealed with AES-256-GCM. A taken job is
// leased; if its worker dies, the lease expires and another worker takes it again (at least once; the
// worker's writes are idempotent). Layout:
//   <prefix>:ready         sorted set, member → due time (ms): routine orders' jobs
//   <prefix>:ready:urgent  sorted set, the same for urgent orders' jobs (priority stat, asap or urgent), whose
//                          members start with "u."; a take looks here first
//   <prefix>:running       sorted set, member → lease expiry (ms)
//   <prefix>:job:<member>  g<generation>.<sealed payload, base64>
//   <prefix>:later:<member>  when a replica first met that payload under a key version it does not hold
// The keys come from the platform's system data key, every version held. Across a rotation of that key,
// replicas started before it hold the old version only, and replicas started after hold both; so members are
// named with the oldest version held (the same on both), payloads are sealed with the newest and say which,
// and a replica that meets a payload sealed under a version newer than it holds leaves it to another. If no
// replica has opened it within `newerVersionGraceMs` (the rotation was rolled back, and that version is held
// nowhere), it is dropped like an unreadable one, and the reconciler queues the order again under a key held.
// Redis learns which jobs are urgent (not whose, nor what for). A job an earlier version queued for an urgent
// order is named as routine, so the start's recovery may queue it a second time under its urgent name: the
// second run finds the order settled (the worker's writes are idempotent).
import { createHmac, hkdfSync } from "node:crypto";
import type { Redis } from "ioredis";
import { connectRedis } from "../redis-connection.js";
import { PlatformError } from "../errors.js";
import { openBytes, sealBytes } from "../storage/record-crypto.js";
import type { DiagnosisJob, JobQueue, QueueStats } from "./job-queue.js";

export interface RedisJobQueueOptions {
  /** e.g. `redis://127.0.0.1:6379`; credentials come from the key broker, not the URL. */
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /**
   * 32-byte keys by data-key version (the platform's system data key, every version held): the oldest names
   * members, the newest seals payloads, any opens them.
   */
  readonly keys: ReadonlyMap<number, Uint8Array>;
  readonly prefix?: string;
  readonly leaseMs?: number;
  readonly pollMs?: number;
  /**
   * How long a payload sealed under a key version this replica does not hold is left for replicas that hold
   * it (default 15 minutes: longer than a rolling restart). After that it is dropped; its order is still
   * active, so the reconciler queues it again.
   */
  readonly newerVersionGraceMs?: number;
  readonly now?: () => number;
}

// Atomically: return expired leases to their ready set, then move the first due job to running, an urgent
// one if any is due. KEYS: ready, running, ready:urgent. ARGV: now, lease expiry.
const takeScript = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[2], member)
  if string.sub(member, 1, 2) == 'u.' then
    redis.call('ZADD', KEYS[3], ARGV[1], member)
  else
    redis.call('ZADD', KEYS[1], ARGV[1], member)
  end
end
local from = KEYS[3]
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, 1)
if #due == 0 then
  from = KEYS[1]
  due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
end
if #due == 0 then return false end
redis.call('ZREM', from, due[1])
redis.call('ZADD', KEYS[2], ARGV[2], due[1])
return due[1]
`;

// Atomically: add the job only if it is neither waiting nor running. KEYS: its ready set, running, job, later.
const ensureScript = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('DEL', KEYS[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`;

// Atomically, for a taken job sealed under a key version this replica does not hold: note when that was
// first seen, then drop the job if that is at least the grace ago (returns 0), or put it back (returns 1).
// KEYS: running, its ready set, job, later. ARGV: member, now, due, grace, expiry of the note.
const laterScript = `
redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[5], 'NX')
local since = tonumber(redis.call('GET', KEYS[4])) or tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) - since >= tonumber(ARGV[4]) then
  redis.call('DEL', KEYS[3], KEYS[4])
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
`;

export function createRedisJobQueue(options: RedisJobQueueOptions): JobQueue & { readonly redis: Redis } {
  const prefix = options.prefix ?? "cloister:jobs";
  const leaseMs = options.leaseMs ?? 120_000;
  const pollMs = options.pollMs ?? 200;
  const newerVersionGraceMs = options.newerVersionGraceMs ?? 15 * 60_000;
  const now = options.now ?? Date.now;
  const derive = (key: Uint8Array, purpose: string): Buffer =>
    Buffer.from(hkdfSync("sha256", key, Buffer.alloc(0), `cloister job queue v1 ${purpose}`, 32));
  const versions = [...options.keys].sort(([a], [b]) => a - b);
  const oldestVersion = versions[0];
  const newestVersion = versions.at(-1);
  if (oldestVersion === undefined || newestVersion === undefined) {
    throw new PlatformError("ERR_NOT_READY", "the job queue needs a key");
  }
  const generations = versions.map(([generation]) => generation);
  const newest = newestVersion[0];
  const payloadKeys = new Map(versions.map(([generation, key]) => [generation, derive(key, "payload")]));
  const sealingKey = derive(newestVersion[1], "payload");
  const namingKey = derive(oldestVersion[1], "member");
  const redis = connectRedis({ ...options, maxRetriesPerRequest: 3 });
  let closed = false;

  const member = (job: DiagnosisJob): string =>
    (job.urgent === true ? "u." : "") +
    createHmac("sha256", namingKey).update(`${job.tenantId}/${job.serviceRequestId}`).digest("hex");
  const ready = `${prefix}:ready`;
  const readyUrgent = `${prefix}:ready:urgent`;
  /** The ready set a member waits in. */
  const readyOf = (name: string): string => (name.startsWith("u.") ? readyUrgent : ready);

  // The version is part of the associated data, so a payload cannot be relabelled.
  const associated = (name: string, generation: number): Buffer => Buffer.from(`${name}/g${generation}`);

  const seal = (job: DiagnosisJob, name: string): string =>
    `g${newest}.${sealBytes(sealingKey, associated(name, newest), Buffer.from(JSON.stringify(job))).toString("base64")}`;

  /**
   * The job, or "later" when it was sealed under a newer key version than this replica holds (another replica
   * opens it), or "unreadable" when no key held opens it (its version was destroyed, or it was altered).
   */
  const open = (stored: string, name: string): DiagnosisJob | "later" | "unreadable" => {
    const match = /^g([0-9]{1,9})\.(.*)$/s.exec(stored);
    // Payloads from before versions were recorded were sealed with the newest key of their replica then.
    const candidates =
      match === null
        ? generations.map((generation) => ({ generation, text: stored, legacy: true }))
        : [{ generation: Number(match[1]), text: match[2] ?? "", legacy: false }];
    if (match !== null && !payloadKeys.has(Number(match[1]))) {
      return Number(match[1]) > newest ? "later" : "unreadable";
    }
    for (const { generation, text, legacy } of candidates) {
      const key = payloadKeys.get(generation);
      if (key === undefined) {
        continue;
      }
      try {
        const plaintext = openBytes(
          key,
          legacy ? Buffer.from(name) : associated(name, generation),
          Buffer.from(text, "base64"),
        );
        return JSON.parse(plaintext.toString("utf8")) as DiagnosisJob;
      } catch {
        // The next version held, if any.
      }
    }
    return "unreadable";
  };

  const failure = (cause: unknown): PlatformError =>
    cause instanceof PlatformError
      ? cause
      : new PlatformError("ERR_STORAGE", "the job queue is unavailable", { cause });

  const stats = async (): Promise<QueueStats> => {
    const at = now();
    const [routine, urgent, running, oldestRoutine, oldestUrgent] = await Promise.all([
      redis.zcard(ready),
      redis.zcard(readyUrgent),
      redis.zcard(`${prefix}:running`),
      redis.zrangebyscore(ready, "-inf", at, "WITHSCORES", "LIMIT", 0, 1),
      redis.zrangebyscore(readyUrgent, "-inf", at, "WITHSCORES", "LIMIT", 0, 1),
    ]);
    const due = [oldestRoutine[1], oldestUrgent[1]].flatMap((score) =>
      score === undefined ? [] : [Number(score)],
    );
    return {
      waiting: routine + urgent,
      running,
      oldestDueAt: due.length === 0 ? undefined : Math.min(...due),
    };
  };
  return {
    redis,
    stats,
    enqueue: async (job, delayMs = 0) => {
      const name = member(job);
      try {
        await redis
          .multi()
          .set(`${prefix}:job:${name}`, seal(job, name))
          .del(`${prefix}:later:${name}`)
          .zrem(`${prefix}:running`, name)
          .zadd(readyOf(name), "NX", now() + delayMs, name)
          .exec();
      } catch (cause) {
        throw failure(cause);
      }
    },
    ensureQueued: async (job) => {
      const name = member(job);
      try {
        const added = await redis.eval(
          ensureScript,
          4,
          readyOf(name),
          `${prefix}:running`,
          `${prefix}:job:${name}`,
          `${prefix}:later:${name}`,
          name,
          seal(job, name),
          now(),
        );
        return added === 1;
      } catch (cause) {
        throw failure(cause);
      }
    },
    take: async () => {
      while (!closed) {
        try {
          const at = now();
          const name = (await redis.eval(
            takeScript,
            3,
            ready,
            `${prefix}:running`,
            readyUrgent,
            at,
            at + leaseMs,
          )) as string | null;
          if (name !== null) {
            const stored = await redis.get(`${prefix}:job:${name}`);
            const job = stored === null ? "unreadable" : open(stored, name);
            if (typeof job === "object") {
              return job;
            }
            if (job === "later") {
              // Back to waiting, for a replica that holds the newer key version; dropped once the grace is
              // over, since then no replica holds it.
              await redis.eval(
                laterScript,
                4,
                `${prefix}:running`,
                readyOf(name),
                `${prefix}:job:${name}`,
                `${prefix}:later:${name}`,
                name,
                at,
                at + pollMs * 5,
                newerVersionGraceMs,
                2 * newerVersionGraceMs + leaseMs,
              );
            } else {
              // Nobody can open it: drop it. Its order is still active, so the reconciler queues it again.
              await redis.multi().zrem(`${prefix}:running`, name).del(`${prefix}:job:${name}`).exec();
            }
          }
        } catch {
          // Redis is down or restarting: wait and try again; nothing is lost while it is away.
        }
        await new Promise((resolve) => setTimeout(resolve, pollMs));
      }
      return undefined;
    },
    complete: async (job) => {
      const name = member(job);
      try {
        await redis
          .multi()
          .zrem(`${prefix}:running`, name)
          .del(`${prefix}:job:${name}`, `${prefix}:later:${name}`)
          .exec();
      } catch (cause) {
        throw failure(cause);
      }
    },
    close: async () => {
      closed = true;
      redis.disconnect();
    },
  };
}
