// The Fastify app every Cloister service starts from: logs that name only the method, route template and
// request id (never headers, query, bodies, tokens or evidence), Prometheus request counts and latencies by
// route template, and the liveness and metrics routes.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import { X509Certificate } from "node:crypto";
import { performance } from "node:perf_hooks";
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
  /**
   * Addresses or CIDR ranges of the reverse proxies in front of this service (an ingress controller). Only
   * from them is `X-Forwarded-For` believed, so `request.ip` is the client's address and not the proxy's;
   * from anyone else the header is ignored, so a client cannot choose its own address.
   */
  readonly trustedProxies?: readonly string[];
  /**
   * Load shedding by event-loop delay (what @fastify/under-pressure does): when the loop was delayed more
   * than `maxEventLoopDelayMs` in each of the last two sample windows, requests other than health, metrics
   * and key sets (/certs, OpenID configuration) are refused
   * at once with the service's own typed error (`overloaded()`) and `Retry-After: 1`, instead of queueing
   * behind work the process cannot keep up with.
   */
  readonly loadShedding?: {
    readonly maxEventLoopDelayMs: number;
    readonly overloaded: () => Error;
    /** How often the delay is sampled (default 500 ms). */
    readonly sampleIntervalMs?: number;
  };
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
    ...(options.trustedProxies === undefined || options.trustedProxies.length === 0
      ? {}
      : { trustProxy: [...options.trustedProxies] }),
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
  if (options.loadShedding !== undefined) {
    shedLoad(app, registry, options.loadShedding);
  }
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/metrics", async (_request, reply) =>
    reply.header("content-type", registry.contentType).send(await registry.metrics()),
  );
  return { app, registry };
}

function shedLoad(
  app: FastifyInstance,
  registry: Registry,
  options: NonNullable<ServiceAppOptions["loadShedding"]>,
): void {
  // The loop's delay, measured as the lateness of a 10 ms timer: the largest lateness in each sample window.
  // (perf_hooks' monitorEventLoopDelay records nothing while the loop is starved in long slices, which is
  // exactly the case to catch.)
  let delayMs = 0;
  let windowMaxMs = 0;
  let expectedAt = performance.now() + 10;
  let ticker: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const now = performance.now();
    windowMaxMs = Math.max(windowMaxMs, now - expectedAt);
    expectedAt = now + 10;
    ticker = setTimeout(tick, 10);
    ticker.unref();
  };
  tick();
  let previousWindowMs = 0;
  const sample = setInterval(() => {
    // Lateness not yet seen by the ticker counts too: the ticker itself may be the one held up.
    const windowMs = Math.max(windowMaxMs, performance.now() - expectedAt);
    // Overload is delay in two windows running, not one long pause (a model load, a rare long GC).
    delayMs = Math.min(windowMs, previousWindowMs);
    previousWindowMs = windowMs;
    windowMaxMs = 0;
  }, options.sampleIntervalMs ?? 500);
  sample.unref();
  const shed = new Counter({
    name: "http_requests_shed_total",
    help: "Requests refused because the event loop was overloaded",
    registers: [registry],
  });
  new Gauge({
    name: "event_loop_delay_seconds",
    help: "Event-loop delay: the smaller of the largest delays of the last two sample windows",
    registers: [registry],
    collect() {
      this.set(delayMs / 1000);
    },
  });
  // Health, metrics, key sets and what replicas exchange are cheap, and refusing them would spread one
  // service's overload to every verifier of its tokens, or to its other replicas.
  const exempt = new Set([
    "/healthz",
    "/metrics",
    "/readyz",
    "/certs",
    "/.well-known/openid-configuration",
    "/peers/state",
  ]);
  app.addHook("onRequest", async (request, reply) => {
    if (delayMs > options.maxEventLoopDelayMs && !exempt.has(request.routeOptions.url ?? "")) {
      shed.inc();
      reply.header("retry-after", "1");
      throw options.overloaded();
    }
  });
  app.addHook("onClose", async () => {
    clearInterval(sample);
    clearTimeout(ticker);
  });
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
