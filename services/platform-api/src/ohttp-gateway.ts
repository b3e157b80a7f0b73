// The platform's OHTTP gateway (RFC 9458) for browsers: the portal seals every request that carries PHI
// to the key configuration bound into this TEE's evidence, so the portal's host, proxies and the TLS
// terminator see only ciphertext. Inside, each request is served by the same routes as a direct one
// (FHIR, login, models), so authorisation, validation and audit are the same.
import {
  decapsulationProblem,
  decodeRequest,
  encodeResponse,
  OhttpError,
  OhttpGateway,
  ohttpKeysMediaType,
  ohttpRequestMediaType,
  ohttpResponseMediaType,
  type BinaryRequest,
  type OhttpKeyPair,
} from "@cloister/ohttp";
import { nodeHpke } from "@cloister/ohttp/node";
import type { FastifyInstance } from "fastify";
import type { PlatformErrorCode } from "./errors.js";
import type { ReplayGuard } from "./replay-guard.js";

export interface PlatformGatewayOptions {
  readonly keys: OhttpKeyPair;
  /** Older versions of the shared key: opened, not offered, while clients move to the current one. */
  readonly previousKeys?: readonly OhttpKeyPair[];
  /** Largest encapsulated request. */
  readonly bodyLimit: number;
  readonly now: () => number;
  /** Clock difference tolerated between browser and platform (default 5 minutes: hospital desktops drift). */
  readonly clockSkewMs?: number;
  /** The replay check shared with the other replicas (they share the OHTTP key); each keeps its own too. */
  readonly replayGuard?: ReplayGuard;
}

/** Inner header fields passed to the route; everything else (cookies, forwarding) is dropped. */
const forwardedFields = new Set([
  "authorization",
  "content-type",
  "accept",
  "if-none-exist",
  "if-match",
  // FHIR's header naming the patient an uploaded image (Binary) belongs to.
  "x-security-context",
]);

function problem(
  status: number,
  code: PlatformErrorCode,
  title: string,
): { status: number; headers: [string, string][]; body: string } {
  return {
    status,
    headers: [["content-type", "application/problem+json"]],
    body: JSON.stringify({ title, status, code }),
  };
}

/** Adds `GET /ohttp-keys` and `POST /ohttp` to the platform. */
export function registerOhttpGateway(app: FastifyInstance, options: PlatformGatewayOptions): void {
  const gateway = new OhttpGateway({
    keys: [options.keys],
    previousKeys: options.previousKeys ?? [],
    now: options.now,
    hpke: nodeHpke,
  });
  const skewMs = options.clockSkewMs ?? 300_000;
  app.addContentTypeParser(
    ohttpRequestMediaType,
    { parseAs: "buffer", bodyLimit: options.bodyLimit },
    (_request, body, done) => {
      done(null, body);
    },
  );
  app.get("/ohttp-keys", async (_request, reply) =>
    reply.header("content-type", ohttpKeysMediaType).send(Buffer.from(gateway.keyConfigList())),
  );

  const serveInner = async (
    inner: BinaryRequest,
    remoteAddress: string,
  ): Promise<{ status: number; headers: [string, string][]; body: string | Uint8Array }> => {
    const date = inner.headers.find(([name]) => name === "date")?.[1];
    if (!gateway.acceptsDate(date, options.now(), skewMs)) {
      return problem(
        400,
        "ERR_REQUEST_STALE",
        "the encapsulated request's Date is missing, too old or in the future",
      );
    }
    if (!inner.path.startsWith("/") || inner.path.startsWith("/ohttp") || inner.path.startsWith("//")) {
      return problem(404, "ERR_NOT_FOUND", "no such route inside the gateway");
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of inner.headers) {
      if (forwardedFields.has(name)) {
        headers[name] = value;
      }
    }
    const method = inner.method.toUpperCase();
    if (!["GET", "POST", "PUT", "PATCH"].includes(method)) {
      return problem(405, "ERR_BAD_REQUEST", "the gateway serves GET, POST, PUT and PATCH");
    }
    const response = await app.inject({
      method: method as "GET" | "POST" | "PUT" | "PATCH",
      url: inner.path,
      headers,
      remoteAddress,
      ...(method === "GET"
        ? {}
        : { payload: Buffer.from(inner.body.buffer, inner.body.byteOffset, inner.body.length) }),
    });
    const kept: [string, string][] = [];
    for (const name of ["content-type", "location", "etag", "last-modified", "retry-after"]) {
      const value = response.headers[name];
      if (typeof value === "string") {
        kept.push([name, value]);
      }
    }
    return { status: response.statusCode, headers: kept, body: response.rawPayload };
  };

  app.post("/ohttp", async (request, reply) => {
    if (request.headers["content-type"] !== ohttpRequestMediaType || !Buffer.isBuffer(request.body)) {
      return reply
        .status(415)
        .header("content-type", "application/problem+json")
        .send({ title: `send ${ohttpRequestMediaType}`, status: 415, code: "ERR_UNSUPPORTED_MEDIA_TYPE" });
    }
    const body = request.body;
    let opened;
    try {
      opened = await gateway.decapsulate(new Uint8Array(body.buffer, body.byteOffset, body.length));
      if (options.replayGuard !== undefined && !(await options.replayGuard.claim(opened.enc))) {
        throw new OhttpError("ERR_OHTTP_REPLAY", "this encapsulated request was already received");
      }
    } catch (error) {
      const refusal = decapsulationProblem(error);
      request.log.info({ requestBytes: body.length, outcome: refusal.code }, "encapsulated request refused");
      return reply.status(400).header("content-type", "application/problem+json").send(refusal.body);
    }
    let inner;
    try {
      inner = await serveInner(decodeRequest(opened.request), request.ip);
    } catch {
      inner = problem(400, "ERR_BAD_REQUEST", "the inner message is not Binary HTTP");
    }
    const sealed = await opened.sealResponse(encodeResponse(inner));
    request.log.info(
      { requestBytes: body.length, responseBytes: sealed.length, innerStatus: inner.status },
      "encapsulated request handled",
    );
    return reply
      .status(200)
      .header("content-type", ohttpResponseMediaType)
      .header("cache-control", "no-store")
      .send(Buffer.from(sealed));
  });
}
