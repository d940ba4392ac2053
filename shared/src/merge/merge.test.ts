import { describe, expect, it } from 'vitest';
import { fixture, maxRelError, readBytes, readJson } from '../../../test/fixtures.ts';
import { LoraEdgeError } from '../errors.ts';
import { SeededRng } from '../linalg/rng.ts';
import { svd } from '../linalg/svd.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { toFloat32 } from '../tensor/tensor.ts';
import {
  combineRuleOf,
  combineTaskTensors,
  deltaWeight,
  keepTopKMagnitude,
  MERGE_METHODS,
  type MergeAdapter,
  type MergeMethod,
  type MergeOptions,
  type MergeResult,
  mergeAdapters,
  quantileLinear,
  type RandomSource,
  replayRandomSource,
  seededRandomSource,
  selectRankOneComponents,
} from './index.ts';

// ---------------------------------------------------------------- fixtures

interface Manifest {
  adapters: { name: string; r: number; lora_alpha: number; scaling: number; lora_A: string; lora_B: string; delta_weight: string }[];
  out_features: number;
  in_features: number;
  weights: number[];
  cases: {
    name: string;
    combination_type: MergeMethod;
    majority_sign_method: 'total' | 'frequency' | null;
    weights: number[];
    density: number | null;
    svd_rank: number | null;
    new_rank: number;
    new_lora_alpha: number;
    file: string;
    dare_masks: { adapter: number; side: string; tensor: string; shape: number[] }[] | null;
  }[];
}

const DIR = fixture('merges', 'three-r4');
const manifest = readJson<Manifest>(`${DIR}/manifest.json`);
const inputs = readSafetensors(readBytes(`${DIR}/inputs.safetensors`));
const OUT = manifest.out_features;
const IN = manifest.in_features;

function tensorOf(file: ReturnType<typeof readSafetensors>, name: string): Float32Array {
  return toFloat32(file.tensor(name), { copy: true });
}

function adaptersWith(weights: number[]): MergeAdapter[] {
  return manifest.adapters.map((a, i) => ({
    name: a.name,
    r: a.r,
    scaling: a.scaling,
    weight: weights[i] as number,
    lora_A: tensorOf(inputs, a.lora_A),
    lora_B: tensorOf(inputs, a.lora_B),
  }));
}

function masksOf(file: ReturnType<typeof readSafetensors>, names: string[]): Uint8Array[] {
  return names.map((n) => {
    const t = file.tensor(n);
    expect(t.dtype).toBe('U8');
    return t.data.slice();
  });
}

// ---------------------------------------------------------------- independent float64 references

/** Σ c_i·B_i·A_i in float64 by plain loops. */
function denseSum(adapters: MergeAdapter[], coef: (a: MergeAdapter) => number): Float64Array {
  const out = adapters[0]!.lora_B.length / adapters[0]!.r;
  const inF = adapters[0]!.lora_A.length / adapters[0]!.r;
  const d = new Float64Array(out * inF);
  for (const a of adapters) {
    const c = coef(a);
    for (let i = 0; i < out; i++)
      for (let j = 0; j < inF; j++) {
        let s = 0;
        for (let k = 0; k < a.r; k++) s += (a.lora_B[i * a.r + k] as number) * (a.lora_A[k * inF + j] as number);
        d[i * inF + j] = (d[i * inF + j] as number) + c * s;
      }
  }
  return d;
}

/** lora_B·lora_A in float64. */
function product(res: MergeResult): Float64Array {
  const { rank: r, outFeatures: out, inFeatures: inF } = res;
  const d = new Float64Array(out * inF);
  for (let i = 0; i < out; i++)
    for (let k = 0; k < r; k++) {
      const b = res.lora_B[i * r + k] as number;
      for (let j = 0; j < inF; j++) d[i * inF + j] = (d[i * inF + j] as number) + b * (res.lora_A[k * inF + j] as number);
    }
  return d;
}

function frob(x: ArrayLike<number>, y?: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += ((x[i] as number) - (y ? (y[i] as number) : 0)) ** 2;
  return Math.sqrt(s);
}

function expectError(fn: () => unknown, code: string, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(LoraEdgeError);
  const err = caught as LoraEdgeError;
  expect(err.code).toBe(code);
  for (const f of fragments) expect(err.message).toContain(f);
}

// ---------------------------------------------------------------- PEFT reproduction

describe('PEFT add_weighted_adapter reproduction (fixtures/merges/three-r4)', () => {
  it('covers every combination type', () => {
    const types = new Set(manifest.cases.map((c) => c.combination_type));
    for (const m of MERGE_METHODS) expect(types.has(m)).toBe(true);
  });

  for (const c of manifest.cases) {
    it(`${c.name}`, () => {
      const file = readSafetensors(readBytes(`${DIR}/${c.file}`));
      const replay = c.dare_masks
        ? replayRandomSource(
            masksOf(
              file,
              c.dare_masks.map((m) => m.tensor),
            ),
          )
        : undefined;
      const noDraws: RandomSource = {
        bernoulliMask: () => {
          throw new Error('no mask draws expected');
        },
      };
      const opts: MergeOptions = { method: c.combination_type, random: replay ?? noDraws };
      if (c.density !== null) opts.density = c.density;
      if (c.svd_rank !== null) opts.svdRank = c.svd_rank;
      if (c.majority_sign_method !== null) opts.majoritySignMethod = c.majority_sign_method;
      const res = mergeAdapters(adaptersWith(c.weights), opts);

      expect(res.semantics).toBe('peft');
      expect(res.rank).toBe(c.new_rank);
      expect(res.alpha).toBe(c.new_lora_alpha);
      expect(res.lora_A.length).toBe(c.new_rank * IN);
      expect(res.lora_B.length).toBe(OUT * c.new_rank);
      if (replay) expect(replay.remaining()).toBe(0);

      const refA = tensorOf(file, 'lora_A');
      const refB = tensorOf(file, 'lora_B');
      const refDelta = tensorOf(file, 'delta');
      if (!c.combination_type.endsWith('svd')) {
        expect(maxRelError(res.lora_A, refA)).toBeLessThan(1e-5);
        expect(maxRelError(res.lora_B, refB)).toBeLessThan(1e-5);
        expect(maxRelError(product(res), refDelta)).toBeLessThan(1e-5);
        return;
      }
      // Singular vectors' signs are arbitrary: compare the product and the spectrum.
      expect(maxRelError(product(res), refDelta)).toBeLessThan(1e-4);
      const refS = tensorOf(file, 'singular_values');
      const s = res.singularValues as Float64Array;
      const n = Math.min(s.length, refS.length);
      expect(n).toBeGreaterThanOrEqual(c.new_rank);
      expect(maxRelError(s.subarray(0, n), refS.subarray(0, n))).toBeLessThan(1e-4);
      // Beyond what we computed (the low-rank path knows only Σr values) PEFT's are rounding noise.
      for (let i = n; i < refS.length; i++) expect(refS[i] as number).toBeLessThan(1e-5 * (refS[0] as number));
      // What was cut off is the tail of the spectrum.
      let tail = 0;
      for (let i = c.new_rank; i < refS.length; i++) tail += (refS[i] as number) ** 2;
      expect(res.discardedSpectrum as number).toBeCloseTo(Math.sqrt(tail), 4);
      expect(res.svd?.algorithm).toBe(c.combination_type === 'svd' ? 'low-rank' : 'jacobi');
    });
  }

  it('the matrices fed to the SVD match svd_input_delta (deltas formed and combined as PEFT)', () => {
    for (const c of manifest.cases.filter((x) => x.combination_type.endsWith('svd'))) {
      const file = readSafetensors(readBytes(`${DIR}/${c.file}`));
      const adapters = adaptersWith(c.weights);
      const deltas = adapters.map((a) => deltaWeight(a.lora_A, a.lora_B, a.r, OUT, IN, a.scaling));
      adapters.forEach((a, i) => {
        expect(maxRelError(deltas[i] as Float32Array, tensorOf(inputs, manifest.adapters[i]!.delta_weight))).toBeLessThan(1e-6);
        expect(a.r).toBe(4);
      });
      const random = c.dare_masks
        ? replayRandomSource(
            masksOf(
              file,
              c.dare_masks.map((m) => m.tensor),
            ),
          )
        : seededRandomSource(0);
      const merged = combineTaskTensors(
        deltas,
        adapters.map((a) => a.weight * a.scaling),
        combineRuleOf(c.combination_type)!,
        { density: c.density ?? 1, majoritySignMethod: c.majority_sign_method ?? 'total', random },
      );
      expect(maxRelError(merged, tensorOf(file, 'svd_input_delta')), c.name).toBeLessThan(1e-6);
    }
  });
});

// ---------------------------------------------------------------- PEFT quirks, one at a time

describe('PEFT semantics', () => {
  const adapters = adaptersWith(manifest.weights);

  it('linear is not the weighted sum of deltas (√|w·s| on each factor)', () => {
    const res = mergeAdapters(adapters, { method: 'linear' });
    const exact = denseSum(adapters, (a) => a.weight * a.scaling);
    expect(maxRelError(product(res), exact)).toBeGreaterThan(0.05);
  });

  it('a single adapter is merged linearly whatever the method', () => {
    const one = [{ ...adapters[1]!, weight: -0.7 }];
    const ties = mergeAdapters(one, { method: 'ties', density: 0.3 });
    expect(ties.method).toBe('linear');
    const root = Math.sqrt(0.7 * one[0]!.scaling);
    expect(
      maxRelError(
        ties.lora_A,
        one[0]!.lora_A.map((x) => -root * x),
      ),
    ).toBeLessThan(1e-6);
    expect(
      maxRelError(
        ties.lora_B,
        one[0]!.lora_B.map((x) => root * x),
      ),
    ).toBeLessThan(1e-6);
    // and the product is then the exact w·s·B·A
    expect(
      maxRelError(
        product(ties),
        denseSum(one, (a) => a.weight * a.scaling),
      ),
    ).toBeLessThan(1e-6);
  });

  it('svd applies the scaling twice: Σ w·s²·B·A', () => {
    const res = mergeAdapters(adapters, { method: 'svd', svdRank: 12 });
    expect(
      maxRelError(
        product(res),
        denseSum(adapters, (a) => a.weight * a.scaling * a.scaling),
      ),
    ).toBeLessThan(1e-5);
  });

  it('rank defaults to the largest input rank for *_svd; cat adds the ranks', () => {
    const mixed = [
      adapters[0]!,
      { ...adapters[1]!, r: 2, lora_A: adapters[1]!.lora_A.slice(0, 2 * IN), lora_B: takeCols(adapters[1]!.lora_B, 4, 2) },
    ];
    expect(mergeAdapters(mixed, { method: 'svd' }).rank).toBe(4);
    expect(mergeAdapters(mixed, { method: 'cat' }).rank).toBe(6);
  });

  it('an svd rank above Σr gets zero components (PEFT: zero singular values), same product', () => {
    const two = adapters.slice(0, 2).map((a) => ({ ...a, r: 2, lora_A: a.lora_A.slice(0, 2 * IN), lora_B: takeCols(a.lora_B, 4, 2) }));
    const res = mergeAdapters(two, { method: 'svd', svdRank: 6 });
    expect(res.rank).toBe(6);
    expect(
      maxRelError(
        product(res),
        denseSum(two, (a) => a.weight * a.scaling * a.scaling),
      ),
    ).toBeLessThan(1e-5);
    for (let i = 0; i < OUT; i++) for (const c of [4, 5]) expect(res.lora_B[i * 6 + c]).toBe(0);
  });

  it('DARE with density 1 draws no masks; magnitude pruning keeps int(density·numel)', () => {
    const refuse: RandomSource = {
      bernoulliMask: () => {
        throw new Error('drawn');
      },
    };
    expect(() => mergeAdapters(adapters, { method: 'dare_linear', density: 1, random: refuse })).not.toThrow();
    const x = Float32Array.from([0.5, -3, 2, 0, -2, 1, 7]);
    // k = int(0.5·7) = 3; |2| = |−2| tie at the threshold: lowest index first
    expect(Array.from(keepTopKMagnitude(x, Math.trunc(0.5 * x.length)))).toEqual([0, -3, 2, 0, 0, 0, 7]);
    expect(Array.from(keepTopKMagnitude(x, 4))).toEqual([0, -3, 2, 0, -2, 0, 7]);
    expect(Array.from(keepTopKMagnitude(x, 0))).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(Array.from(keepTopKMagnitude(x, 9))).toEqual(Array.from(x));
  });

  it('top-k by radix select agrees with a sort on random data', () => {
    const rng = new SeededRng(5);
    const x = new Float32Array(50_001).map(() => rng.normal() * 10 ** Math.floor(rng.uniform() * 6 - 3));
    for (const k of [1, 17, 25_000, 50_000]) {
      const kept = keepTopKMagnitude(x, k);
      const t = [...x].map(Math.abs).sort((a, b) => b - a)[k - 1] as number;
      let count = 0;
      let wrong = 0;
      for (let i = 0; i < x.length; i++) {
        const a = Math.abs(x[i] as number);
        if (kept[i] !== 0) {
          count++;
          if (a < t || kept[i] !== x[i]) wrong++;
        } else if (a > t) wrong++;
      }
      expect(wrong).toBe(0);
      expect(count).toBe(k);
      const inPlace = x.slice();
      expect(keepTopKMagnitude(inPlace, k, inPlace)).toEqual(kept);
    }
  });

  it('majority sign: ties at 0 elect +, pruned zeros never vote with the majority', () => {
    const t = [Float32Array.from([1, 2, 0, -1]), Float32Array.from([-1, -3, 0, 0]), Float32Array.from([0, 2, 5, 0])];
    const rs = seededRandomSource(0);
    const total = combineTaskTensors(t, [1, 1, 1], 'ties', { density: 1, majoritySignMethod: 'total', random: rs });
    // col0: sum 0 → +, only the 1 agrees; col1: sum 1 → +, mean(2, 2); col2: only 5; col3: −1 alone
    expect(Array.from(total)).toEqual([1, 2, 5, -1]);
    const freq = combineTaskTensors(t, [1, 1, 1], 'ties', { density: 1, majoritySignMethod: 'frequency', random: rs });
    // col1: two + against one − → +
    expect(Array.from(freq)).toEqual([1, 2, 5, -1]);
    const t2 = [Float32Array.from([1]), Float32Array.from([-5]), Float32Array.from([2])];
    expect(Array.from(combineTaskTensors(t2, [1, 1, 1], 'ties', { density: 1, majoritySignMethod: 'total', random: rs }))).toEqual([-5]);
    expect(Array.from(combineTaskTensors(t2, [1, 1, 1], 'ties', { density: 1, majoritySignMethod: 'frequency', random: rs }))).toEqual([
      1.5,
    ]);
  });

  it('svd_clamp clamps U·S and Vh to ± the quantile of their signed entries', () => {
    const plain = mergeAdapters(adapters, { method: 'svd', svdRank: 6 });
    const clamped = mergeAdapters(adapters, { method: 'svd', svdRank: 6, svdClamp: 0.9 });
    const all = new Float32Array([...plain.lora_B, ...plain.lora_A]);
    const sorted = [...all].sort((a, b) => a - b);
    const pos = 0.9 * (sorted.length - 1);
    const lo = Math.floor(pos);
    const hi = (sorted[lo] as number) + (pos - lo) * ((sorted[lo + 1] as number) - (sorted[lo] as number));
    expect(quantileLinear(all, 0.9)).toBeCloseTo(hi, 6);
    let changed = 0;
    [...clamped.lora_B, ...clamped.lora_A].forEach((v, i) => {
      const orig = all[i] as number;
      expect(v).toBeCloseTo(Math.min(Math.max(orig, -hi), hi), 6);
      if (v !== orig) changed++;
    });
    expect(changed).toBeGreaterThan(0);
  });

  it('default random source: same seed, same DARE merge; another seed, another', () => {
    const a = mergeAdapters(adapters, { method: 'dare_ties', density: 0.5, seed: 1 });
    const b = mergeAdapters(adapters, { method: 'dare_ties', density: 0.5, seed: 1 });
    const c = mergeAdapters(adapters, { method: 'dare_ties', density: 0.5, seed: 2 });
    expect(a.lora_A).toEqual(b.lora_A);
    expect(a.lora_B).toEqual(b.lora_B);
    expect(a.lora_A).not.toEqual(c.lora_A);
    const m = seededRandomSource(3).bernoulliMask(100_000, 0.3);
    const kept = m.reduce((s, v) => s + v, 0);
    expect(Math.abs(kept / 100_000 - 0.3)).toBeLessThan(0.01);
  });

  it('randomized SVD path (forced) is near-optimal and reports its error', () => {
    const c = manifest.cases.find((x) => x.name === 'ties_svd__total')!;
    const opts: MergeOptions = { method: 'ties_svd', density: 0.5, svdRank: 6, majoritySignMethod: 'total' };
    const exactSvd = mergeAdapters(adapters, opts);
    const rand = mergeAdapters(adapters, { ...opts, exactSvdMaxDim: 0 });
    expect(rand.svd?.algorithm).toBe('randomized');
    const file = readSafetensors(readBytes(`${DIR}/${c.file}`));
    const input = tensorOf(file, 'svd_input_delta');
    const err = frob(input, product(rand));
    expect(rand.discardedSpectrum as number).toBeCloseTo(err, 5);
    expect(err).toBeLessThan(1.01 * (exactSvd.discardedSpectrum as number));
    expect(rand.svd?.spectralErrorBound as number).toBeGreaterThan(0);
  });
});

// ---------------------------------------------------------------- exact variants

describe('exact variants against an independent float64 Σ w·s·B·A', () => {
  const adapters = adaptersWith(manifest.weights);
  const target = denseSum(adapters, (a) => a.weight * a.scaling);

  it('linear: the exact sum, compressed to its numerical rank', () => {
    const res = mergeAdapters(adapters, { method: 'linear', exact: true });
    expect(res.semantics).toBe('exact');
    expect(res.rank).toBe(12);
    expect(res.alpha).toBe(12);
    expect(maxRelError(product(res), target)).toBeLessThan(1e-6);
    expect(res.discardedSpectrum as number).toBeLessThan(1e-12);
  });

  it('linear: unequal ranks are fine, cancelling adapters lower the rank', () => {
    const a0 = adapters[0]!;
    const twin = [a0, { ...a0, name: 'twin', weight: -a0.weight }, adapters[1]!];
    const res = mergeAdapters(twin, { method: 'linear', exact: true });
    expect(res.rank).toBe(4);
    expect(
      maxRelError(
        product(res),
        denseSum([adapters[1]!], (a) => a.weight * a.scaling),
      ),
    ).toBeLessThan(1e-5);
    const mixed = [
      a0,
      { ...adapters[1]!, r: 2, lora_A: adapters[1]!.lora_A.slice(0, 2 * IN), lora_B: takeCols(adapters[1]!.lora_B, 4, 2) },
    ];
    const m = mergeAdapters(mixed, { method: 'linear', exact: true });
    expect(m.rank).toBe(6);
    expect(
      maxRelError(
        product(m),
        denseSum(mixed, (a) => a.weight * a.scaling),
      ),
    ).toBeLessThan(1e-6);
  });

  it('cat: the exact sum at rank Σr', () => {
    const res = mergeAdapters(adapters, { method: 'cat', exact: true });
    expect(res.rank).toBe(12);
    expect(maxRelError(product(res), target)).toBeLessThan(1e-6);
  });

  it('svd: scaling once; the truncation error is the Eckart–Young tail', () => {
    const full = mergeAdapters(adapters, { method: 'svd', exact: true, svdRank: 12 });
    expect(maxRelError(product(full), target)).toBeLessThan(1e-5);
    const six = mergeAdapters(adapters, { method: 'svd', exact: true, svdRank: 6 });
    const ref = svd({ rows: OUT, cols: IN, data: target }).s;
    let tail = 0;
    for (let i = 6; i < ref.length; i++) tail += (ref[i] as number) ** 2;
    expect(frob(target, product(six))).toBeCloseTo(Math.sqrt(tail), 5);
    expect(six.discardedSpectrum as number).toBeCloseTo(Math.sqrt(tail), 5);
  });

  it('pruning methods at density 1 reduce to the exact weighted sum', () => {
    for (const method of ['magnitude_prune', 'dare_linear', 'magnitude_prune_svd', 'dare_linear_svd'] as const) {
      const res = mergeAdapters(adapters, { method, density: 1, svdRank: 12, exact: true });
      expect(maxRelError(product(res), target), method).toBeLessThan(1e-5);
    }
  });

  it('ties exact = TIES on the deltas w·(s·B·A), checked against a float64 re-implementation', () => {
    const density = 0.5;
    const res = mergeAdapters(adapters, { method: 'ties', density, svdRank: 6, exact: true, majoritySignMethod: 'total' });
    const deltas = adapters.map((a) => denseSum([{ ...a, weight: 1 }], (x) => x.scaling));
    const pruned = deltas.map((d) => {
      const k = Math.trunc(density * d.length);
      const t = [...d].map(Math.abs).sort((x, y) => y - x)[k - 1] as number;
      return d.map((v) => (Math.abs(v) >= t ? v : 0));
    });
    const merged = new Float64Array(OUT * IN);
    for (let i = 0; i < merged.length; i++) {
      let vote = 0;
      for (const p of pruned) vote += p[i] as number;
      let sum = 0;
      let n = 0;
      pruned.forEach((p, k) => {
        const v = p[i] as number;
        if ((vote >= 0 && v > 0) || (vote < 0 && v < 0)) {
          sum += v * adapters[k]!.weight;
          n++;
        }
      });
      merged[i] = n ? sum / n : 0;
    }
    const ref = svd({ rows: OUT, cols: IN, data: merged }, { rank: 6 });
    const approx = new Float64Array(OUT * IN);
    for (let i = 0; i < OUT; i++)
      for (let j = 0; j < IN; j++) {
        let s = 0;
        for (let k = 0; k < 6; k++) s += (ref.u.data[i * 6 + k] as number) * (ref.s[k] as number) * (ref.vt.data[k * IN + j] as number);
        approx[i * IN + j] = s;
      }
    expect(maxRelError(product(res), approx)).toBeLessThan(1e-4);
    expect(maxRelError((res.singularValues as Float64Array).subarray(0, 6), ref.s.subarray(0, 6))).toBeLessThan(1e-5);
  });

  it('exact and PEFT differ where PEFT has quirks', () => {
    const peft = mergeAdapters(adapters, { method: 'svd', svdRank: 12 });
    const exact = mergeAdapters(adapters, { method: 'svd', svdRank: 12, exact: true });
    expect(maxRelError(product(peft), product(exact))).toBeGreaterThan(0.1);
  });
});

// ---------------------------------------------------------------- rank-one selection

describe('static rank-one selection', () => {
  const adapters = adaptersWith(manifest.weights);
  const target = denseSum(adapters, (a) => a.weight * a.scaling);

  it('keeps the k largest components of the pooled per-adapter spectra and measures the rest', () => {
    const res = selectRankOneComponents(adapters);
    expect(res.rank).toBe(4); // mean input rank
    expect(res.alpha).toBe(4);
    const pooled = adapters.flatMap((a) => [
      ...svd({ rows: OUT, cols: IN, data: denseSum([a], (x) => x.weight * x.scaling) }).s.subarray(0, a.r),
    ]);
    pooled.sort((x, y) => y - x);
    expect(maxRelError(res.singularValues as Float64Array, pooled.slice(0, 4))).toBeLessThan(1e-10);
    expect(maxRelError(res.discardedSingularValues as Float64Array, pooled.slice(4))).toBeLessThan(1e-10);
    const err = frob(target, product(res));
    expect(res.discardedSpectrum as number).toBeCloseTo(err, 5);
    expect(res.errorBound as number).toBeGreaterThanOrEqual(err * (1 - 1e-9));
  });

  it('keeping every component reproduces the exact sum', () => {
    const res = selectRankOneComponents(adapters, { k: 12 });
    expect(maxRelError(product(res), target)).toBeLessThan(1e-6);
    expect(res.discardedSpectrum).toBe(0);
  });

  it('refuses a bad k', () => {
    expectError(() => selectRankOneComponents(adapters, { k: 0 }), 'merge_invalid', 'k');
  });
});

// ---------------------------------------------------------------- bad input

describe('bad input is refused with a clear LoraEdgeError', () => {
  const adapters = adaptersWith(manifest.weights);

  it('no adapters', () => expectError(() => mergeAdapters([], { method: 'linear' }), 'merge_invalid', 'no adapters'));

  it('density outside (0, 1], or missing where needed', () => {
    for (const density of [0, -0.1, 1.5, Number.NaN])
      expectError(() => mergeAdapters(adapters, { method: 'ties', density }), 'merge_invalid', 'density');
    expectError(() => mergeAdapters(adapters, { method: 'dare_linear' }), 'merge_invalid', 'density');
  });

  it('svdRank not a positive integer or larger than the module allows', () => {
    for (const svdRank of [0, -2, 2.5]) expectError(() => mergeAdapters(adapters, { method: 'svd', svdRank }), 'merge_invalid', 'svdRank');
    expectError(() => mergeAdapters(adapters, { method: 'svd', svdRank: 65 }), 'merge_invalid', 'min(out, in) = 64');
  });

  it('svdClamp outside [0, 1], unknown method or majority sign', () => {
    expectError(() => mergeAdapters(adapters, { method: 'svd', svdClamp: 1.5 }), 'merge_invalid', 'svdClamp');
    expectError(() => mergeAdapters(adapters, { method: 'nope' as MergeMethod }), 'merge_invalid', 'nope');
    expectError(
      () => mergeAdapters(adapters, { method: 'ties', density: 0.5, majoritySignMethod: 'most' as 'total' }),
      'merge_invalid',
      'majoritySignMethod',
    );
  });

  it('NaN or Inf in a factor: names the adapter and the factor', () => {
    const bad = adapters.map((a) => ({ ...a, lora_B: a.lora_B.slice() }));
    bad[1]!.lora_B[4 * 3 + 2] = Number.NaN;
    expectError(() => mergeAdapters(bad, { method: 'svd' }), 'non_finite_value', 'adapter1', 'lora_B', 'NaN', '[3, 2]');
    const inf = adapters.map((a) => ({ ...a, lora_A: a.lora_A.slice() }));
    inf[2]!.lora_A[5] = Number.NEGATIVE_INFINITY;
    expectError(() => mergeAdapters(inf, { method: 'cat' }), 'non_finite_value', 'adapter2', 'lora_A', 'Infinity');
  });

  it('a non-finite weight', () => {
    const bad = adapters.map((a, i) => ({ ...a, weight: i === 0 ? Number.POSITIVE_INFINITY : a.weight }));
    expectError(() => mergeAdapters(bad, { method: 'linear' }), 'adapter_weight_invalid', 'adapter0');
  });

  it('unequal ranks where PEFT refuses them, named with their ranks', () => {
    const mixed = [
      adapters[0]!,
      { ...adapters[1]!, r: 2, lora_A: adapters[1]!.lora_A.slice(0, 2 * IN), lora_B: takeCols(adapters[1]!.lora_B, 4, 2) },
    ];
    for (const method of ['linear', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune'] as const) {
      expectError(() => mergeAdapters(mixed, { method, density: 0.5 }), 'merge_invalid', method, '"adapter0" r=4', '"adapter1" r=2');
    }
    for (const method of ['cat', 'svd', 'ties_svd'] as const) expect(() => mergeAdapters(mixed, { method, density: 0.5 })).not.toThrow();
  });

  it('mismatched shapes', () => {
    const other = { ...adapters[2]!, lora_A: new Float32Array(4 * 32) };
    expectError(() => mergeAdapters([adapters[0]!, other], { method: 'cat' }), 'adapter_shape_mismatch', 'adapter2', 'adapter0');
    const ragged = { ...adapters[2]!, lora_B: new Float32Array(95 * 4 + 1) };
    expectError(() => mergeAdapters([adapters[0]!, ragged], { method: 'cat' }), 'adapter_shape_mismatch', 'adapter2');
    expectError(() => mergeAdapters(adapters, { method: 'cat', inFeatures: 65 }), 'adapter_shape_mismatch', '96×64');
    expectError(() => mergeAdapters([{ ...adapters[0]!, r: 0 }], { method: 'cat' }), 'merge_invalid', 'rank');
  });

  it('a default rank too large for the module', () => {
    const wide = adapters.map((a) => ({ ...a, r: 1, lora_A: new Float32Array(300), lora_B: new Float32Array(4) }));
    // r=1 → 4×300 module, fine; r=5 on a 4-row module is not
    expect(() => mergeAdapters(wide, { method: 'svd' })).not.toThrow();
    const tooBig = adapters.map((a) => ({ ...a, r: 5, lora_A: new Float32Array(5 * 3), lora_B: new Float32Array(5 * 2) }));
    expectError(() => mergeAdapters(tooBig, { method: 'svd' }), 'merge_invalid', 'exceeds min(out, in) = 2');
  });

  it('a replayed mask of the wrong size', () => {
    const random = replayRandomSource([new Uint8Array(3)]);
    expectError(() => mergeAdapters(adapters, { method: 'dare_linear', density: 0.5, random }), 'merge_invalid', 'mask replay');
  });
});

/** The first k of the r columns of a row-major [out, r] matrix. */
function takeCols(b: Float32Array, r: number, k: number): Float32Array {
  const out = b.length / r;
  const o = new Float32Array(out * k);
  for (let i = 0; i < out; i++) for (let j = 0; j < k; j++) o[i * k + j] = b[i * r + j] as number;
  return o;
}
