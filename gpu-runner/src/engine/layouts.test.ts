/**
 * The engine on the adapter layouts: a LoRI-style adapter kept sparse, VeRA on shared
 * projection handles (one per base), mixes of VeRA with other types stacked exactly, and a
 * batch whose lora calls mix VeRA, sparse and dense handles. References as in engine.test.ts.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ADAPTERS, readJson, STORIES } from '../../../test/fixtures.ts';
import { loadBackend } from '../backend/index.ts';
import type { NativeBackend } from '../backend/native.ts';
import { loadAdapterDir, modelSource, openModelDir } from '../io/files.ts';
import { Engine } from './engine.ts';
import { buildStacks, type MixEntry } from './mix.ts';
import { loadRunnerModel } from './model.ts';

interface AdapterRef {
  generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[];
}

const dir = openModelDir(STORIES);
afterAll(() => dir.close());
const source = modelSource(dir);
const ref = (name: string) => readJson<AdapterRef>(join(ADAPTERS, name, 'reference.json')).generations;
// Each entry loads its own copy: equal projections are recognised by content, not identity.
const entry = (name: string, weight = 1, id = name): MixEntry => ({ id, adapter: loadAdapterDir(join(ADAPTERS, name)), weight });

describe.each(['js', 'cpu-native'] as const)('adapter layouts on the %s backend', (backendName) => {
  const backend = loadBackend(backendName);
  const engine = new Engine(backend, loadRunnerModel(backend, source), source);
  // The native rule keeps a LoRI B sparse where that is faster: on the SIMD kernel sets for
  // every module of this adapter; the portable set keeps some dense.
  const allSparse = backendName === 'js' || (backend as NativeBackend).isa !== 'portable';

  async function expectReferenceIds(mix: MixEntry[], name: string): Promise<void> {
    for (const g of ref(name)) {
      for (const mode of ['merged', 'unmerged'] as const) {
        const r = await engine.generate({ prompt: g.prompt_ids, maxTokens: g.greedy_ids_merged.length, mix, mode, ignoreEos: true });
        expect(r.ids, `${name} ${mode} ${g.prompt_ids}`).toEqual(g.greedy_ids_merged);
      }
    }
  }

  it('tiny-lori-r8 is stored sparse (fewer bytes) and gives its reference ids merged and unmerged', async () => {
    const mix = [entry('tiny-lori-r8')];
    const stacks = buildStacks(backend, engine.model, source, mix);
    const hs = stacks.handles.filter((h) => h !== undefined);
    expect(hs).toHaveLength(20);
    if (allSparse) expect(new Set(hs.map((h) => h.layout))).toEqual(new Set(['sparse']));
    else expect(hs.some((h) => h.layout === 'sparse')).toBe(true);
    const dense = hs.reduce((n, h) => n + h.rank * (h.in + h.out) * 4, 0);
    expect(stacks.bytes).toBeLessThan(dense);
    stacks.release();
    await expectReferenceIds(mix, 'tiny-lori-r8');
  });

  it('tiny-vera-r16 shares one projection handle across its 10 modules and gives its reference ids', async () => {
    const mix = [entry('tiny-vera-r16')];
    const stacks = buildStacks(backend, engine.model, source, mix);
    const hs = stacks.handles.filter((h) => h !== undefined);
    expect(hs).toHaveLength(10);
    expect(hs.every((h) => h.layout === 'vera')).toBe(true);
    const projection = stacks.projections?.[0];
    expect(projection).toBeDefined();
    expect(new Set(hs.map((h) => h.projection))).toEqual(new Set([projection]));
    // Scales only per module (the creator of the projection also counts it once).
    const lambdas = hs.reduce((n, h) => n + (h.out + 16) * 4, 0);
    expect(stacks.bytes).toBe(projection!.bytes + lambdas);
    // A second mix over the same projection (another copy of the files) reuses the handle.
    const again = buildStacks(backend, engine.model, source, [entry('tiny-vera-r16', 1, 'copy')]);
    expect(again.projections?.[0]).toBe(projection);
    expect(again.bytes).toBe(lambdas);
    again.release();
    stacks.release();
    await expectReferenceIds(mix, 'tiny-vera-r16');
  });

  it('two VeRA adapters over one projection (weights 0.75 + 0.25 of the same scales) run as two terms per module', async () => {
    const mix = [entry('tiny-vera-r16', 0.75, 'vera-a'), entry('tiny-vera-r16', 0.25, 'vera-b')];
    const stacks = buildStacks(backend, engine.model, source, mix);
    expect(stacks.projections).toHaveLength(1);
    expect(stacks.handles.filter((h) => h !== undefined).every((h) => h.layout === 'vera')).toBe(true);
    stacks.release();
    // Σ w_i ΔW_i = ΔW: the single adapter's reference ids.
    await expectReferenceIds(mix, 'tiny-vera-r16');
  });

  it('the projection handle is released with the last mix that uses it', () => {
    // A base of its own: the engine's cached mixes above still use the other base's projection.
    const base = loadRunnerModel(backend, source);
    const a = buildStacks(backend, base, source, [entry('tiny-vera-r16', 1, 'x')]);
    const b = buildStacks(backend, base, source, [entry('tiny-vera-r16', 0.5, 'y')]);
    const projection = a.projections![0]!;
    expect(b.projections![0]).toBe(projection);
    a.release();
    // Still alive for b: a new mix shares it.
    const c = buildStacks(backend, base, source, [entry('tiny-vera-r16', 2, 'z')]);
    expect(c.projections![0]).toBe(projection);
    b.release();
    c.release();
    const terms = [{ lambdaB: new Float32Array(64), lambdaD: new Float32Array(16) }];
    expect(() => backend.createVera!({ projection, out: 64, in: 64, terms })).toThrow(/released/);
    const d = buildStacks(backend, base, source, [entry('tiny-vera-r16')]);
    expect(d.projections![0]).not.toBe(projection);
    d.release();
  });

  it('VeRA beside LoRI in one mix is stacked (materialized) and unmerged equals merged', async () => {
    const mix = [entry('tiny-vera-r16', 0.6), entry('tiny-lori-r8', 0.4)];
    const stacks = buildStacks(backend, engine.model, source, mix);
    expect(stacks.projections).toBeUndefined();
    expect(stacks.handles.some((h) => h?.layout === 'vera')).toBe(false);
    stacks.release();
    const prompt = ref('tiny-vera-r16')[0]!.prompt_ids;
    const run = (mode: 'merged' | 'unmerged') =>
      engine.generate({ prompt, maxTokens: 24, mix, mode, ignoreEos: true, returnFirstLogits: true });
    const [merged, unmerged] = [await run('merged'), await run('unmerged')];
    expect(unmerged.ids).toEqual(merged.ids);
    const diff = merged.firstLogits!.reduce((m, v, i) => Math.max(m, Math.abs(v - unmerged.firstLogits![i]!)), 0);
    expect(diff).toBeLessThan(1e-4);
  });

  it('one batch on VeRA, LoRI (sparse) and plain LoRA adapters gives each sequence its reference ids', async () => {
    const jobs = ['tiny-vera-r16', 'tiny-lori-r8', 'tiny-qv-r4', 'tiny-vera-r16'].map((name, i) => {
      const g = ref(name)[i % 2]!;
      return { prompt: g.prompt_ids, mix: [entry(name)], want: g.greedy_ids_merged };
    });
    const before = engine.steps;
    const results = await Promise.all(
      jobs.map((j) => engine.generate({ prompt: j.prompt, mix: j.mix, maxTokens: j.want.length, ignoreEos: true })),
    );
    for (const [i, r] of results.entries()) expect(r.ids, `job ${i}`).toEqual(jobs[i]!.want);
    expect(engine.steps - before).toBe(32);
  });
});
