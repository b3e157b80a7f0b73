// A minimal, strict DER (ITU-T X.690) reader and writer: enough for X.509 certificates, CRLs, and the
// Intel and AMD certificate extensions. Malformed input raises an AttestationError with the caller's code.
import { AttestationError, type AttestationErrorCode } from "../errors.js";
import { concatBytes } from "./bytes.js";

export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  enumerated: 0x0a,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** One decoded TLV. `bytes` is the whole element (header and content), `content` the value. */
export interface DerElement {
  readonly tag: number;
  readonly bytes: Uint8Array;
  readonly content: Uint8Array;
}

const maxDepth = 32;

export class DerReader {
  readonly errorCode: AttestationErrorCode;
  private readonly context: string;

  constructor(errorCode: AttestationErrorCode, context: string) {
    this.errorCode = errorCode;
    this.context = context;
  }

  fail(reason: string): never {
    throw new AttestationError(this.errorCode, `${this.context}: ${reason}`);
  }

  /** Reads exactly one element spanning the whole input. */
  single(input: Uint8Array): DerElement {
    const element = this.readAt(input, 0);
    if (element.bytes.length !== input.length) {
      this.fail("trailing bytes after DER element");
    }
    return element;
  }

  readAt(input: Uint8Array, offset: number): DerElement {
    if (offset + 2 > input.length) {
      this.fail("truncated DER header");
    }
    const tag = input[offset] as number;
    if ((tag & 0x1f) === 0x1f) {
      this.fail("multi-byte DER tags are not supported");
    }
    let lengthByte = input[offset + 1] as number;
    let headerLength = 2;
    let length: number;
    if (lengthByte < 0x80) {
      length = lengthByte;
    } else {
      const lengthOctets = lengthByte & 0x7f;
      if (lengthOctets === 0 || lengthOctets > 4) {
        this.fail("unsupported DER length form");
      }
      if (offset + 2 + lengthOctets > input.length) {
        this.fail("truncated DER length");
      }
      length = 0;
      for (let i = 0; i < lengthOctets; i++) {
        lengthByte = input[offset + 2 + i] as number;
        if (i === 0 && lengthByte === 0) {
          this.fail("non-minimal DER length");
        }
        length = length * 256 + lengthByte;
      }
      if (length < 0x80) {
        this.fail("non-minimal DER length");
      }
      headerLength += lengthOctets;
    }
    const end = offset + headerLength + length;
    if (end > input.length) {
      this.fail("DER element runs past the end of its container");
    }
    return {
      tag,
      bytes: input.subarray(offset, end),
      content: input.subarray(offset + headerLength, end),
    };
  }

  /** The children of a constructed element. */
  children(element: DerElement, depth = 0): DerElement[] {
    if ((element.tag & 0x20) === 0) {
      this.fail(`expected a constructed element, got tag 0x${element.tag.toString(16)}`);
    }
    if (depth > maxDepth) {
      this.fail("DER nesting too deep");
    }
    const out: DerElement[] = [];
    let offset = 0;
    while (offset < element.content.length) {
      const child = this.readAt(element.content, offset);
      out.push(child);
      offset += child.bytes.length;
    }
    return out;
  }

  expect(element: DerElement | undefined, tag: number, what: string): DerElement {
    if (element?.tag !== tag) {
      this.fail(`expected ${what}`);
    }
    return element;
  }

  sequence(element: DerElement | undefined, what: string): DerElement[] {
    return this.children(this.expect(element, Tag.sequence, what));
  }

  oid(element: DerElement | undefined, what: string): string {
    const content = this.expect(element, Tag.oid, what).content;
    if (content.length === 0) {
      this.fail(`empty OID in ${what}`);
    }
    const first = content[0] as number;
    const arcs: number[] = [
      Math.min(2, Math.floor(first / 40)),
      first - 40 * Math.min(2, Math.floor(first / 40)),
    ];
    let value = 0;
    for (let i = 1; i < content.length; i++) {
      const byte = content[i] as number;
      value = value * 128 + (byte & 0x7f);
      if (value > Number.MAX_SAFE_INTEGER / 128) {
        this.fail(`OID arc too large in ${what}`);
      }
      if ((byte & 0x80) === 0) {
        arcs.push(value);
        value = 0;
      } else if (i === content.length - 1) {
        this.fail(`truncated OID in ${what}`);
      }
    }
    return arcs.join(".");
  }

  /** A non-negative INTEGER or ENUMERATED that fits in a JS number. */
  smallInteger(element: DerElement | undefined, what: string, tag: number = Tag.integer): number {
    const content = this.expect(element, tag, what).content;
    if (content.length === 0 || content.length > 6 || ((content[0] as number) & 0x80) !== 0) {
      this.fail(`${what} is not a small non-negative integer`);
    }
    let value = 0;
    for (const byte of content) {
      value = value * 256 + byte;
    }
    return value;
  }

  /** INTEGER content as unsigned big-endian bytes, for serial numbers. */
  integerBytes(element: DerElement | undefined, what: string): Uint8Array {
    const content = this.expect(element, Tag.integer, what).content;
    if (content.length === 0) {
      this.fail(`empty INTEGER in ${what}`);
    }
    return content[0] === 0 && content.length > 1 ? content.subarray(1) : content;
  }

  octetString(element: DerElement | undefined, what: string): Uint8Array {
    return this.expect(element, Tag.octetString, what).content;
  }

  /** BIT STRING content without the unused-bits octet; requires whole octets (unused bits = 0). */
  bitString(element: DerElement | undefined, what: string): Uint8Array {
    const content = this.expect(element, Tag.bitString, what).content;
    if (content.length === 0 || content[0] !== 0) {
      this.fail(`BIT STRING in ${what} must hold whole octets`);
    }
    return content.subarray(1);
  }

  boolean(element: DerElement | undefined, what: string): boolean {
    const content = this.expect(element, Tag.boolean, what).content;
    if (content.length !== 1) {
      this.fail(`bad BOOLEAN in ${what}`);
    }
    return content[0] !== 0;
  }

  string(element: DerElement | undefined, what: string): string {
    if (
      element === undefined ||
      (element.tag !== Tag.utf8String && element.tag !== Tag.printableString && element.tag !== Tag.ia5String)
    ) {
      this.fail(`expected a string in ${what}`);
    }
    return new TextDecoder("utf-8", { fatal: false }).decode(element.content);
  }

  /** UTCTime or GeneralizedTime in the forms RFC 5280 §4.1.2.5 allows (UTC, seconds, `Z`). */
  time(element: DerElement | undefined, what: string): Date {
    if (element === undefined || (element.tag !== Tag.utcTime && element.tag !== Tag.generalizedTime)) {
      this.fail(`expected a time in ${what}`);
    }
    const text = String.fromCharCode(...element.content);
    const match =
      element.tag === Tag.utcTime
        ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
        : /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (match === null) {
      this.fail(`malformed time in ${what}`);
    }
    const [, y, mo, d, h, mi, s] = match.map(Number) as [
      number,
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const year = element.tag === Tag.utcTime ? (y >= 50 ? 1900 + y : 2000 + y) : y;
    const date = new Date(Date.UTC(year, mo - 1, d, h, mi, s));
    if (Number.isNaN(date.getTime()) || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) {
      this.fail(`invalid date in ${what}`);
    }
    return date;
  }
}

// ---------------------------------------------------------------------------------------------------
// Writer: used by the simulation platform to build certificates and CRLs.

function encodeLength(length: number): Uint8Array {
  if (length < 0x80) {
    return Uint8Array.of(length);
  }
  const octets: number[] = [];
  let rest = length;
  while (rest > 0) {
    octets.unshift(rest & 0xff);
    rest = Math.floor(rest / 256);
  }
  return Uint8Array.of(0x80 | octets.length, ...octets);
}

export function derTlv(tag: number, content: Uint8Array): Uint8Array {
  const length = encodeLength(content.length);
  const out = new Uint8Array(1 + length.length + content.length);
  out[0] = tag;
  out.set(length, 1);
  out.set(content, 1 + length.length);
  return out;
}

export const der = {
  sequence: (...items: Uint8Array[]): Uint8Array => derTlv(Tag.sequence, concatBytes(...items)),
  set: (...items: Uint8Array[]): Uint8Array => derTlv(Tag.set, concatBytes(...items)),
  /** Context-specific constructed tag `[n]`. */
  explicit: (n: number, ...items: Uint8Array[]): Uint8Array => derTlv(0xa0 | n, concatBytes(...items)),
  null: (): Uint8Array => Uint8Array.of(Tag.null, 0),
  boolean: (value: boolean): Uint8Array => derTlv(Tag.boolean, Uint8Array.of(value ? 0xff : 0)),
  octetString: (value: Uint8Array): Uint8Array => derTlv(Tag.octetString, value),
  bitString: (value: Uint8Array): Uint8Array => derTlv(Tag.bitString, concatBytes(Uint8Array.of(0), value)),
  utf8String: (value: string): Uint8Array => derTlv(Tag.utf8String, new TextEncoder().encode(value)),
  /** Unsigned big-endian bytes as a positive INTEGER. */
  unsignedInteger: (value: Uint8Array): Uint8Array => {
    let start = 0;
    while (start < value.length - 1 && value[start] === 0) {
      start++;
    }
    const trimmed = value.subarray(start);
    const needsPad = ((trimmed[0] ?? 0) & 0x80) !== 0;
    return derTlv(Tag.integer, needsPad ? concatBytes(Uint8Array.of(0), trimmed) : trimmed);
  },
  integer: (value: number, tag: number = Tag.integer): Uint8Array => {
    const octets: number[] = [];
    let rest = value;
    do {
      octets.unshift(rest & 0xff);
      rest = Math.floor(rest / 256);
    } while (rest > 0);
    if (((octets[0] as number) & 0x80) !== 0) {
      octets.unshift(0);
    }
    return derTlv(tag, Uint8Array.from(octets));
  },
  oid: (dotted: string): Uint8Array => {
    const arcs = dotted.split(".").map(Number);
    const body: number[] = [40 * (arcs[0] as number) + (arcs[1] as number)];
    for (const arc of arcs.slice(2)) {
      const chunk: number[] = [arc & 0x7f];
      let rest = Math.floor(arc / 128);
      while (rest > 0) {
        chunk.unshift((rest & 0x7f) | 0x80);
        rest = Math.floor(rest / 128);
      }
      body.push(...chunk);
    }
    return derTlv(Tag.oid, Uint8Array.from(body));
  },
  /** UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5). */
  time: (date: Date): Uint8Array => {
    const iso = date.toISOString();
    const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
    return date.getUTCFullYear() < 2050
      ? derTlv(Tag.utcTime, new TextEncoder().encode(`${digits.slice(2)}Z`))
      : derTlv(Tag.generalizedTime, new TextEncoder().encode(`${digits}Z`));
  },
  raw: (bytes: Uint8Array): Uint8Array => bytes,
};
