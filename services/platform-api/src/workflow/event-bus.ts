// Report events (ids and statuses of new and changed DiagnosticReports) for every replica's server-sent event
// streams: a clinician's stream is held by one replica, while the report may be written by another one's
// worker. In memory for one replica; with Redis, each event is also published on one channel, sealed under a
// key derived from the platform's system key, so Redis sees neither tenants nor ids.
import { hkdfSync, randomBytes } from "node:crypto";
import { connectRedis } from "../redis-connection.js";
import { openBytes, sealBytes } from "../storage/record-crypto.js";

export interface ReportEvent {
  readonly type: string;
  readonly id: string;
  readonly status: string;
  readonly basedOn: string;
  /** The patient (`Patient/<id>`), so a page open on that patient notices an order placed elsewhere. */
  readonly subject?: string;
}

export type ReportEventListener = (tenantId: string, event: ReportEvent) => void;

export interface ReportEventBus {
  /** Delivers the event to this replica's listeners at once, and to the other replicas' when shared. */
  readonly publish: (tenantId: string, event: ReportEvent) => void;
  /** Every event of every tenant, this replica's and the others'; returns the unsubscribe function. */
  readonly subscribe: (listener: ReportEventListener) => () => void;
  readonly close: () => Promise<void>;
}

function localListeners(): {
  add: (listener: ReportEventListener) => () => void;
  deliver: ReportEventListener;
} {
  const listeners = new Set<ReportEventListener>();
  return {
    add: (listener) => {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    deliver: (tenantId, event) => {
      for (const listener of listeners) {
        listener(tenantId, event);
      }
    },
  };
}

/** One replica: events stay in this process. */
export function createMemoryEventBus(): ReportEventBus {
  const listeners = localListeners();
  return {
    publish: listeners.deliver,
    subscribe: listeners.add,
    close: async () => undefined,
  };
}

const associated = Buffer.from("cloister report event v1");

function isReportEvent(value: unknown): value is { tenantId: string; event: ReportEvent } {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const { tenantId, event } = value as { tenantId?: unknown; event?: Partial<Record<string, unknown>> };
  return (
    typeof tenantId === "string" &&
    typeof event === "object" &&
    ["type", "id", "status", "basedOn"].every((field) => typeof event[field] === "string") &&
    (event.subject === undefined || typeof event.subject === "string")
  );
}

export interface RedisEventBusOptions {
  readonly url: string;
  readonly username?: string;
  readonly password?: string;
  /**
   * A 32-byte key every replica holds: the platform's system key, its oldest version held, which replicas on
   * both sides of a rotation share.
   */
  readonly key: Uint8Array;
  readonly channel?: string;
  /** Called when an event could not be published (Redis away): other replicas' streams miss it. */
  readonly onUnavailable?: () => void;
}

/** Several replicas: events also travel through Redis pub/sub, sealed. */
export function createRedisEventBus(
  options: RedisEventBusOptions,
): ReportEventBus & { readonly subscribed: Promise<void> } {
  const channel = options.channel ?? "cloister:report-events";
  const sealingKey = Buffer.from(hkdfSync("sha256", options.key, Buffer.alloc(0), "cloister events v1", 32));
  // Each replica skips what it published itself: its own listeners had it at once.
  const origin = randomBytes(8).toString("hex");
  const publisher = connectRedis(options);
  // The subscriber waits for messages, and subscribes again by itself after a reconnect.
  const subscriber = connectRedis({ ...options, maxRetriesPerRequest: 20 });
  const listeners = localListeners();
  const subscribe = (): Promise<void> =>
    subscriber.subscribe(channel).then(
      () => undefined,
      () => undefined,
    );
  const subscribed = subscribe();
  // After a reconnect ioredis subscribes again by itself, but only to channels it had subscribed to: if Redis
  // was away from the start, subscribe when it comes (a second subscription to a channel is a no-op).
  subscriber.on("ready", () => {
    void subscribe();
  });
  subscriber.on("messageBuffer", (_channel: Buffer, message: Buffer) => {
    const separator = message.indexOf(".");
    if (separator < 0 || message.subarray(0, separator).toString("latin1") === origin) {
      return;
    }
    let opened: unknown;
    try {
      opened = JSON.parse(
        openBytes(
          sealingKey,
          associated,
          Buffer.from(message.subarray(separator + 1).toString("latin1"), "base64"),
        ).toString("utf8"),
      );
    } catch {
      // Sealed under another key, or altered: not an event of this platform.
      return;
    }
    if (isReportEvent(opened)) {
      listeners.deliver(opened.tenantId, opened.event);
    }
  });
  return {
    subscribed,
    publish: (tenantId, event) => {
      listeners.deliver(tenantId, event);
      const sealed = sealBytes(sealingKey, associated, Buffer.from(JSON.stringify({ tenantId, event })));
      publisher.publish(channel, `${origin}.${sealed.toString("base64")}`).catch(() => {
        options.onUnavailable?.();
      });
    },
    subscribe: listeners.add,
    close: async () => {
      // Not waiting for the subscription: with Redis away it would wait for ioredis to give up.
      subscriber.disconnect();
      publisher.disconnect();
    },
  };
}
