// The portal's static file server for the local stack: the Vite build output over HTTPS, exactly what a
// static website host (Azure Blob Storage, nginx) would serve, plus `/config.json` (the platform and
// attestation URLs and the platform measurement the portal must see). Strict security headers: the portal
// may talk only to its own origin, the platform and the attestation service.
//   CLOISTER_PORTAL_PORT, CLOISTER_PORTAL_ROOT (the build folder), CLOISTER_PORTAL_CONFIG (JSON file),
//   CLOISTER_TLS_CERT, CLOISTER_TLS_KEY
import { createReadStream, readFileSync, statSync } from "node:fs";
import { createServer, type ServerOptions } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";

const contentTypes: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
};

export interface PortalServerOptions {
  readonly root: string;
  /** The runtime configuration served at /config.json. */
  readonly config: { readonly platformUrl: string; readonly attestationUrl: string } & Record<
    string,
    unknown
  >;
}

/** The headers every response carries. */
export function securityHeaders(config: PortalServerOptions["config"]): Record<string, string> {
  const connect = ["'self'", new URL(config.platformUrl).origin, new URL(config.attestationUrl).origin];
  return {
    "content-security-policy": [
      "default-src 'self'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' blob: data:",
      `connect-src ${connect.join(" ")}`,
      "worker-src 'self' blob:",
      "object-src 'none'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join("; "),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
    "strict-transport-security": "max-age=31536000",
  };
}

/** Handles one request: files below `root`, /config.json, /healthz, and index.html for app routes. */
export function portalRequestHandler(
  options: PortalServerOptions,
): (request: IncomingMessage, response: ServerResponse) => void {
  const root = resolve(options.root);
  const headers = securityHeaders(options.config);
  const configBody = JSON.stringify(options.config);
  return (request, response) => {
    for (const [name, value] of Object.entries(headers)) {
      response.setHeader(name, value);
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(request.url ?? "/", "https://portal").pathname);
    } catch {
      response.writeHead(400).end();
      return;
    }
    if (path === "/healthz") {
      response.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
      return;
    }
    if (path === "/config.json") {
      response
        .writeHead(200, { "content-type": "application/json", "cache-control": "no-store" })
        .end(configBody);
      return;
    }
    let file = normalize(join(root, path));
    if (file !== root && !file.startsWith(root + sep)) {
      response.writeHead(404).end();
      return;
    }
    let size: number;
    try {
      const stat = statSync(file);
      if (stat.isDirectory()) {
        file = join(file, "index.html");
      }
      size = statSync(file).size;
    } catch {
      // App routes (no extension) get the app; missing assets get 404.
      if (extname(path) !== "") {
        response.writeHead(404).end();
        return;
      }
      file = join(root, "index.html");
      size = statSync(file).size;
    }
    const hashedAsset = path.startsWith("/assets/");
    response.writeHead(200, {
      "content-type": contentTypes[extname(file)] ?? "application/octet-stream",
      "content-length": size,
      "cache-control": hashedAsset ? "public, max-age=31536000, immutable" : "no-cache",
    });
    if (request.method === "HEAD") {
      response.end();
      return;
    }
    createReadStream(file).pipe(response);
  };
}

/** Runs the server from the environment (the `cloister up` child process). */
export function runPortalServer(): void {
  const env = (name: string): string => {
    const value = process.env[name];
    if (value === undefined || value === "") {
      throw new Error(`${name} is not set`);
    }
    return value;
  };
  const tls: ServerOptions = {
    cert: readFileSync(env("CLOISTER_TLS_CERT")),
    key: readFileSync(env("CLOISTER_TLS_KEY")),
  };
  const config = JSON.parse(
    readFileSync(env("CLOISTER_PORTAL_CONFIG"), "utf8"),
  ) as PortalServerOptions["config"];
  const server = createServer(tls, portalRequestHandler({ root: env("CLOISTER_PORTAL_ROOT"), config }));
  const port = Number.parseInt(env("CLOISTER_PORTAL_PORT"), 10);
  server.listen(port, process.env.CLOISTER_LISTEN_HOST ?? "127.0.0.1", () => {
    process.stdout.write(`${JSON.stringify({ level: 30, msg: "portal server ready", port })}\n`);
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      server.close(() => process.exit(0));
      server.closeAllConnections();
    });
  }
}
