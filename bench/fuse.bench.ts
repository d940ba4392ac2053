import { fuseModuleNative, loadNativeAddon } from '@lora-edge/gpu-runner';
import { type DeltaTerm, fuseModule } from '@lora-edge/shared';
import { type Suite, timeMs } from './lib.ts';

function random(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return out;
}

export const suite: Suite = {
  title: 'fuse',
  async run(ctx) {
    const n = ctx.quick ? 1024 : 4096;
    const r = 16;
    const W = random(n * n, 1);
    const term: DeltaTerm = { A: random(r * n, 2, 0.1), B: random(n * r, 3, 0.1), r, scale: 2 };
    const ms = await timeMs(() => fuseModule(W, n, n, [term]), { repeat: ctx.quick ? 3 : 5 });
    // Read W, write W' (f32), read A and B.
    const bytes = 2 * n * n * 4 + 2 * r * n * 4;
    const gflops = (t: number) => `${((2 * r * n * n) / (t / 1000) / 1e9).toFixed(2)} GFLOP/s`;
    const rows = [
      {
        name: `fuse rank-${r} ΔW into a ${n}×${n} f32 weight (TypeScript, one thread)`,
        value: ms,
        unit: 'ms',
        baseline: n === 4096 ? { value: 86, label: 'PyTorch 1.13 CPU, 2 threads, design brief' } : undefined,
        floor: ctx.floorMs(bytes),
        note: `${gflops(ms)}; floor = W read + W' written`,
      },
    ];
    // The runner's and the CLI's path: the native kernels on every core (f32 accumulation).
    const { addon } = loadNativeAddon();
    if (addon) {
      const native = await timeMs(() => fuseModuleNative(W, n, n, [term]), { repeat: ctx.quick ? 3 : 5 });
      rows.push({
        name: `fuse rank-${r} ΔW into a ${n}×${n} f32 weight (native, ${addon.isa()}, ${addon.threads()} threads)`,
        value: native,
        unit: 'ms',
        baseline:
          n === 4096 ? { value: 86, label: 'PyTorch 1.13 CPU, 2 threads, design brief' } : { value: ms, label: 'TypeScript, same run' },
        floor: ctx.floorMs(bytes),
        note: `${gflops(native)}; TypeScript in the same run ${ms.toFixed(0)} ms (${(ms / native).toFixed(1)}×); includes copying W`,
      });
    }
    return rows;
  },
};
