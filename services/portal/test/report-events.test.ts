// The portal's event-stream follower against a real HTTP server speaking server-sent events as the platform
// does (`data:` events, `: heartbeat` comments): it says when it connects and drops, reconnects after a drop,
// drops a connection that has gone silent (no heartbeat) instead of waiting on it for ever, and stops when
// aborted.
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { after, afterEach, before, test } from "node:test";
import { followReportEvents, type ReportEvent } from "../src/report-events.js";

/** What the next connection does; each test sets it. */
let behave: (response: ServerResponse, connection: number) => void = () => undefined;
let connectionsServed = 0;
const authorizations: (string | undefined)[] = [];
const server = createServer((request, response) => {
  authorizations.push(request.headers.authorization);
  connectionsServed++;
  behave(response, connectionsServed);
});
let url = "";
/** The running test's follower, aborted after every test however it ended, so none is left reconnecting. */
let controller = new AbortController();
afterEach(() => {
  controller.abort();
});

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function openStream(response: ServerResponse): void {
  response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
  response.flushHeaders();
}

const event = (id: string): ReportEvent => ({
  type: "DiagnosticReport",
  id,
  status: "final",
  basedOn: `ServiceRequest/${id}`,
});

function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (condition()) {
        resolve();
      } else if (Date.now() > deadline) {
        reject(new Error(`timed out waiting for ${what}`));
      } else {
        setTimeout(poll, 5);
      }
    };
    poll();
  });
}

test("events arrive; a dropped stream is reported, reconnected and reported connected again", async () => {
  connectionsServed = 0;
  behave = (response, connection) => {
    openStream(response);
    // An event split across two writes, then (first connection only) the platform going away.
    response.write(`data: ${JSON.stringify(event(`r${connection}`)).slice(0, 10)}`);
    setTimeout(() => {
      response.write(`${JSON.stringify(event(`r${connection}`)).slice(10)}\n\n`);
      if (connection === 1) {
        response.end();
      }
    }, 10);
  };
  const log: string[] = [];
  controller = new AbortController();
  const following = followReportEvents(
    url,
    () => "token-1",
    {
      onEvent: (received) => log.push(`event ${received.id}`),
      onConnected: () => log.push("connected"),
      onDisconnected: () => log.push("disconnected"),
    },
    controller.signal,
    { reconnectDelayMs: 20 },
  );
  await until(() => log.includes("event r2"), "the second connection's event");
  controller.abort();
  await following;
  assert.deepEqual(log, ["connected", "event r1", "disconnected", "connected", "event r2"]);
  assert.deepEqual(authorizations.slice(-2), ["Bearer token-1", "Bearer token-1"]);
});

test("a stream that goes silent (no heartbeat) is dropped and reconnected; heartbeats keep it open", async () => {
  connectionsServed = 0;
  const open: ServerResponse[] = [];
  behave = (response, connection) => {
    openStream(response);
    open.push(response);
    if (connection === 1) {
      // Silent after the headers: a proxy holding a dead connection.
      return;
    }
    const heartbeat = setInterval(() => response.write(": heartbeat\n\n"), 20);
    response.on("close", () => {
      clearInterval(heartbeat);
    });
  };
  const log: string[] = [];
  controller = new AbortController();
  const following = followReportEvents(
    url,
    () => "token-2",
    {
      onEvent: () => log.push("event"),
      onConnected: () => log.push("connected"),
      onDisconnected: () => log.push("disconnected"),
    },
    controller.signal,
    { reconnectDelayMs: 10, silenceTimeoutMs: 150 },
  );
  await until(() => connectionsServed === 2, "a second connection after the silent one");
  // The second connection hears a heartbeat every 20 ms: it stays open well past the silence timeout.
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.equal(connectionsServed, 2, "a connection with heartbeats is kept");
  assert.deepEqual(log, ["connected", "disconnected", "connected"]);
  open[1]?.write(`data: ${JSON.stringify(event("late"))}\n\n`);
  await until(() => log.includes("event"), "an event on the kept connection");
  controller.abort();
  await following;
  assert.deepEqual(log, ["connected", "disconnected", "connected", "event"], "abort is not a disconnection");
});

test("a refused stream is not reported connected, and is tried again; without a session the follower stops", async () => {
  connectionsServed = 0;
  behave = (response, connection) => {
    if (connection === 1) {
      response.writeHead(401, { "content-type": "application/problem+json" }).end("{}");
      return;
    }
    openStream(response);
  };
  const log: string[] = [];
  controller = new AbortController();
  let token: string | undefined = "token-3";
  const following = followReportEvents(
    url,
    () => token,
    {
      onEvent: () => log.push("event"),
      onConnected: () => log.push("connected"),
      onDisconnected: () => log.push("disconnected"),
    },
    controller.signal,
    { reconnectDelayMs: 10 },
  );
  await until(() => log.includes("connected"), "the retry to connect");
  assert.equal(connectionsServed, 2);
  // Signed out: the open stream is closed by the portal (abort), and the follower does not start another.
  token = undefined;
  controller.abort();
  await following;
  assert.deepEqual(log, ["connected"]);
  const signedOut = followReportEvents(
    url,
    () => undefined,
    { onEvent: () => undefined },
    new AbortController().signal,
  );
  await signedOut;
  assert.equal(connectionsServed, 2, "no request without a session");
});
