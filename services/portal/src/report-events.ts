// Live report status: the platform's server-sent events (`GET /events`), read with fetch so the access token
// travels in a header, never in a URL. Events carry ids and statuses only, no PHI.
//
// Events are a hint, not the record: one sent while the stream was down, or one lost between the platform's
// replicas while Redis was away, never arrives. So the stream says when it (re)connects and when it drops, and
// a stream that has been silent for longer than three of the platform's 15 s heartbeats is treated as dropped
// (a proxy or a sleeping laptop can leave a connection open that no longer carries anything).
export interface ReportEvent {
  readonly type: string;
  readonly id: string;
  readonly status: string;
  readonly basedOn: string;
  /** The order's patient (`Patient/<id>`). */
  readonly subject?: string;
}

export interface ReportEventHandlers {
  readonly onEvent: (event: ReportEvent) => void;
  /** The stream is (re)connected. Events sent while it was down are lost: read the record again. */
  readonly onConnected?: () => void;
  /** The stream dropped, or went silent; it reconnects after `reconnectDelayMs`. */
  readonly onDisconnected?: () => void;
}

export interface ReportEventOptions {
  /** Pause before reconnecting (default 2 s). */
  readonly reconnectDelayMs?: number;
  /** A connection that carries nothing, not even a heartbeat, for this long is dropped (default 45 s). */
  readonly silenceTimeoutMs?: number;
  /** For tests: the fetch to use (default the global one). */
  readonly fetch?: typeof fetch;
}

function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

/** Follows the event stream until `signal` aborts; reconnects after a drop or a silence. */
export async function followReportEvents(
  platformUrl: string,
  accessToken: () => string | undefined,
  handlers: ReportEventHandlers,
  signal: AbortSignal,
  options: ReportEventOptions = {},
): Promise<void> {
  const fetchEvents = options.fetch ?? fetch;
  const silenceTimeoutMs = options.silenceTimeoutMs ?? 45_000;
  while (!signal.aborted) {
    const token = accessToken();
    if (token === undefined) {
      return;
    }
    // One controller per connection: the silence watchdog aborts this connection, not the caller's signal.
    const connection = new AbortController();
    const abortConnection = (): void => {
      connection.abort();
    };
    signal.addEventListener("abort", abortConnection);
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const heardFrom = (): void => {
      clearTimeout(watchdog);
      watchdog = setTimeout(abortConnection, silenceTimeoutMs);
    };
    let connected = false;
    try {
      heardFrom();
      const response = await fetchEvents(new URL("/events", platformUrl), {
        headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
        signal: connection.signal,
        cache: "no-store",
      });
      if (!response.ok || response.body === null) {
        throw new Error(`events: HTTP ${response.status}`);
      }
      connected = true;
      handlers.onConnected?.();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        heardFrom();
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block
            .split("\n")
            .filter((line) => line.startsWith("data: "))
            .map((line) => line.slice(6))
            .join("\n");
          if (data !== "") {
            handlers.onEvent(JSON.parse(data) as ReportEvent);
          }
        }
      }
    } catch {
      // The stream dropped, went silent or was aborted: the loop reconnects unless aborted.
    } finally {
      clearTimeout(watchdog);
      signal.removeEventListener("abort", abortConnection);
    }
    // Read through a function: TypeScript keeps the loop condition's narrowing across the awaits above.
    if (connected && !isAborted(signal)) {
      handlers.onDisconnected?.();
    }
    await new Promise((resolve) => setTimeout(resolve, options.reconnectDelayMs ?? 2000));
  }
}
