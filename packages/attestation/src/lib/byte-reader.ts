import { AttestationError, type AttestationErrorCode } from "../errors.js";

/** Little-endian cursor over a byte string; reading past the end raises `errorCode`. */
export class ByteReader {
  offset = 0;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly errorCode: AttestationErrorCode;
  private readonly what: string;

  constructor(bytes: Uint8Array, errorCode: AttestationErrorCode, what: string) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.errorCode = errorCode;
    this.what = what;
  }

  get remaining(): number {
    return this.bytes.length - this.offset;
  }

  fail(reason: string): never {
    throw new AttestationError(this.errorCode, `${this.what}: ${reason}`);
  }

  private need(length: number, field: string): void {
    if (length > this.remaining) {
      this.fail(`truncated at ${field} (offset ${this.offset}, needs ${length}, has ${this.remaining})`);
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.view.getUint8(this.offset++);
  }

  u16(field: string): number {
    this.need(2, field);
    const value = this.view.getUint16(this.offset, true);
    this.offset += 2;
    return value;
  }

  u32(field: string): number {
    this.need(4, field);
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const value = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    return value;
  }

  bytesOf(length: number, field: string): Uint8Array {
    this.need(length, field);
    const out = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return out;
  }

  /** Fails unless every byte was consumed: trailing data beyond declared lengths is never ignored. */
  end(): void {
    if (this.remaining !== 0) {
      this.fail(`${this.remaining} unexpected trailing bytes`);
    }
  }
}
