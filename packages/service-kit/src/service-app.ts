// The Fastify app every Cloister service starts from: logs that name only the method, route template and
// request id (never headers, query, bodies, tokens or evidence), Prometheus request counts and latencies by
// route template, and the liveness and metrics routes.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import { X509Certificate } from "node:crypto";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

export interface ServiceAppOptions {
  readonly logger?: FastifyServerOptions["logger"];
  readonly https?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  readonly bodyLimit: number;
  /**
   * Browser origins allowed to call this service (CORS), e.g. the portal's. Requests from other origins get
   * no CORS headers, so browsers refuse them; requests without an Origin (services, curl) are unaffected.
   */
  readonly corsOrigins?: readonly string[];
}

export interface ServiceApp {
  readonly app: FastifyInstance;
  /** Register the service's own metrics here; `/metrics` serves it. */
  readonly registry: Registry;
}

const serializers = {
  req: (request: { method: string; id: string; routeOptions?: { url?: string } }) => ({
    method: request.method,
    route: request.routeOptions?.url ?? "unmatched",
    id: request.id,
  }),
  res: (reply: { statusCode: number }) => ({ statusCode: reply.statusCode }),
};

export function createServiceApp(options: ServiceAppOptions): ServiceApp {
  const logger =
    options.logger === undefined || options.logger === false
      ? false
      : options.logger === true
        ? { serializers }
        : { ...options.logger, serializers };
  const app = Fastify({
    logger,
    bodyLimit: options.bodyLimit,
    ...(options.https === undefined ? {} : { https: { cert: options.https.cert, key: options.https.key } }),
  }) as unknown as FastifyInstance;
  const registry = new Registry();
  const requests = new Counter({
    name: "http_requests_total",
    help: "HTTP requests by method, route template and status",
    labelNames: ["method", "route", "status"],
    registers: [registry],
  });
  const latency = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request latency by route template",
    labelNames: ["method", "route"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  app.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    latency.observe({ method: request.method, route }, reply.elapsedTime / 1000);
  });
  const corsOrigins = new Set(options.corsOrigins ?? []);
  if (corsOrigins.size > 0) {
    app.addHook("onRequest", async (request, reply) => {
      const origin = request.headers.origin;
      if (origin === undefined || !corsOrigins.has(origin)) {
        return;
      }
      reply.header("access-control-allow-origin", origin).header("vary", "Origin");
      reply.header("access-control-expose-headers", "retry-after, location, etag");
      if (request.method === "OPTIONS" && request.headers["access-control-request-method"] !== undefined) {
        await reply
          .status(204)
          .header("access-control-allow-methods", "GET, POST, PUT")
          .header("access-control-allow-headers", "authorization, content-type, accept")
          .header("access-control-max-age", "600")
          .send();
      }
    });
  }
  if (options.https !== undefined) {
    const [certificate] = pemCertificates(options.https.cert.toString());
    if (certificate !== undefined) {
      new Gauge({
        name: "tls_certificate_expiry_timestamp_seconds",
        help: "When this service's TLS certificate expires (Unix seconds)",
        registers: [registry],
      }).set(Date.parse(new X509Certificate(certificate).validTo) / 1000);
    }
  }
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/metrics", async (_request, reply) =>
    reply.header("content-type", registry.contentType).send(await registry.metrics()),
  );
  return { app, registry };
}

/** True for Fastify's own client errors (bad JSON, body too large, unsupported media type). */
export function isClientError(error: unknown): boolean {
  return (
    typeof error === "object" &&
    error !== null &&
    "statusCode" in error &&
    typeof error.statusCode === "number" &&
    error.statusCode >= 400 &&
    error.statusCode < 500
  );
}

function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
