/**
 * Python's `json.dumps` output for the few value kinds a bitsandbytes quant state holds, so the
 * bytes we write equal the bytes bitsandbytes writes: ", " and ": " separators, floats as
 * `repr(float)` (shortest round-trip digits, like JS, but "2.0" not "2", and exponent form
 * "1e-05" / "1e+16" outside 1e-4 <= |x| < 1e16).
 */
export type PyJson = string | number | PyFloat | PyJson[] | { [key: string]: PyJson };

/** A number Python holds as a float (JS cannot tell 2 from 2.0). */
export class PyFloat {
  constructor(readonly value: number) {}
}

export function pyJsonDumps(v: PyJson): string {
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (typeof v === 'string')
    return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (typeof v === 'number') return Number.isInteger(v) ? v.toFixed(0) : pyFloatRepr(v);
  if (Array.isArray(v)) return `[${v.map(pyJsonDumps).join(', ')}]`;
  return `{${Object.entries(v)
    .map(([k, x]) => `${pyJsonDumps(k)}: ${pyJsonDumps(x)}`)
    .join(', ')}}`;
}

/** `repr(x)` of a Python float; json.dumps writes NaN and Infinity as bare words. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return 'Infinity';
  if (x === Number.NEGATIVE_INFINITY) return '-Infinity';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  // toExponential() without digits gives the shortest digits that read back as x.
  const [mant = '0', exp = '0'] = Math.abs(x).toExponential().split('e');
  const digits = mant.replace('.', '');
  const decpt = Number(exp) + 1; // x = 0.digits × 10^decpt
  if (decpt <= -4 || decpt > 16) {
    const e = decpt - 1;
    const frac = digits.length > 1 ? `.${digits.slice(1)}` : '';
    return `${sign}${digits[0]}${frac}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (decpt <= 0) return `${sign}0.${'0'.repeat(-decpt)}${digits}`;
  if (decpt >= digits.length) return `${sign}${digits}${'0'.repeat(decpt - digits.length)}.0`;
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}
