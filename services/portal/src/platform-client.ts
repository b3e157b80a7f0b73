// Every request to the platform that carries PHI or credentials goes sealed (OHTTP, RFC 9458) to the key
// configuration the portal verified in the platform's attestation. The network, the portal's host and any
// TLS terminator see only `message/ohttp-req` and `message/ohttp-res` bodies.
import {
  decodeResponse,
  encapsulateRequest,
  encodeRequest,
  fieldValue,
  ohttpRequestMediaType,
  ohttpResponseMediaType,
  parseKeyConfig,
  type KeyConfig,
} from "@cloister/ohttp";

export interface PlatformResponse {
  readonly status: number;
  readonly contentType: string;
  readonly retryAfter?: string | undefined;
  readonly body: Uint8Array;
  /** The body parsed as JSON (the caller states its shape). */
  json(): unknown;
}

export class PlatformRequestError extends Error {
  override readonly name = "PlatformRequestError";
  readonly status: number;
  readonly code: string;
  /** The answer's Retry-After, in seconds, when it gave one. */
  readonly retryAfterSeconds: number | undefined;
  constructor(status: number, code: string, message: string, retryAfter?: string | null) {
    super(message);
    this.status = status;
    this.code = code;
    const seconds = retryAfter === undefined || retryAfter === null ? Number.NaN : Number(retryAfter);
    this.retryAfterSeconds = Number.isInteger(seconds) && seconds >= 0 ? seconds : undefined;
  }
}

/**
 * The platform answers 503 with Retry-After only when it did nothing with the request: it sheds load, or the
 * replica is fetching a key version another replica rotated to first. Such a request is sent once more
 * after the pause (at most this long), so staff do not see a failure that a second later is gone.
 */
const longestRetryPauseSeconds = 5;

function retryPauseMs(error: unknown): number | undefined {
  if (!(error instanceof PlatformRequestError) || error.status !== 503) {
    return undefined;
  }
  const seconds = error.retryAfterSeconds;
  return seconds === undefined || seconds > longestRetryPauseSeconds ? undefined : seconds * 1000;
}

function parsedKey(attested: AttestedKey): { keyConfig: KeyConfig; expiresAtMs: number } {
  return {
    keyConfig: parseKeyConfig(base64urlBytes(attested.keyConfig)),
    expiresAtMs: attested.expiresAt.getTime(),
  };
}

/** Bytes of base64url or base64 text (padding optional). */
export function base64urlBytes(text: string): Uint8Array<ArrayBuffer> {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

const decoder = new TextDecoder();

/** The message a failed request's body gives (OperationOutcome or problem+json), never its PHI. */
function failureOf(response: PlatformResponse): PlatformRequestError {
  let code = `HTTP_${response.status}`;
  let message = `The platform answered ${response.status}.`;
  try {
    const body = response.json() as {
      code?: string;
      title?: string;
      issue?: { diagnostics?: string; details?: { coding?: { code?: string }[]; text?: string } }[];
    };
    const issue = body.issue?.[0];
    code = body.code ?? issue?.details?.coding?.[0]?.code ?? code;
    message = body.title ?? issue?.diagnostics ?? issue?.details?.text ?? message;
  } catch {
    // not JSON
  }
  return new PlatformRequestError(response.status, code, message, response.retryAfter);
}

/** What a verified attestation of the platform gave the portal. */
export interface AttestedKey {
  /** The OHTTP key configuration bound into the platform's verified evidence (base64url). */
  readonly keyConfig: string;
  /** When the verifying token expires: the platform is verified again before the next request after it. */
  readonly expiresAt: Date;
}

/** The gateway could not open the request (a key it no longer holds), so nothing was done with it. */
function isKeyChange(error: unknown): boolean {
  return (
    error instanceof PlatformRequestError &&
    (error.code === "ERR_OHTTP_UNKNOWN_KEY" || error.code === "ERR_OHTTP_DECRYPT")
  );
}

/** The methods the portal sends (inside the encapsulation). */
export type PlatformMethod = "GET" | "POST" | "PUT" | "PATCH";

export class PlatformClient {
  private attested: { readonly keyConfig: KeyConfig; readonly expiresAtMs: number };
  private readonly platformUrl: string;
  private readonly reattest: (() => Promise<AttestedKey>) | undefined;
  private attesting: Promise<void> | undefined;
  private accessToken: string | undefined;
  private onSessionEnded: ((failure: PlatformRequestError) => void) | undefined;

  /**
   * @param reattest Verifies the platform's attestation again, exactly as the first time (measurement, TEE,
   * token, key binding), when its token has expired or its gateway no longer holds the key (after a key
   * rotation, or a restart of a replica with a key of its own). Without it, such a request fails and asks for
   * a reload. When it rejects, nothing more is sent.
   */
  constructor(platformUrl: string, attested: AttestedKey, reattest?: () => Promise<AttestedKey>) {
    this.platformUrl = platformUrl;
    this.attested = parsedKey(attested);
    this.reattest = reattest;
  }

  setAccessToken(token: string | undefined): void {
    this.accessToken = token;
  }

  token(): string | undefined {
    return this.accessToken;
  }

  /**
   * Called when the platform refuses the session the client holds (401: an admin disabled or changed the
   * account, its password changed, or the token expired), so the portal signs out and says why.
   */
  setSessionEndedHandler(handler: ((failure: PlatformRequestError) => void) | undefined): void {
    this.onSessionEnded = handler;
  }

  /**
   * Sends one request sealed to the platform. `onUploadProgress` reports the sealed body's upload (0…1);
   * `headers` are added to the inner request (such as If-Match). Throws PlatformRequestError for 4xx/5xx
   * answers; a 503 with a short Retry-After is sent once more first.
   */
  async request(
    method: PlatformMethod,
    path: string,
    body?: { bytes: Uint8Array; contentType: string },
    onUploadProgress?: (fraction: number) => void,
    headers: readonly [string, string][] = [],
  ): Promise<PlatformResponse> {
    if (this.attested.expiresAtMs <= Date.now()) {
      await this.attestAgain(this.attested);
    }
    let keyChanged = false;
    let paused = false;
    for (;;) {
      const sealedTo = this.attested;
      try {
        return await this.requestOnce(sealedTo.keyConfig, method, path, body, onUploadProgress, headers);
      } catch (error) {
        // The gateway could not open it, so nothing was done: verify the platform again, then send it once
        // more, sealed to the key its new evidence binds.
        if (!keyChanged && isKeyChange(error) && this.reattest !== undefined) {
          keyChanged = true;
          await this.attestAgain(sealedTo);
          continue;
        }
        const pause = retryPauseMs(error);
        if (paused || pause === undefined) {
          throw error;
        }
        paused = true;
        await new Promise((resolve) => setTimeout(resolve, pause));
        // Sealed afresh: a new key, a new Date.
      }
    }
  }

  /**
   * Verifies the platform again, once for every request that found `stale` out of date: a request that
   * failed while another already replaced the key is simply sent again.
   */
  private async attestAgain(stale: PlatformClient["attested"]): Promise<void> {
    if (this.attested !== stale) {
      return;
    }
    const reattest = this.reattest;
    if (reattest === undefined) {
      throw new PlatformRequestError(
        0,
        "ERR_ATTESTATION_EXPIRED",
        "The platform's attestation has expired. Reload the page to attest it again.",
      );
    }
    this.attesting ??= reattest()
      .then(
        (next) => {
          this.attested = parsedKey(next);
        },
        () => {
          throw new PlatformRequestError(
            0,
            "ERR_ATTESTATION_REFUSED",
            "The platform could not be verified again, so nothing more is sent to it.",
          );
        },
      )
      .finally(() => {
        this.attesting = undefined;
      });
    await this.attesting;
  }

  private async requestOnce(
    keyConfig: KeyConfig,
    method: PlatformMethod,
    path: string,
    body: { bytes: Uint8Array; contentType: string } | undefined,
    onUploadProgress: ((fraction: number) => void) | undefined,
    extraHeaders: readonly [string, string][],
  ): Promise<PlatformResponse> {
    const headers: [string, string][] = [
      ["date", new Date().toUTCString()],
      ["accept", "application/fhir+json, application/json"],
      ...extraHeaders,
    ];
    if (this.accessToken !== undefined) {
      headers.push(["authorization", `Bearer ${this.accessToken}`]);
    }
    if (body !== undefined) {
      headers.push(["content-type", body.contentType]);
    }
    const inner = encodeRequest({
      method,
      scheme: "https",
      authority: new URL(this.platformUrl).host,
      path,
      headers,
      ...(body === undefined ? {} : { body: body.bytes }),
    });
    const sealed = await encapsulateRequest(keyConfig, inner);
    const encapsulatedResponse = await post(
      new URL("/ohttp", this.platformUrl).toString(),
      sealed.encapsulatedRequest,
      onUploadProgress,
    );
    const opened = decodeResponse(await sealed.openResponse(encapsulatedResponse));
    const response: PlatformResponse = {
      status: opened.status,
      contentType: fieldValue(opened.headers, "content-type") ?? "",
      retryAfter: fieldValue(opened.headers, "retry-after"),
      body: opened.body,
      json: (): unknown => JSON.parse(decoder.decode(opened.body)),
    };
    if (response.status >= 400) {
      const failure = failureOf(response);
      // Sent with a session that the platform no longer accepts.
      if (failure.status === 401 && this.accessToken !== undefined && path !== "/auth/login") {
        this.onSessionEnded?.(failure);
      }
      throw failure;
    }
    return response;
  }

  async json(
    method: PlatformMethod,
    path: string,
    resource?: unknown,
    headers: readonly [string, string][] = [],
  ): Promise<unknown> {
    const response = await this.request(
      method,
      path,
      resource === undefined
        ? undefined
        : {
            bytes: new TextEncoder().encode(JSON.stringify(resource)),
            contentType: path.startsWith("/fhir") ? "application/fhir+json" : "application/json",
          },
      undefined,
      headers,
    );
    return response.json();
  }

  /** FHIR search by POST (form body): names and MRNs never appear in a URL, even an encrypted one. */
  async search<T = Record<string, unknown>>(type: string, parameters: Record<string, string>): Promise<T[]> {
    return (await this.searchPage(type, parameters)).resources as T[];
  }

  /**
   * The same, with the number of all matches (`Bundle.total`), however many the page holds, and the next
   * page's path when more follow (its `_cursor` is sealed by the platform: no search value is in it).
   */
  async searchPage(type: string, parameters: Record<string, string>): Promise<SearchPage> {
    const response = await this.request("POST", `/fhir/${type}/_search`, {
      bytes: new TextEncoder().encode(new URLSearchParams(parameters).toString()),
      contentType: "application/x-www-form-urlencoded",
    });
    return searchPageOf(response);
  }

  /** The page after one `searchPage` (or `nextPage`) answered. */
  async nextPage(next: string): Promise<SearchPage> {
    return searchPageOf(await this.request("GET", next));
  }

  /**
   * The first `limit` matches of a search in the platform's order (newest first unless `_sort` says
   * otherwise), following its pages, with the number of all matches: a list shows what it holds and says
   * how many more there are, never leaving any out unsaid.
   */
  async searchFirst(
    type: string,
    parameters: Record<string, string>,
    limit: number,
    /** How many a page asks for: at most the platform's limit, 500. */
    pageSize = 500,
  ): Promise<{ resources: unknown[]; total: number }> {
    const first = await this.searchPage(type, { ...parameters, _count: String(Math.min(limit, pageSize)) });
    const resources = [...first.resources];
    let next = first.next;
    while (resources.length < limit && next !== undefined) {
      const page = await this.nextPage(next);
      resources.push(...page.resources);
      next = page.next;
    }
    return { resources: resources.slice(0, limit), total: first.total };
  }
}

/** A page of search results. */
export interface SearchPage {
  readonly resources: unknown[];
  /** Every match, not only this page's. */
  readonly total: number;
  /** The next page's path and query, when more follow. */
  readonly next: string | undefined;
}

function searchPageOf(response: PlatformResponse): SearchPage {
  const bundle = response.json() as {
    total?: number;
    entry?: { resource: unknown }[];
    link?: { relation?: string; url?: string }[];
  };
  const resources = (bundle.entry ?? []).map((entry) => entry.resource);
  const link = bundle.link?.find((entry) => entry.relation === "next")?.url;
  const next = link === undefined ? undefined : new URL(link);
  return {
    resources,
    total: bundle.total ?? resources.length,
    next: next === undefined ? undefined : `${next.pathname}${next.search}`,
  };
}

/** XMLHttpRequest, not fetch: only it reports upload progress. */
function post(
  url: string,
  body: Uint8Array,
  onUploadProgress?: (fraction: number) => void,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.responseType = "arraybuffer";
    xhr.setRequestHeader("content-type", ohttpRequestMediaType);
    if (onUploadProgress !== undefined) {
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) {
          onUploadProgress(event.loaded / event.total);
        }
      };
    }
    xhr.onload = () => {
      const type = xhr.getResponseHeader("content-type") ?? "";
      if (xhr.status === 200 && type.startsWith(ohttpResponseMediaType)) {
        resolve(new Uint8Array(xhr.response as ArrayBuffer));
        return;
      }
      let code = `HTTP_${xhr.status}`;
      try {
        code =
          (JSON.parse(new TextDecoder().decode(xhr.response as ArrayBuffer)) as { code?: string }).code ??
          code;
      } catch {
        // not JSON
      }
      reject(
        new PlatformRequestError(
          xhr.status,
          code,
          code === "ERR_OHTTP_UNKNOWN_KEY" || code === "ERR_OHTTP_DECRYPT"
            ? "The platform's key changed (a key rotation or a restart). Reload the page to attest it again."
            : `The platform's gateway refused the request (${code}).`,
          xhr.getResponseHeader("retry-after"),
        ),
      );
    };
    xhr.onerror = () => {
      reject(new PlatformRequestError(0, "ERR_NETWORK", "The platform could not be reached."));
    };
    xhr.send(new Blob([body as BlobPart]));
  });
}
