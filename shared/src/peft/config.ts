import { z } from 'zod';
import { LoraEdgeError } from '../errors.ts';
import { parseJsonText, parseWith } from '../json.ts';

const stringOrList = z.union([z.string(), z.array(z.string())]);

/**
 * adapter_config.json as PEFT writes it. Unknown extra fields pass: PEFT adds some every
 * release. What we cannot serve yet is refused later with a named error, never ignored.
 */
export const AdapterConfigSchema = z.looseObject({
  peft_type: z.string({ error: 'peft_type is required' }),
  base_model_name_or_path: z.string().nullish(),
  task_type: z.string().nullish(),
  r: z.number().int().optional(),
  lora_alpha: z.number().finite().optional(),
  target_modules: stringOrList.nullish(),
  exclude_modules: stringOrList.nullish(),
  layers_to_transform: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish(),
  layers_pattern: stringOrList.nullish(),
  rank_pattern: z.record(z.string(), z.unknown()).nullish(),
  alpha_pattern: z.record(z.string(), z.unknown()).nullish(),
  use_rslora: z.boolean().optional(),
  use_dora: z.boolean().optional(),
  fan_in_fan_out: z.boolean().optional(),
  modules_to_save: z.array(z.string()).nullish(),
  bias: z.string().optional(),
  lora_bias: z.boolean().optional(),
});

export type AdapterConfig = z.output<typeof AdapterConfigSchema>;

export function parseAdapterConfig(text: string, file = 'adapter_config.json'): AdapterConfig {
  const config = parseWith(AdapterConfigSchema, parseJsonText(text, file), 'adapter_config_invalid', file);
  for (const field of ['target_modules', 'exclude_modules', 'layers_pattern'] as const) {
    const v = config[field];
    for (const pattern of typeof v === 'string' ? [v] : field === 'layers_pattern' ? (v ?? []) : []) {
      try {
        new RegExp(pattern);
      } catch {
        throw new LoraEdgeError('adapter_config_invalid', `"${pattern}" is not a valid regular expression`, { file, field });
      }
    }
  }
  if (config.peft_type === 'LORA') {
    if (config.r === undefined) throw new LoraEdgeError('adapter_config_invalid', 'r is required for a LoRA adapter', { file, field: 'r' });
    if (config.r <= 0) throw new LoraEdgeError('adapter_config_invalid', `r must be positive, got ${config.r}`, { file, field: 'r' });
    if (config.lora_alpha === undefined) {
      throw new LoraEdgeError('adapter_config_invalid', 'lora_alpha is required for a LoRA adapter', { file, field: 'lora_alpha' });
    }
    for (const [field, pattern] of [
      ['rank_pattern', config.rank_pattern],
      ['alpha_pattern', config.alpha_pattern],
    ] as const) {
      for (const [key, v] of Object.entries(pattern ?? {})) {
        compilePatternKey(key, file, field);
        const ok = typeof v === 'number' && Number.isFinite(v) && (field === 'alpha_pattern' || (Number.isInteger(v) && v > 0));
        if (!ok)
          throw new LoraEdgeError('adapter_config_invalid', `${field}["${key}"] = ${JSON.stringify(v)} is not a valid value`, {
            file,
            field,
          });
      }
    }
  }
  return config;
}

const patternCache = new Map<string, RegExp>();

/** PEFT matches pattern keys as `(.*\.)?(key)$` against the module name (a Python regex; ours is JS). */
export function compilePatternKey(key: string, file?: string, field?: string): RegExp {
  let re = patternCache.get(key);
  if (!re) {
    try {
      re = new RegExp(`^(?:.*\\.)?(?:${key})$`);
    } catch {
      throw new LoraEdgeError('adapter_config_invalid', `pattern key "${key}" is not a valid regular expression`, { file, field });
    }
    patternCache.set(key, re);
  }
  return re;
}

/** The first pattern key (in the config's order) that matches the module, as PEFT picks it. */
export function matchPatternKey(pattern: Record<string, unknown> | null | undefined, module: string): string | undefined {
  for (const key of Object.keys(pattern ?? {})) if (compilePatternKey(key).test(module)) return key;
  return undefined;
}

/** Per-module rank, alpha and scaling: rank_pattern / alpha_pattern overrides, then rsLoRA or alpha/r. */
export function loraModuleHyper(config: AdapterConfig, module: string): { r: number; alpha: number; scaling: number } {
  const rKey = matchPatternKey(config.rank_pattern, module);
  const aKey = matchPatternKey(config.alpha_pattern, module);
  const r = rKey !== undefined ? (config.rank_pattern?.[rKey] as number) : (config.r as number);
  const alpha = aKey !== undefined ? (config.alpha_pattern?.[aKey] as number) : (config.lora_alpha as number);
  const scaling = config.use_rslora ? alpha / Math.sqrt(r) : alpha / r;
  return { r, alpha, scaling };
}
