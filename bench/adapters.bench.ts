/**
 * Adapter layouts on the cpu-native backend (2 threads): LoRI-style adapters (rank 16, 90% of B
 * exact zeros) with the sparse expand against the dense one, and VeRA on shared rank-256
 * projections against a LoRA of the same rank and against merged weights. Decode on a random
 * model of llama2.c's 15M shape, and the raw multi-LoRA op against its floor (the factor bytes
 * it must read at the measured bandwidth). Sparse and dense run on the same factors: the dense
 * side is the same backend with `layout: 'dense'` forced on createLora. Each comparison
 * alternates its sides over rounds and keeps medians, so drift on a shared machine hits both.
 */
import {
  buildStacks,
  createNativeBackend,
  Engine,
  loadNativeAddon,
  loadRunnerModel,
  type MixEntry,
  type NativeBackend,
} from '@lora-edge/gpu-runner';
import type { LoraAdapter } from '@lora-edge/shared';
import type { Backend, LoraHandle, LoraInit } from '../gpu-runner/src/backend/types.ts';
import { configOf, moduleShape, randomF32, randomLora, randomModel, randomVera, SHAPE_15M } from './adapters-data.ts';
import { type BenchContext, median, type Row, type Suite, timeMs } from './lib.ts';

/** The same backend with some createLora fields forced, or without VeRA handles (mixes then stack). */
function variant(be: Backend, opts: { layout?: LoraInit['layout']; noVera?: boolean }): Backend {
  const v = Object.create(be) as Backend & Record<string, unknown>;
  if (opts.layout) v.createLora = (init: LoraInit) => be.createLora({ ...init, layout: opts.layout });
  if (opts.noVera) v.createVera = v.createVeraProjection = undefined;
  return v;
}

/** Median rates (tok/s) of several setups measured in alternation, after one warm run each. */
async function rates(setups: (() => Promise<number>)[], rounds: number): Promise<number[]> {
  for (const s of setups) await s();
  const got: number[][] = setups.map(() => []);
  for (let r = 0; r < rounds; r++) for (const [i, s] of setups.entries()) got[i]!.push(await s());
  return got.map(median);
}

function decode(engine: Engine, streams: number, tokens: number, mix: (i: number) => MixEntry[] | undefined, mode: 'merged' | 'unmerged') {
  return async () => {
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: streams }, (_, i) =>
        engine.generate({ prompt: [1 + i], maxTokens: tokens, ignoreEos: true, mix: mix(i), mode }),
      ),
    );
    return (streams * tokens) / ((performance.now() - t0) / 1000);
  };
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

async function decodeRows(be: NativeBackend, ctx: BenchContext): Promise<Row[]> {
  const s = SHAPE_15M;
  const tensors = randomModel(s);
  const source = { config: configOf(s), get: (n: string) => tensors.get(n) };
  const model = loadRunnerModel(be, source);
  const engineOn = (b: Backend) => new Engine(b, model, source, { adapterBudgetBytes: 2 ** 31 });
  const sparseEngine = engineOn(be);
  const denseEngine = engineOn(variant(be, { layout: 'dense' }));
  const stackedEngine = engineOn(variant(be, { noVera: true }));
  const tokens = ctx.quick ? 24 : 64;
  const rounds = ctx.quick ? 1 : 3;
  const one = (a: LoraAdapter, id: string) => () => [{ id, adapter: a, weight: 1 }];
  const rows: Row[] = [];

  // LoRI: rank 16, 90% zeros in B, all seven projections; one stream, then 16 streams on 16 adapters.
  const lori = Array.from({ length: 16 }, (_, i) => randomLora(s, 16, 5000 + 200 * i, 0.1));
  const loriMix = (i: number) => [{ id: `lori${i}`, adapter: lori[i]!, weight: 1 }];
  const [sparse1, dense1, merged1, base1] = await rates(
    [
      decode(sparseEngine, 1, tokens, one(lori[0]!, 'lori0'), 'unmerged'),
      decode(denseEngine, 1, tokens, one(lori[0]!, 'lori0'), 'unmerged'),
      decode(sparseEngine, 1, tokens, one(lori[0]!, 'lori0'), 'merged'),
      decode(sparseEngine, 1, tokens, () => undefined, 'unmerged'),
    ],
    rounds,
  );
  // Which layout the rule chose for each of the adapter's 42 modules.
  const probe = buildStacks(be, model, source, loriMix(0));
  const chosen = probe.handles.filter((h) => h !== undefined).map((h) => h.layout);
  probe.release();
  const sparseCount = chosen.filter((l) => l === 'sparse').length;
  rows.push({
    name: '15M decode, 1 stream, LoRI r16 (90% zeros) unmerged: sparse expand',
    value: sparse1!,
    unit: 'tok/s',
    baseline: { value: dense1!, label: 'same factors, dense expand, same run' },
    note: `auto layout: ${sparseCount} of ${chosen.length} modules sparse; merged ${merged1!.toFixed(0)} tok/s, base alone ${base1!.toFixed(0)} tok/s`,
  });
  const [sparse16, dense16, base16] = await rates(
    [
      decode(sparseEngine, 16, tokens / 2, loriMix, 'unmerged'),
      decode(denseEngine, 16, tokens / 2, loriMix, 'unmerged'),
      decode(sparseEngine, 16, tokens / 2, () => undefined, 'unmerged'),
    ],
    rounds,
  );
  rows.push({
    name: '15M decode, 16 streams × 16 LoRI r16 adapters unmerged: sparse expand',
    value: sparse16!,
    unit: 'tok/s',
    baseline: { value: dense16!, label: 'same factors, dense expand, same run' },
    note: `16 streams on the base alone ${base16!.toFixed(0)} tok/s; factor cache ${mb(sparseEngine.stacks.bytes)} sparse vs ${mb(denseEngine.stacks.bytes)} dense`,
  });

  // VeRA r256 on shared projections, against its merged weights, the same adapter stacked
  // (materialized A = λ_d ⊙ A_s, B = λ_b ⊙ B_s) and an ordinary rank-256 LoRA.
  const vera = Array.from({ length: 16 }, (_, i) => randomVera(s, 256, 77, 9000 + 300 * i));
  const lora256 = randomLora(s, 256, 123);
  const [veraShared, veraMerged, veraStacked, loraUnmerged] = await rates(
    [
      decode(sparseEngine, 1, tokens, one(vera[0]!, 'vera0'), 'unmerged'),
      decode(sparseEngine, 1, tokens, one(vera[0]!, 'vera0'), 'merged'),
      decode(stackedEngine, 1, tokens, one(vera[0]!, 'vera0'), 'unmerged'),
      decode(sparseEngine, 1, tokens, one(lora256, 'lora256'), 'unmerged'),
    ],
    rounds,
  );
  // Backend bytes of the forms (a base of its own, so the projection is counted here).
  const probeModel = loadRunnerModel(be, source);
  const shared = buildStacks(be, probeModel, source, one(vera[0]!, 'vera0')());
  const projectionBytes = shared.projections?.[0]?.bytes ?? 0;
  const scaleBytes = shared.bytes - projectionBytes;
  const stacked = buildStacks(variant(be, { noVera: true }), probeModel, source, one(vera[0]!, 'vera0')());
  const stackedBytes = stacked.bytes;
  shared.release();
  stacked.release();
  rows.push(
    {
      name: '15M decode, 1 stream, VeRA r256 unmerged on shared projections, vs merged',
      value: veraShared!,
      unit: 'tok/s',
      baseline: { value: veraMerged!, label: 'same adapter merged, same run' },
    },
    {
      name: '15M decode, 1 stream, VeRA r256 unmerged on shared projections, vs LoRA r256',
      value: veraShared!,
      unit: 'tok/s',
      baseline: { value: loraUnmerged!, label: 'a rank-256 LoRA unmerged, same run' },
      note: `the same VeRA stacked (materialized): ${veraStacked!.toFixed(0)} tok/s`,
    },
  );
  const veraMix = (i: number) => [{ id: `vera${i}`, adapter: vera[i]!, weight: 1 }];
  const [vera16, base16b] = await rates(
    [decode(sparseEngine, 16, tokens / 2, veraMix, 'unmerged'), decode(sparseEngine, 16, tokens / 2, () => undefined, 'unmerged')],
    rounds,
  );
  rows.push({
    name: '15M decode, 16 streams × 16 VeRA r256 adapters (one projection) unmerged',
    value: vera16!,
    unit: 'tok/s',
    baseline: { value: base16b!, label: '16 streams on the base alone, same run' },
    note: `backend bytes: projection ${mb(projectionBytes)} once + ${mb(scaleBytes)} of scales per adapter (16: ${mb(projectionBytes + 16 * scaleBytes)}); stacked VeRA ${mb(stackedBytes)} per adapter (16: ${mb(16 * stackedBytes)})`,
  });
  for (const e of [sparseEngine, denseEngine, stackedEngine]) e.stacks.clear();
  return rows;
}

/** Handles over random factors, `sets` independent copies (streamed: together larger than L2). */
function loriHandles(be: Backend, count: number, out: number, inF: number, layout: 'dense' | 'sparse', seed: number): LoraHandle[] {
  return Array.from({ length: count }, (_, i) => {
    const B = randomF32(out * 16, 1, seed + 2 * i);
    const keep = randomF32(out * 16, 1, seed + 2 * i + 1);
    for (let k = 0; k < B.length; k++) if ((keep[k] as number) + 0.5 >= 0.1) B[k] = 0;
    return be.createLora({ rank: 16, out, in: inF, A: randomF32(16 * inF, 0.1, seed + 999 + i), B, layout });
  });
}

async function opMs(
  be: Backend,
  sets: LoraHandle[][],
  x: Float32Array,
  y: Float32Array,
  n: number,
  quick: boolean,
): Promise<[number, number]> {
  const slots = Int32Array.from({ length: n }, (_, i) => i % (sets[0]?.length ?? 1));
  const streamed = await timeMs(
    () => {
      for (const hs of sets) be.lora(y, x, n, slots, hs);
    },
    { repeat: quick ? 3 : 7, warmup: 1 },
  );
  const hot = await timeMs(() => be.lora(y, x, n, slots, sets[0]!), { repeat: quick ? 20 : 60, warmup: 3 });
  return [streamed / sets.length, hot];
}

async function kernelRows(be: NativeBackend, ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  const target = ctx.quick ? 32e6 : 128e6; // bytes streamed per timing: well past L2
  // LoRI expand: a decode batch of 16 rows on 16 adapters, for the up (288 → 768) and down (768 → 288) shapes.
  for (const p of ['up_proj', 'down_proj'] as const) {
    const { out, in: inF } = moduleShape(SHAPE_15M, p);
    const n = 16;
    const x = randomF32(n * inF, 1, 1);
    const y = new Float32Array(n * out);
    const res: Record<string, { ms: number; hot: number; bytes: number }> = {};
    for (const layout of ['dense', 'sparse'] as const) {
      const probe = loriHandles(be, n, out, inF, layout, 40);
      const bytes = probe.reduce((b, h) => b + (h.bytes ?? 0), 0);
      const sets = [
        probe,
        ...Array.from({ length: Math.max(1, Math.ceil(target / bytes) - 1) }, (_, k) => loriHandles(be, n, out, inF, layout, 100 + 50 * k)),
      ];
      const [ms, hot] = await opMs(be, sets, x, y, n, ctx.quick);
      res[layout] = { ms, hot, bytes };
      for (const hs of sets) for (const h of hs) be.release(h);
    }
    const sp = res.sparse!;
    const de = res.dense!;
    rows.push({
      name: `LoRA op, 16 rows × 16 LoRI r16 adapters, ${inF}→${out} (${p}): sparse expand`,
      value: sp.ms,
      unit: 'ms',
      baseline: { value: de.ms, label: 'dense expand, same factors' },
      floor: ctx.floorMs(sp.bytes),
      note: `factors ${mb(sp.bytes)} sparse vs ${mb(de.bytes)} dense (dense floor ${ctx.floorMs(de.bytes).toPrecision(3)} ms); cache-hot ${sp.hot.toPrecision(3)} vs ${de.hot.toPrecision(3)} ms`,
    });
  }
  // VeRA: 16 rows on 16 VeRA modules over one rank-256 projection, against 16 rank-256 LoRA handles.
  const { out, in: inF } = moduleShape(SHAPE_15M, 'up_proj');
  const r = 256;
  const n = 16;
  const x = randomF32(n * inF, 1, 2);
  const y = new Float32Array(n * out);
  const maxIn = SHAPE_15M.hidden;
  const projection = be.createVeraProjection({
    rank: r,
    maxIn,
    maxOut: out,
    A: randomF32(r * maxIn, 0.1, 3),
    B: randomF32(out * r, 0.1, 4),
  });
  const veraSet = Array.from({ length: n }, (_, i) =>
    be.createVera({ projection, out, in: inF, terms: [{ lambdaB: randomF32(out, 0.1, 10 + i), lambdaD: randomF32(r, 0.1, 50 + i) }] }),
  );
  const [veraMs, veraHot] = await opMs(be, [veraSet], x, y, n, ctx.quick);
  const veraBytes = projection.bytes + veraSet.reduce((b, h) => b + (h.bytes ?? 0), 0);
  const loraSet = (seed: number) =>
    Array.from({ length: n }, (_, i) =>
      be.createLora({ rank: r, out, in: inF, A: randomF32(r * inF, 0.1, seed + i), B: randomF32(out * r, 0.1, seed + 99 + i) }),
    );
  const first = loraSet(300);
  const loraBytes = first.reduce((b, h) => b + (h.bytes ?? 0), 0);
  const loraSets = [first, ...Array.from({ length: Math.max(1, Math.ceil(target / loraBytes) - 1) }, (_, k) => loraSet(1000 + 300 * k))];
  const [loraMs, loraHot] = await opMs(be, loraSets, x, y, n, ctx.quick);
  for (const hs of [veraSet, ...loraSets]) for (const h of hs) be.release(h);
  be.release(projection);
  const flops = 2 * n * r * (inF + out);
  rows.push({
    name: `LoRA op, 16 rows × 16 VeRA r256 modules on one projection, ${inF}→${out}`,
    value: veraMs,
    unit: 'ms',
    baseline: { value: loraMs, label: '16 rank-256 LoRA handles, streamed' },
    floor: ctx.floorMs(veraBytes),
    note: `${(flops / (veraMs / 1000) / 1e9).toFixed(0)} GFLOP/s (compute-bound: ${mb(veraBytes)} read, cache-resident); LoRA ${mb(loraBytes)} per set, floor ${ctx.floorMs(loraBytes).toPrecision(3)} ms, cache-hot ${loraHot.toPrecision(3)} ms; VeRA cache-hot ${veraHot.toPrecision(3)} ms`,
  });
  return rows;
}

export const suite: Suite = {
  title: 'adapter layouts: LoRI sparse expand, VeRA shared projections (cpu-native, 2 threads)',
  async run(ctx) {
    const { addon, error } = loadNativeAddon();
    if (!addon) {
      console.log(`(skipped: ${error?.message})`);
      return [];
    }
    const be = createNativeBackend();
    be.setThreads(2);
    return [...(await kernelRows(be, ctx)), ...(await decodeRows(be, ctx))];
  },
};
