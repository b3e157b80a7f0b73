// Waiting out a dependency that refuses connections at start, against a real TCP port: a key broker that
// comes up late is waited for; a refusal, or a dependency that never comes, ends the wait.
import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import { createServer, type AddressInfo } from "node:net";
import { test } from "node:test";
import { EnclaveError } from "./errors.js";
import { requestJson } from "./https-client.js";
import { retryWhileUnreachable } from "./start-retry.js";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => {
        resolve(port);
      });
    });
  });
}

test("waits for a dependency that starts listening later, then answers", async () => {
  const port = await freePort();
  const server = createHttpServer((_request, response) => {
    response.setHeader("content-type", "application/json");
    response.end(JSON.stringify({ ready: true }));
  });
  // Nothing listens for the first 300 ms: connections are refused.
  setTimeout(() => server.listen(port, "127.0.0.1"), 300);
  const retries: number[] = [];
  try {
    const answer = await retryWhileUnreachable(
      () => requestJson("GET", `http://127.0.0.1:${port}/`, undefined),
      {
        initialDelayMs: 50,
        onRetry: (attempt) => retries.push(attempt),
      },
    );
    assert.deepEqual(answer, { status: 200, body: { ready: true } });
    assert.ok(retries.length >= 2, `it waited (${retries.length} retries)`);
  } finally {
    server.close();
  }
});

test("does not retry a refusal, and gives up on a dependency that never comes", async () => {
  let calls = 0;
  await assert.rejects(
    retryWhileUnreachable(async () => {
      calls++;
      throw new EnclaveError("ERR_PEER_RESPONSE", "the key broker refused");
    }),
    (error: unknown) => error instanceof EnclaveError && error.code === "ERR_PEER_RESPONSE",
  );
  assert.equal(calls, 1, "a refusal is the answer, not a reason to wait");

  const port = await freePort();
  const started = Date.now();
  await assert.rejects(
    retryWhileUnreachable(() => requestJson("GET", `http://127.0.0.1:${port}/`, undefined), {
      deadlineMs: 400,
      initialDelayMs: 50,
    }),
    (error: unknown) => error instanceof EnclaveError && error.code === "ERR_UNREACHABLE",
  );
  assert.ok(Date.now() - started < 2000, "the deadline holds");
});
