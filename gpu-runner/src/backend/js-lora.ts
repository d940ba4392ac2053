/**
 * The js backend's LoRA beyond dense stacks: VeRA projections and module handles, and the row
 * kernel for every layout (dense, sparse, VeRA), in float64 with one rounding per output.
 */
import { exactly, f32, int, object } from './checks.ts';
import { JsLora, JsVeraProjection, roundBf16 } from './js-handles.ts';
import type { VeraTerm } from './types.ts';

export function createJsVeraProjection(initArg: unknown): JsVeraProjection {
  const init = object(initArg, 'createVeraProjection(init): init');
  const rank = int(init.rank, 'init.rank', 1);
  const maxIn = int(init.maxIn, 'init.maxIn', 1);
  const maxOut = int(init.maxOut, 'init.maxOut', 1);
  const dtype = init.dtype ?? 'f32';
  if (typeof dtype !== 'string') throw new TypeError('init.dtype must be a string');
  if (dtype !== 'f32' && dtype !== 'bf16') throw new RangeError(`init.dtype must be 'f32' or 'bf16', got '${dtype}'`);
  const A = f32(init.A, 'init.A');
  exactly(A, rank * maxIn, 'init.A');
  const B = f32(init.B, 'init.B');
  exactly(B, maxOut * rank, 'init.B');
  const store = dtype === 'bf16' ? roundBf16 : (a: Float32Array) => a.slice();
  return new JsVeraProjection(rank, maxIn, maxOut, rank * (maxIn + maxOut) * (dtype === 'bf16' ? 2 : 4), store(A), store(B));
}

export function createJsVera(initArg: unknown): JsLora {
  const init = object(initArg, 'createVera(init): init');
  const p = init.projection;
  if (!(p instanceof JsVeraProjection)) throw new TypeError('init.projection must be a VeRA projection handle of the js backend');
  if (p.released) throw new Error('init.projection has been released');
  const out = int(init.out, 'init.out', 1, p.maxOut);
  const inF = int(init.in, 'init.in', 1, p.maxIn);
  if (!Array.isArray(init.terms)) throw new TypeError('init.terms must be an array of { lambdaB, lambdaD }');
  if (init.terms.length === 0) throw new RangeError('init.terms must hold at least one { lambdaB, lambdaD }');
  const terms: VeraTerm[] = init.terms.map((tArg: unknown, k: number) => {
    const t = object(tArg, `init.terms[${k}]`);
    const lambdaB = f32(t.lambdaB, `init.terms[${k}].lambdaB`);
    exactly(lambdaB, out, `init.terms[${k}].lambdaB`);
    const lambdaD = f32(t.lambdaD, `init.terms[${k}].lambdaD`);
    exactly(lambdaD, p.rank, `init.terms[${k}].lambdaD`);
    return { lambdaB: lambdaB.slice(), lambdaD: lambdaD.slice() };
  });
  const none = new Float32Array(0);
  return new JsLora(p.rank, out, inF, none, none, undefined, 'vera', undefined, { projection: p, terms });
}

/** y[yo..] = rowScale ⊙ y + B (A x[xo..]) for one row, in the handle's layout. */
export function loraRow(h: JsLora, x: Float32Array, xo: number, y: Float32Array, yo: number): void {
  const v = h.vera;
  // Shrink: VeRA reads the leading `in` columns of vera_A's rows.
  const A = v ? v.projection.A : h.A;
  const lda = v ? v.projection.maxIn : h.in;
  const t = new Float64Array(h.rank);
  for (let r = 0; r < h.rank; r++) {
    let s = 0;
    for (let k = 0; k < h.in; k++) s += (A[r * lda + k] as number) * (x[xo + k] as number);
    t[r] = s;
  }
  const sp = h.sparse;
  for (let j = 0; j < h.out; j++) {
    let s = (y[yo + j] as number) * (h.rowScale ? (h.rowScale[j] as number) : 1);
    if (v) {
      // λ_b ⊙ (B_s[:out] (λ_d ⊙ t)), one term per VeRA adapter of the mix.
      const Bs = v.projection.B;
      for (const term of v.terms) {
        let u = 0;
        for (let r = 0; r < h.rank; r++) u += (Bs[j * h.rank + r] as number) * (term.lambdaD[r] as number) * (t[r] as number);
        s += (term.lambdaB[j] as number) * u;
      }
    } else if (sp) {
      for (let e = sp.rowPtr[j] as number; e < (sp.rowPtr[j + 1] as number); e++)
        s += (sp.vals[e] as number) * (t[sp.cols[e] as number] as number);
    } else {
      for (let r = 0; r < h.rank; r++) s += (h.B[j * h.rank + r] as number) * (t[r] as number);
    }
    y[yo + j] = s;
  }
}
