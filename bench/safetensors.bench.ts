import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planSafetensors, type TensorSpec } from '@lora-edge/shared';
import { openSafetensors } from '../gpu-runner/src/io/files.ts';
import { type Suite, timeMs } from './lib.ts';

/** Tensor specs of a Llama-shaped checkpoint of about `bytes` (f32), many tensors like a real one. */
function llamaSpecs(bytes: number): TensorSpec[] {
  const dim = 2048;
  const hidden = 5632;
  const perLayer = (4 * dim * dim + 3 * dim * hidden + 2 * dim) * 4;
  const layers = Math.max(1, Math.ceil(bytes / perLayer));
  const specs: TensorSpec[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    for (const n of ['q_proj', 'k_proj', 'v_proj', 'o_proj'])
      specs.push({ name: `${p}.self_attn.${n}.weight`, dtype: 'F32', shape: [dim, dim] });
    specs.push({ name: `${p}.mlp.gate_proj.weight`, dtype: 'F32', shape: [hidden, dim] });
    specs.push({ name: `${p}.mlp.up_proj.weight`, dtype: 'F32', shape: [hidden, dim] });
    specs.push({ name: `${p}.mlp.down_proj.weight`, dtype: 'F32', shape: [dim, hidden] });
    specs.push({ name: `${p}.input_layernorm.weight`, dtype: 'F32', shape: [dim] });
    specs.push({ name: `${p}.post_attention_layernorm.weight`, dtype: 'F32', shape: [dim] });
  }
  return specs;
}

export const suite: Suite = {
  title: 'safetensors',
  async run(ctx) {
    const target = ctx.quick ? 256e6 : 1e9;
    const dir = mkdtempSync(join(tmpdir(), 'lora-edge-bench-'));
    const path = join(dir, 'model.safetensors');
    try {
      // A sparse file: the real header, then a hole where the tensor data would be.
      const plan = planSafetensors(llamaSpecs(target), { metadata: { format: 'pt' } });
      const fd = openSync(path, 'w');
      writeSync(fd, plan.head);
      ftruncateSync(fd, plan.totalSize);
      closeSync(fd);
      const parse = await timeMs(() => openSafetensors(path).close(), { repeat: 21, warmup: 3 });
      const whole = await timeMs(() => readFileSync(path), { repeat: 3, warmup: 1 });
      const gb = (plan.totalSize / 1e9).toFixed(2);
      return [
        {
          name: `header-only parse of a ${gb} GB file (${plan.ranges.length} tensors, ${plan.head.byteLength} header bytes)`,
          value: parse,
          unit: 'ms',
          baseline: { value: whole, label: 'reading the whole file, same run' },
          floor: ctx.floorMs(plan.head.byteLength),
          note: 'floor = header bytes at measured bandwidth; the rest is syscalls and JSON.parse',
        },
      ];
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
