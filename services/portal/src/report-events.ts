// Live report status: the platform's server-sent events (`GET /events`), read with fetch so the access token
// travels in a header, never in a URL. Events carry ids and statuses only, no PHI.
export interface ReportEvent {
  readonly type: string;
  readonly id: string;
  readonly status: string;
  readonly basedOn: string;
}

/** Follows the event stream until `signal` aborts; reconnects after a drop. */
export async function followReportEvents(
  platformUrl: string,
  accessToken: () => string | undefined,
  onEvent: (event: ReportEvent) => void,
  signal: AbortSignal,
  onConnected?: () => void,
): Promise<void> {
  while (!signal.aborted) {
    const token = accessToken();
    if (token === undefined) {
      return;
    }
    try {
      const response = await fetch(new URL("/events", platformUrl), {
        headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
        signal,
        cache: "no-store",
      });
      if (!response.ok || response.body === null) {
        throw new Error(`events: HTTP ${response.status}`);
      }
      onConnected?.();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
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
            onEvent(JSON.parse(data) as ReportEvent);
          }
        }
      }
    } catch {
      // The stream dropped (or was aborted): the loop reconnects unless aborted.
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}
