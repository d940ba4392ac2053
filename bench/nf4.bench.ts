/**
 * NF4 quantize / dequantize of a 4096×4096 f32 weight (16.8 M values), against bitsandbytes'
 * pure-PyTorch path on this machine (figures from the design brief). Floors count the bytes each
 * pass must read and write once at the measured copy bandwidth.
 */
import { dequantizeNf4, quantizeNf4 } from '../shared/src/nf4/index.ts';
import { type BenchContext, type Row, type Suite, timeMs } from './lib.ts';

const BASELINE = 'bitsandbytes pure-PyTorch, design brief';

/** Roughly normal weights (sum of three uniforms), deterministic. */
function weights(n: number): Float32Array {
  let s = 0x9e3779b9;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (next() + next() + next() - 1.5) * 0.04;
  return x;
}

export const suite: Suite = {
  title: 'NF4 (QLoRA) quantization',
  async run(ctx: BenchContext): Promise<Row[]> {
    const side = ctx.quick ? 1024 : 4096;
    const n = side * side;
    const size = `${(n / 1e6).toFixed(1)} M f32`;
    const scale = n / (4096 * 4096); // baselines were measured at 16.8 M values
    const repeat = ctx.quick ? 3 : 5;
    const x = weights(n);
    const blocks = n / 64;
    const packedBytes = n / 2;

    const quantMs = await timeMs(() => quantizeNf4(x), { repeat });
    const dqMs = await timeMs(() => quantizeNf4(x, { doubleQuant: true }), { repeat });
    const q = quantizeNf4(x);
    const out = new Float32Array(n);
    const deqMs = await timeMs(() => dequantizeNf4(q, out), { repeat });
    const qd = quantizeNf4(x, { doubleQuant: true });
    const scaled = ctx.quick ? 'baseline scaled linearly from 16.8 M' : undefined;
    const deqDqMs = await timeMs(() => dequantizeNf4(qd, out), { repeat });

    return [
      {
        name: `NF4 quantize ${size}`,
        value: quantMs,
        unit: 'ms',
        baseline: { value: 420 * scale, label: BASELINE },
        floor: ctx.floorMs(n * 4 + packedBytes + blocks * 4),
        note: scaled,
      },
      {
        name: `NF4 quantize ${size}, double quant`,
        value: dqMs,
        unit: 'ms',
        baseline: { value: 420 * scale, label: `${BASELINE} (plain quantize)` },
        floor: ctx.floorMs(n * 4 + packedBytes + blocks),
        note: scaled,
      },
      {
        name: `NF4 dequantize ${size}`,
        value: deqMs,
        unit: 'ms',
        baseline: { value: 150 * scale, label: BASELINE },
        floor: ctx.floorMs(packedBytes + blocks * 4 + n * 4),
        note: scaled,
      },
      {
        name: `NF4 dequantize ${size}, double quant`,
        value: deqDqMs,
        unit: 'ms',
        baseline: { value: 150 * scale, label: `${BASELINE} (plain dequantize)` },
        floor: ctx.floorMs(packedBytes + blocks + n * 4),
        note: 'absmax decoded from 8-bit codes first',
      },
    ];
  },
};
