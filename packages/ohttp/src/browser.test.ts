// The package must run in browsers: bundle it for the browser platform (a node: import fails the build),
// then run a full OHTTP round trip in a bare V8 context that has only what browsers have.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createContext, runInContext } from "node:vm";
import { test } from "node:test";
import { build } from "esbuild";

test("the package bundles for browsers and round-trips in a context without Node's APIs", async () => {
  const entry = join(dirname(fileURLToPath(import.meta.url)), "index.ts");
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    platform: "browser",
    format: "iife",
    globalName: "ohttp",
    write: false,
    logLevel: "silent",
  });
  const code = bundle.outputFiles[0]?.text ?? "";
  assert.doesNotMatch(code, /require\("node:/);
  const context = createContext({
    crypto: globalThis.crypto,
    TextEncoder,
    TextDecoder,
    Uint8Array,
    ArrayBuffer,
    DataView,
    Promise,
  });
  runInContext(code, context);
  const outcome = (await runInContext(
    `(async () => {
      const key = await ohttp.generateOhttpKeyPair({ keyId: 9 });
      const gateway = new ohttp.OhttpGateway({ keys: [key] });
      const sealed = await ohttp.encapsulateRequest(key.keyConfig, ohttp.encodeRequest({ path: "/v2/models" }));
      const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
      const reply = await opened.sealResponse(ohttp.encodeResponse({ status: 200, body: "browser" }));
      const response = ohttp.decodeResponse(await sealed.openResponse(reply));
      return [ohttp.decodeRequest(opened.request).path, response.status, new TextDecoder().decode(response.body)];
    })()`,
    context,
  )) as unknown[];
  assert.deepEqual([...outcome], ["/v2/models", 200, "browser"]);
});
