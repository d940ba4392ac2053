/**
 * Argument checks of the js backend, the same rules the native addon enforces (args.cc): typed
 * array kinds, integer ranges, "at least" lengths for op buffers, exact lengths for init data.
 * Wrong kinds throw TypeError, wrong sizes RangeError.
 */
const MAX_DIM = 2 ** 31 - 1;

export { MAX_DIM };

export function int(v: unknown, what: string, lo: number, hi: number = MAX_DIM): number {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number`);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${what} must be an integer in [${lo}, ${hi}], got ${v}`);
  return v;
}

export function finite(v: unknown, what: string): number {
  if (typeof v !== 'number') throw new TypeError(`${what} must be a number`);
  if (!Number.isFinite(v)) throw new RangeError(`${what} must be finite`);
  return v;
}

export function f32(v: unknown, what: string): Float32Array {
  if (!(v instanceof Float32Array)) throw new TypeError(`${what} must be a Float32Array`);
  return v;
}

export function i32(v: unknown, what: string): Int32Array {
  if (!(v instanceof Int32Array)) throw new TypeError(`${what} must be an Int32Array`);
  return v;
}

export function u16(v: unknown, what: string): Uint16Array {
  if (!(v instanceof Uint16Array)) throw new TypeError(`${what} must be a Uint16Array`);
  return v;
}

export function u8(v: unknown, what: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${what} must be a Uint8Array`);
  return v;
}

export function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) throw new TypeError(`${what} must be an object`);
  return v as Record<string, unknown>;
}

export function atLeast(a: { length: number }, count: number, what: string): void {
  if (a.length < count) throw new RangeError(`${what} holds ${a.length} values but needs at least ${count}`);
}

export function exactly(a: { length: number }, count: number, what: string): void {
  if (a.length !== count) throw new RangeError(`${what} holds ${a.length} values but must hold exactly ${count}`);
}

/** Throws unless the two views' elements [0, aLen) and [0, bLen) are disjoint (or, with allowSame, the very same start). */
export function noOverlap(
  a: Float32Array,
  aLen: number,
  aName: string,
  b: Float32Array,
  bLen: number,
  bName: string,
  allowSame = false,
): void {
  if (a.buffer !== b.buffer || aLen === 0 || bLen === 0) return;
  const a0 = a.byteOffset;
  const b0 = b.byteOffset;
  if (allowSame && a0 === b0) return;
  if (a0 < b0 + bLen * 4 && b0 < a0 + aLen * 4) {
    throw new RangeError(`${aName} and ${bName} overlap in memory${allowSame ? ' (only exact aliasing is allowed)' : ''}`);
  }
}
