// Load shedding by event-loop delay: while the loop is starved, requests are refused at once with the
// service's own error and Retry-After; health and metrics are still answered; calm brings service back.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createServiceApp } from "./index.js";

class TestOverloaded extends Error {
  readonly statusCode = 503;
}

test("a starved event loop sheds requests with the service's error and Retry-After, and recovers", async () => {
  const { app } = createServiceApp({
    bodyLimit: 1024,
    loadShedding: {
      maxEventLoopDelayMs: 50,
      sampleIntervalMs: 100,
      overloaded: () => new TestOverloaded("overloaded"),
    },
  });
  app.setErrorHandler(async (error, _request, reply) =>
    reply
      .status(error instanceof TestOverloaded ? 503 : 500)
      .send({ code: error instanceof TestOverloaded ? "ERR_OVERLOADED" : "other" }),
  );
  app.get("/work", async () => ({ done: true }));
  try {
    assert.equal((await app.inject({ method: "GET", url: "/work" })).statusCode, 200);
    // Starve the loop with 150 ms slices of synchronous work, a request arriving between slices, as on a
    // server whose CPU cannot keep up; within a few sample windows the requests are shed.
    let shed = await app.inject({ method: "GET", url: "/work" });
    for (let slice = 0; slice < 20 && shed.statusCode === 200; slice++) {
      const until = Date.now() + 150;
      while (Date.now() < until) {
        // busy
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
      shed = await app.inject({ method: "GET", url: "/work" });
    }
    assert.equal(shed.statusCode, 503);
    assert.equal(shed.headers["retry-after"], "1");
    assert.deepEqual(shed.json(), { code: "ERR_OVERLOADED" });
    assert.equal(
      (await app.inject({ method: "GET", url: "/healthz" })).statusCode,
      200,
      "health is never shed",
    );
    const metrics = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.match(metrics, /http_requests_shed_total 1/);
    assert.match(metrics, /event_loop_delay_seconds 0\.[1-9]/);
    // Calm for two windows: served again.
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal((await app.inject({ method: "GET", url: "/work" })).statusCode, 200);
  } finally {
    await app.close();
  }
});
