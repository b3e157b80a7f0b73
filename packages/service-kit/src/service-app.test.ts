import assert from "node:assert/strict";
import { test } from "node:test";
import { createServiceApp } from "./service-app.js";

test("CORS: only the listed origins get CORS headers, and preflights are answered", async () => {
  const { app } = createServiceApp({ bodyLimit: 1024, corsOrigins: ["https://portal.example"] });
  app.get("/thing", async () => ({ ok: true }));
  const allowed = await app.inject({
    method: "GET",
    url: "/thing",
    headers: { origin: "https://portal.example" },
  });
  assert.equal(allowed.headers["access-control-allow-origin"], "https://portal.example");
  assert.equal(allowed.headers.vary, "Origin");
  const other = await app.inject({
    method: "GET",
    url: "/thing",
    headers: { origin: "https://evil.example" },
  });
  assert.equal(other.headers["access-control-allow-origin"], undefined);
  const preflight = await app.inject({
    method: "OPTIONS",
    url: "/thing",
    headers: { origin: "https://portal.example", "access-control-request-method": "POST" },
  });
  assert.equal(preflight.statusCode, 204);
  assert.match(String(preflight.headers["access-control-allow-headers"]), /authorization/);
  const refusedPreflight = await app.inject({
    method: "OPTIONS",
    url: "/thing",
    headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
  });
  assert.notEqual(refusedPreflight.statusCode, 204);
  assert.equal(refusedPreflight.headers["access-control-allow-origin"], undefined);
  await app.close();
});
