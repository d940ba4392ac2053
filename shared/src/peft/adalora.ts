import { LoraEdgeError } from '../errors.ts';
import type { SafetensorsFile } from '../safetensors/read.ts';
import type { LoraModule } from './adapter.ts';
import type { AdapterConfig } from './config.ts';
import { f32Tensor, floatFactor } from './factors.ts';
import { isTargeted } from './targets.ts';

const PREFIX = 'base_model.model.';
const KEY_RE = /^base_model\.model\.(.+)\.(lora_A|lora_B|lora_E)$/;

/**
 * AdaLoRA: ΔW = B (A ⊙ E) · scaling / (ranknum + 1e-5), scaling = lora_alpha (or r when
 * alpha ≤ 0). PEFT drops pruned triplets on save (rank_pattern says which survived) but
 * ranknum stays init_r: pruned modules keep dividing by init_r, not by their kept rank.
 */
export function loadAdaLoraModules(config: AdapterConfig, st: SafetensorsFile, file: string, configFile: string): Map<string, LoraModule> {
  const initR = config.init_r;
  if (typeof initR !== 'number' || !Number.isInteger(initR) || initR <= 0) {
    throw new LoraEdgeError('adapter_config_invalid', `init_r must be a positive integer, got ${JSON.stringify(initR)}`, {
      file: configFile,
      field: 'init_r',
    });
  }
  const alpha = config.lora_alpha ?? 0;
  const scaling = alpha > 0 ? alpha : initR;
  // As PEFT computes it in float32: (scaling) / (ranknum + 1e-5).
  const effective = Math.fround(Math.fround(scaling) / Math.fround(initR + 1e-5));
  const parts = new Map<string, { A?: string; B?: string; E?: string }>();
  for (const key of st.names()) {
    const m = KEY_RE.exec(key);
    if (!m)
      throw new LoraEdgeError('adapter_key_invalid', 'not an AdaLoRA key (expected base_model.model.<module>.lora_A / lora_B / lora_E)', {
        file,
        tensor: key,
      });
    const entry = parts.get(m[1] as string) ?? {};
    entry[(m[2] as string).slice(5) as 'A' | 'B' | 'E'] = key;
    parts.set(m[1] as string, entry);
  }
  const modules = new Map<string, LoraModule>();
  for (const [module, keys] of parts) {
    const place = { file, tensor: `${PREFIX}${module}` };
    if (!keys.A || !keys.B || !keys.E) throw new LoraEdgeError('adapter_key_invalid', 'needs lora_A, lora_B and lora_E', place);
    if (!isTargeted(config, module))
      throw new LoraEdgeError('adapter_key_invalid', `module ${module} has weights but target_modules does not select it`, place);
    const A = floatFactor(st, keys.A, 2, file);
    const B = floatFactor(st, keys.B, 2, file);
    const E = floatFactor(st, keys.E, 2, file);
    const [k, inF] = A.shape as [number, number];
    const [out, kb] = B.shape as [number, number];
    if (kb !== k || E.shape[0] !== k || E.shape[1] !== 1) {
      throw new LoraEdgeError(
        'adapter_shape_mismatch',
        `lora_A [${A.shape}], lora_B [${B.shape}] and lora_E [${E.shape}] disagree on the rank`,
        place,
      );
    }
    const pattern = config.rank_pattern?.[`${module}.lora_E`];
    if (Array.isArray(pattern)) {
      const kept = pattern.filter((x) => x === true).length;
      if (pattern.length !== initR || kept !== k) {
        throw new LoraEdgeError(
          'adapter_shape_mismatch',
          `rank_pattern keeps ${kept} of ${pattern.length} ranks but the tensors hold ${k} (init_r ${initR})`,
          place,
        );
      }
    } else if (k !== initR) {
      throw new LoraEdgeError('adapter_shape_mismatch', `rank ${k} without a rank_pattern entry must equal init_r ${initR}`, place);
    }
    const AE = new Float32Array(k * inF);
    for (let i = 0; i < k; i++) for (let j = 0; j < inF; j++) AE[i * inF + j] = (A.values[i * inF + j] as number) * (E.values[i] as number);
    modules.set(module, {
      module,
      kind: 'adalora',
      r: k,
      alpha: scaling,
      scaling: effective,
      A: f32Tensor(AE, [k, inF]),
      B: f32Tensor(B.values, [out, k]),
      outFeatures: out,
      inFeatures: inF,
    });
  }
  if (modules.size === 0) throw new LoraEdgeError('adapter_key_invalid', 'the adapter holds no AdaLoRA modules', { file });
  return modules;
}
