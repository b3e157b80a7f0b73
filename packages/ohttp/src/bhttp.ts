// Binary HTTP (RFC 9292): the inner messages of OHTTP. Encodes known-length messages (§3.1) and omits
// trailing empty sections (§3.8), as RFC 9458's example does; decodes known- and indeterminate-length
// messages, truncated sections and padding.
import { ByteReader, concatBytes, encodeVarint } from "./bytes.js";
import { OhttpError } from "./errors.js";

export type FieldLine = readonly [name: string, value: string];

export interface BinaryRequest {
  readonly method: string;
  readonly scheme: string;
  readonly authority: string;
  readonly path: string;
  readonly headers: readonly FieldLine[];
  readonly body: Uint8Array;
  readonly trailers: readonly FieldLine[];
}

export interface BinaryResponse {
  readonly status: number;
  readonly headers: readonly FieldLine[];
  readonly body: Uint8Array;
  readonly trailers: readonly FieldLine[];
  /** 1xx responses that came before the final one. */
  readonly informational: readonly { status: number; headers: readonly FieldLine[] }[];
}

export interface RequestInit {
  readonly method?: string;
  readonly scheme?: string;
  readonly authority?: string;
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>> | readonly FieldLine[];
  readonly body?: Uint8Array | string;
}

export interface ResponseInit {
  readonly status: number;
  readonly headers?: Readonly<Record<string, string>> | readonly FieldLine[];
  readonly body?: Uint8Array | string;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const tokenPattern = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function lines(headers: RequestInit["headers"]): FieldLine[] {
  const entries: FieldLine[] =
    headers === undefined
      ? []
      : Array.isArray(headers)
        ? [...(headers as FieldLine[])]
        : Object.entries(headers);
  // RFC 9292 §3.6: field names are lowercase.
  return entries.map(([name, value]) => [name.toLowerCase(), value]);
}

function bodyBytes(body: Uint8Array | string | undefined): Uint8Array {
  return body === undefined ? new Uint8Array(0) : typeof body === "string" ? utf8.encode(body) : body;
}

function lengthPrefixed(bytes: Uint8Array): Uint8Array[] {
  return [encodeVarint(bytes.length), bytes];
}

function encodeFieldSection(fields: readonly FieldLine[]): Uint8Array[] {
  const encoded = concatBytes(
    ...fields.flatMap(([name, value]) => {
      if (!tokenPattern.test(name)) {
        throw new OhttpError("ERR_BHTTP_MALFORMED", "a field name must be a lowercase token");
      }
      if (/[\r\n\0]/.test(value) || /^[ \t]|[ \t]$/.test(value)) {
        throw new OhttpError(
          "ERR_BHTTP_MALFORMED",
          "a field value must not contain CR, LF or NUL, nor start or end with whitespace",
        );
      }
      return [...lengthPrefixed(utf8.encode(name)), ...lengthPrefixed(utf8.encode(value))];
    }),
  );
  return lengthPrefixed(encoded);
}

/**
 * The sections after the control data, with trailing empty ones left out (RFC 9292 §3.8), as parts: the
 * content stays its own part, so a large body is never copied here.
 */
function encodeTail(
  headers: readonly FieldLine[],
  body: Uint8Array,
  trailers: readonly FieldLine[],
): Uint8Array[][] {
  const sections = [encodeFieldSection(headers), lengthPrefixed(body), encodeFieldSection(trailers)];
  const empty = [headers.length === 0, body.length === 0, trailers.length === 0];
  while (sections.length > 0 && empty[sections.length - 1] === true) {
    sections.pop();
  }
  return sections;
}

/**
 * Joins encoded pieces into as few parts as a sealer needs: small pieces are joined, and a large content
 * section stays a view of the caller's bytes.
 */
function coalesce(pieces: readonly Uint8Array[]): Uint8Array[] {
  const parts: Uint8Array[] = [];
  let pending: Uint8Array[] = [];
  for (const piece of pieces) {
    if (piece.length >= largePiece) {
      if (pending.length > 0) {
        parts.push(concatBytes(...pending));
        pending = [];
      }
      parts.push(piece);
    } else {
      pending.push(piece);
    }
  }
  if (pending.length > 0 || parts.length === 0) {
    parts.push(concatBytes(...pending));
  }
  return parts;
}

const largePiece = 4096;

function requestPieces(init: RequestInit): Uint8Array[] {
  const method = init.method ?? "GET";
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(method)) {
    throw new OhttpError("ERR_BHTTP_MALFORMED", "the method must be a token");
  }
  return [
    encodeVarint(0),
    ...lengthPrefixed(utf8.encode(method)),
    ...lengthPrefixed(utf8.encode(init.scheme ?? "https")),
    ...lengthPrefixed(utf8.encode(init.authority ?? "")),
    ...lengthPrefixed(utf8.encode(init.path)),
    ...encodeTail(lines(init.headers), bodyBytes(init.body), []).flat(),
  ];
}

/**
 * Encodes a known-length Binary HTTP request (RFC 9292 §3.1).
 *
 * @example
 * ```ts
 * encodeRequest({ method: "GET", scheme: "https", authority: "example.com", path: "/" });
 * // 00 03 474554 05 6874747073 0b 6578616d706c652e636f6d 01 2f  (RFC 9458 Appendix A)
 * ```
 */
export function encodeRequest(init: RequestInit): Uint8Array {
  return concatBytes(...requestPieces(init));
}

/**
 * The same encoding as `encodeRequest`, in parts whose concatenation is the message: a large body stays a
 * part of its own, so `encapsulateRequest` can seal it without copying it first.
 */
export function encodeRequestParts(init: RequestInit): Uint8Array[] {
  return coalesce(requestPieces(init));
}

/** Encodes a known-length Binary HTTP response (RFC 9292 §3.1). */
export function encodeResponse(init: ResponseInit): Uint8Array {
  if (!Number.isInteger(init.status) || init.status < 200 || init.status > 599) {
    throw new OhttpError("ERR_BHTTP_MALFORMED", "a final status code is 200 to 599");
  }
  return concatBytes(
    encodeVarint(1),
    encodeVarint(init.status),
    ...encodeTail(lines(init.headers), bodyBytes(init.body), []).flat(),
  );
}

function text(bytes: Uint8Array): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    throw new OhttpError("ERR_BHTTP_MALFORMED", "a field is not valid UTF-8");
  }
}

function readFieldLines(reader: ByteReader, indeterminate: boolean): FieldLine[] {
  const fields: FieldLine[] = [];
  if (!indeterminate) {
    const section = new ByteReader(reader.take(reader.varint()), "ERR_BHTTP_MALFORMED");
    while (section.remaining > 0) {
      fields.push(readFieldLine(section, section.varint()));
    }
    return fields;
  }
  for (;;) {
    const nameLength = reader.varint();
    if (nameLength === 0) {
      return fields;
    }
    fields.push(readFieldLine(reader, nameLength));
  }
}

function readFieldLine(reader: ByteReader, nameLength: number): FieldLine {
  const name = text(reader.take(nameLength));
  if (!tokenPattern.test(name)) {
    reader.fail("a field name must be a lowercase token");
  }
  const value = text(reader.take(reader.varint()));
  if (/[\r\n\0]/.test(value) || /^[ \t]|[ \t]$/.test(value)) {
    reader.fail("a field value must not contain CR, LF or NUL, nor start or end with whitespace");
  }
  return [name, value];
}

function readContent(reader: ByteReader, indeterminate: boolean): Uint8Array {
  if (!indeterminate) {
    // A view into the decrypted message, which the caller owns: no copy of what may be a large image.
    return reader.take(reader.varint());
  }
  const chunks: Uint8Array[] = [];
  for (;;) {
    const length = reader.varint();
    if (length === 0) {
      return concatBytes(...chunks);
    }
    chunks.push(reader.take(length));
  }
}

/** Reads the optional tail sections; a message may end (or be padded with zeros) after any of them. */
function readTail(
  reader: ByteReader,
  indeterminate: boolean,
  headersRead?: FieldLine[],
): { headers: FieldLine[]; body: Uint8Array; trailers: FieldLine[] } {
  const atEnd = (): boolean =>
    reader.remaining === 0 || reader.bytes.subarray(reader.offset).every((b) => b === 0);
  const headers = headersRead ?? (atEnd() ? [] : readFieldLines(reader, indeterminate));
  const body = atEnd() ? new Uint8Array(0) : readContent(reader, indeterminate);
  const trailers = atEnd() ? [] : readFieldLines(reader, indeterminate);
  if (!atEnd()) {
    reader.fail("unexpected bytes after the message (padding must be zeros)");
  }
  return { headers, body, trailers };
}

function framing(reader: ByteReader, expected: "request" | "response"): boolean {
  const indicator = reader.varint();
  const base = expected === "request" ? 0 : 1;
  if (indicator !== base && indicator !== base + 2) {
    reader.fail(`framing indicator ${indicator} is not a ${expected}`);
  }
  return indicator === base + 2;
}

/** Decodes a Binary HTTP request, known- or indeterminate-length (RFC 9292 §3). */
export function decodeRequest(bytes: Uint8Array): BinaryRequest {
  const reader = new ByteReader(bytes, "ERR_BHTTP_MALFORMED");
  const indeterminate = framing(reader, "request");
  const method = text(reader.take(reader.varint()));
  const scheme = text(reader.take(reader.varint()));
  const authority = text(reader.take(reader.varint()));
  const path = text(reader.take(reader.varint()));
  if (method.length === 0 || path.length === 0) {
    reader.fail("a request needs a method and a path");
  }
  return { method, scheme, authority, path, ...readTail(reader, indeterminate) };
}

/** Decodes a Binary HTTP response, known- or indeterminate-length, with any 1xx responses (RFC 9292 §3). */
export function decodeResponse(bytes: Uint8Array): BinaryResponse {
  const reader = new ByteReader(bytes, "ERR_BHTTP_MALFORMED");
  const indeterminate = framing(reader, "response");
  const informational: { status: number; headers: FieldLine[] }[] = [];
  for (;;) {
    const status = reader.varint();
    if (status < 100 || status > 599) {
      reader.fail(`status ${status} is out of range`);
    }
    if (status >= 200) {
      return { status, informational, ...readTail(reader, indeterminate) };
    }
    informational.push({ status, headers: readFieldLines(reader, indeterminate) });
  }
}

/** The first value of a field, by case-insensitive name. */
export function fieldValue(fields: readonly FieldLine[], name: string): string | undefined {
  const wanted = name.toLowerCase();
  return fields.find(([fieldName]) => fieldName === wanted)?.[1];
}
