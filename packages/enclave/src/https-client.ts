// A small JSON-over-HTTPS client with an explicit CA (the dev stack's CA), on node:https.
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { EnclaveError } from "./errors.js";

export interface HttpsClientOptions {
  /** PEM CA certificates to trust besides the system's (the local stack's dev CA). */
  readonly ca?: string | readonly string[];
  readonly timeoutMs?: number;
}

export interface JsonResponse {
  readonly status: number;
  readonly body: unknown;
}

export function requestJson(
  method: "GET" | "POST" | "PUT",
  url: string | URL,
  body: unknown,
  options: HttpsClientOptions = {},
): Promise<JsonResponse> {
  const target = new URL(url);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const send = target.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(
      target,
      {
        method,
        headers: {
          accept: "application/json",
          ...(payload === undefined
            ? {}
            : { "content-type": "application/json", "content-length": payload.length }),
        },
        ...(options.ca === undefined
          ? {}
          : { ca: typeof options.ca === "string" ? options.ca : [...options.ca] }),
        timeout: options.timeoutMs ?? 10_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = undefined;
          try {
            parsed = text.length === 0 ? undefined : JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: response.statusCode ?? 0, body: parsed });
        });
        response.on("error", reject);
      },
    );
    outgoing.on("timeout", () => outgoing.destroy(new Error(`request to ${target.origin} timed out`)));
    outgoing.on("error", (cause) => {
      reject(new EnclaveError("ERR_ATTESTATION_SERVICE", `${target.origin} could not be reached`, { cause }));
    });
    outgoing.end(payload);
  });
}
