/**
 * A minimal protocol-buffers writer: just the wire types ONNX needs (varint, 64-bit, 32-bit,
 * length-delimited). Big payloads (tensor bytes) are kept by reference until `finish()`, which
 * copies every byte exactly once into the output.
 */

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const encoder = new TextEncoder();

export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private buf: number[] = [];
  private size = 0;

  /** Bytes written so far. */
  get length(): number {
    return this.size + this.buf.length;
  }

  private flush(): void {
    if (this.buf.length) {
      this.parts.push(Uint8Array.from(this.buf));
      this.size += this.buf.length;
      this.buf = [];
    }
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(field * 8 + wire);
  }

  /** Unsigned varint of a non-negative safe integer, or any int64 as bigint (two's complement). */
  rawVarint(v: number | bigint): void {
    if (typeof v === 'number' && v >= 0 && v < 2 ** 31) {
      while (v > 0x7f) {
        this.buf.push((v & 0x7f) | 0x80);
        v >>>= 7;
      }
      this.buf.push(v);
      return;
    }
    let u = BigInt.asUintN(64, BigInt(v));
    while (u > 0x7fn) {
      this.buf.push(Number(u & 0x7fn) | 0x80);
      u >>= 7n;
    }
    this.buf.push(Number(u));
  }

  /** int32/int64/enum/bool field (negative values take ten bytes, as protobuf's int64 does). */
  int(field: number, v: number | bigint): void {
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new RangeError(`field ${field}: ${v} is not a safe integer`);
    this.tag(field, WIRE_VARINT);
    this.rawVarint(v);
  }

  float(field: number, v: number): void {
    this.tag(field, WIRE_I32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.buf.push(...b);
  }

  double(field: number, v: number): void {
    this.tag(field, WIRE_I64);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.buf.push(...b);
  }

  string(field: number, s: string): void {
    this.bytes(field, encoder.encode(s));
  }

  /** Length-delimited bytes; large arrays are referenced, not copied, until finish(). */
  bytes(field: number, b: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.rawVarint(b.byteLength);
    if (b.byteLength <= 64) {
      for (const x of b) this.buf.push(x);
      return;
    }
    this.flush();
    this.parts.push(b);
    this.size += b.byteLength;
  }

  /** An embedded message, written by `fill` into its own writer. */
  message(field: number, fill: (w: ProtoWriter) => void): void {
    const child = new ProtoWriter();
    fill(child);
    child.flush();
    this.tag(field, WIRE_LEN);
    this.rawVarint(child.size);
    this.flush();
    this.parts.push(...child.parts);
    this.size += child.size;
  }

  /** Packed repeated varints (int64 dims and ints attributes). */
  packedInts(field: number, vs: readonly (number | bigint)[]): void {
    if (vs.length === 0) return;
    const child = new ProtoWriter();
    for (const v of vs) child.rawVarint(v);
    this.bytes(field, child.finish());
  }

  packedFloats(field: number, vs: readonly number[]): void {
    if (vs.length === 0) return;
    this.bytes(field, new Uint8Array(Float32Array.from(vs).buffer));
  }

  /** The encoded message in one array. */
  finish(): Uint8Array {
    this.flush();
    if (this.parts.length === 1) return this.parts[0] as Uint8Array;
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const p of this.parts) {
      out.set(p, off);
      off += p.byteLength;
    }
    return out;
  }
}
