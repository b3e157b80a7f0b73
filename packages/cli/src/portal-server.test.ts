import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { portalRequestHandler } from "./portal-server.js";

const root = mkdtempSync(join(tmpdir(), "cloister-portal-"));
let server: Server;
let base: string;

before(async () => {
  mkdirSync(join(root, "assets"));
  writeFileSync(join(root, "index.html"), "<!doctype html><title>portal</title>");
  writeFileSync(join(root, "assets/app-1234.js"), "console.log(1)");
  writeFileSync(join(root, "..", "outside-secret.txt"), "secret");
  server = createServer(
    portalRequestHandler({
      root,
      config: { platformUrl: "https://127.0.0.1:7446", attestationUrl: "https://127.0.0.1:7443" },
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  base = `http://127.0.0.1:${address.port}`;
});
after(() => {
  server.close();
  rmSync(root, { recursive: true, force: true });
  rmSync(join(root, "..", "outside-secret.txt"), { force: true });
});

test("serves the app, its assets and config with strict security headers", async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  const csp = index.headers.get("content-security-policy") ?? "";
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /connect-src 'self' https:\/\/127\.0\.0\.1:7446 https:\/\/127\.0\.0\.1:7443/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(index.headers.get("referrer-policy"), "no-referrer");
  const asset = await fetch(`${base}/assets/app-1234.js`);
  assert.match(asset.headers.get("cache-control") ?? "", /immutable/);
  assert.match(asset.headers.get("content-type") ?? "", /text\/javascript/);
  const config = (await (await fetch(`${base}/config.json`)).json()) as { platformUrl: string };
  assert.equal(config.platformUrl, "https://127.0.0.1:7446");
  // App routes get the app; missing assets do not.
  assert.equal((await fetch(`${base}/patients/anything`)).status, 200);
  assert.equal((await fetch(`${base}/assets/missing.js`)).status, 404);
});

test("refuses path traversal, malformed escapes and writes", async () => {
  for (const path of ["/..%2foutside-secret.txt", "/assets/..%2f..%2foutside-secret.txt"]) {
    const response = await fetch(`${base}${path}`);
    assert.equal(response.status, 404, path);
    assert.notEqual(await response.text(), "secret", path);
  }
  assert.equal((await fetch(`${base}/%E0%A4%A`)).status, 400);
  assert.equal((await fetch(`${base}/`, { method: "POST", body: "x" })).status, 405);
});
