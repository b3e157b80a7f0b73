// Byte helpers: big-endian integers and QUIC variable-length integers (RFC 9000 §16), as Binary HTTP and
// OHTTP use them. No node: imports, so the package runs in browsers.
import { OhttpError, type OhttpErrorCode } from "./errors.js";

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function uint16(value: number): Uint8Array {
  return new Uint8Array([(value >> 8) & 0xff, value & 0xff]);
}

/** A copy that owns its own ArrayBuffer (Web Crypto wants exactly the bytes it is given). */
export function ownBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

const maxVarint = 2 ** 53 - 1;

/** QUIC variable-length integer encoding (RFC 9000 §16), up to 2^53 - 1 here. */
export function encodeVarint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0 || value > maxVarint) {
    throw new OhttpError("ERR_BHTTP_MALFORMED", `${value} cannot be encoded as a variable-length integer`);
  }
  if (value < 0x40) {
    return new Uint8Array([value]);
  }
  if (value < 0x4000) {
    return new Uint8Array([0x40 | (value >> 8), value & 0xff]);
  }
  if (value < 0x4000_0000) {
    return new Uint8Array([0x80 | (value >>> 24), (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff]);
  }
  const out = new Uint8Array(8);
  const high = Math.floor(value / 2 ** 32);
  const view = new DataView(out.buffer);
  view.setUint32(0, high | 0xc000_0000);
  view.setUint32(4, value >>> 0);
  return out;
}

/** A forward-only reader that fails with one typed error code when the input ends early. */
export class ByteReader {
  offset = 0;

  readonly bytes: Uint8Array;
  private readonly errorCode: OhttpErrorCode;

  constructor(bytes: Uint8Array, errorCode: OhttpErrorCode) {
    this.bytes = bytes;
    this.errorCode = errorCode;
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  fail(message: string): never {
    throw new OhttpError(this.errorCode, message);
  }

  take(length: number): Uint8Array {
    if (length > this.remaining) {
      this.fail(`truncated: ${length} bytes needed at offset ${this.offset}, ${this.remaining} left`);
    }
    const out = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  uint8(): number {
    return this.take(1)[0] ?? 0;
  }

  uint16(): number {
    const [high = 0, low = 0] = this.take(2);
    return (high << 8) | low;
  }

  varint(): number {
    const first = this.take(1)[0] ?? 0;
    const length = 1 << (first >> 6);
    let value = first & 0x3f;
    for (const byte of this.take(length - 1)) {
      value = value * 256 + byte;
    }
    if (value > maxVarint) {
      this.fail("a variable-length integer exceeds 2^53 - 1");
    }
    return value;
  }
}
