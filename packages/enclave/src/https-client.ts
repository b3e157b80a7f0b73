// A small HTTPS client with an explicit CA (the dev stack's CA), on node:https: JSON for the attestation
// service and key broker, raw bytes for OHTTP.
import { request as httpRequest, type Agent as HttpAgent } from "node:http";
import { request as httpsRequest, type Agent as HttpsAgent } from "node:https";
import { EnclaveError } from "./errors.js";

export interface HttpsClientOptions {
  /** PEM CA certificates to trust besides the system's (the local stack's dev CA). */
  readonly ca?: string | readonly string[];
  readonly timeoutMs?: number;
  /** A keep-alive agent to reuse connections (it must carry the CA itself). */
  readonly agent?: HttpsAgent | HttpAgent;
  /** Largest response body accepted (default 32 MiB). */
  readonly maxResponseBytes?: number;
  /** Extra request header fields (an admin bearer token). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The name to expect in the server's certificate (and send as SNI) when the URL names an address: a
   * replica reached by its pod address, whose certificate carries its Service's name.
   */
  readonly servername?: string;
}

export interface JsonResponse {
  readonly status: number;
  readonly body: unknown;
}

export interface BytesResponse {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly retryAfter: string | undefined;
  readonly body: Uint8Array;
}

/**
 * Sends one request and reads the whole response body. The body may be given in parts (an OHTTP request's
 * header and ciphertext), which are written one after another without being joined.
 */
export function requestBytes(
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  url: string | URL,
  body: { bytes: Uint8Array | readonly Uint8Array[]; contentType: string } | undefined,
  options: HttpsClientOptions & { accept?: string } = {},
): Promise<BytesResponse> {
  const target = new URL(url);
  const send = target.protocol === "https:" ? httpsRequest : httpRequest;
  const limit = options.maxResponseBytes ?? 32 * 1024 * 1024;
  const parts = body === undefined ? [] : body.bytes instanceof Uint8Array ? [body.bytes] : body.bytes;
  const contentLength = parts.reduce((sum, part) => sum + part.length, 0);
  return new Promise((resolve, reject) => {
    const outgoing = send(
      target,
      {
        method,
        headers: {
          ...options.headers,
          accept: options.accept ?? "*/*",
          ...(body === undefined
            ? {}
            : { "content-type": body.contentType, "content-length": contentLength }),
        },
        ...(options.ca === undefined
          ? {}
          : { ca: typeof options.ca === "string" ? options.ca : [...options.ca] }),
        ...(options.agent === undefined ? {} : { agent: options.agent }),
        ...(options.servername === undefined ? {} : { servername: options.servername }),
        timeout: options.timeoutMs ?? 10_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > limit) {
            response.destroy(
              new EnclaveError("ERR_PEER_RESPONSE", `${target.origin} sent too large a response`),
            );
            return;
          }
          chunks.push(chunk);
        });
        response.on("end", () => {
          const retryAfter = response.headers["retry-after"];
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers["content-type"],
            retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
            body: new Uint8Array(Buffer.concat(chunks)),
          });
        });
        response.on("error", reject);
      },
    );
    outgoing.on("timeout", () => outgoing.destroy(new Error(`request to ${target.origin} timed out`)));
    outgoing.on("error", (cause) => {
      reject(
        cause instanceof EnclaveError
          ? cause
          : new EnclaveError("ERR_UNREACHABLE", `${target.origin} could not be reached`, { cause }),
      );
    });
    // Views, not copies. Corked, so the parts leave in as few TLS records as one buffer would.
    outgoing.cork();
    for (const part of parts) {
      outgoing.write(Buffer.from(part.buffer, part.byteOffset, part.length));
    }
    outgoing.end();
    outgoing.uncork();
  });
}

export async function requestJson(
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE",
  url: string | URL,
  body: unknown,
  options: HttpsClientOptions = {},
): Promise<JsonResponse> {
  const response = await requestBytes(
    method,
    url,
    body === undefined
      ? undefined
      : { bytes: new TextEncoder().encode(JSON.stringify(body)), contentType: "application/json" },
    { ...options, accept: "application/json" },
  );
  let parsed: unknown = undefined;
  try {
    parsed = response.body.length === 0 ? undefined : JSON.parse(Buffer.from(response.body).toString("utf8"));
  } catch {
    parsed = undefined;
  }
  return { status: response.status, body: parsed };
}
