import { LoraEdgeError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { linearShape } from '../model/weights.ts';
import { readSafetensors, type SafetensorsFile } from '../safetensors/read.ts';
import { isFloatDType } from '../tensor/dtype.ts';
import { firstNonFinite, type Tensor, toFloat32 } from '../tensor/tensor.ts';
import { loadAdaLoraModules } from './adalora.ts';
import { type AdapterConfig, loraModuleHyper, parseAdapterConfig } from './config.ts';
import { isTargeted } from './targets.ts';
import { loadVeraModules, veraModule } from './vera.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/**
 * One adapted module in low-rank form: ΔW = scaling · B A (DoRA adds the magnitude vector m).
 * VeRA and AdaLoRA modules are brought to this form on load (their own factors are kept in
 * `source` for inspection).
 */
export interface LoraModule {
  module: string;
  kind: 'lora' | 'vera' | 'adalora';
  r: number;
  alpha: number;
  scaling: number;
  /** [r, in] */
  A: Tensor;
  /** [out, r] */
  B: Tensor;
  /** DoRA magnitude, [out]. */
  magnitude?: Tensor;
  outFeatures: number;
  inFeatures: number;
  /** VeRA: the shared projections and this module's scales (to re-slice when fitting a base). */
  vera?: { veraA: Float32Array; maxIn: number; veraB: Float32Array; lambdaB: Float32Array; lambdaD: Float32Array };
}

export interface LoraAdapter {
  config: AdapterConfig;
  peftType: 'LORA' | 'VERA' | 'ADALORA';
  useDora: boolean;
  /** Keyed by module path relative to the model, e.g. `model.layers.0.self_attn.q_proj`. */
  modules: Map<string, LoraModule>;
  /** Things PEFT would also only warn about. */
  warnings: string[];
}

export const PREFIX = 'base_model.model.';
/** PEFT saves without the adapter name; some tools keep `.default`: accept both. */
const KEY_RE = /^(.+)\.(lora_A|lora_B|lora_magnitude_vector|lora_embedding_A|lora_embedding_B)(?:\.default)?(?:\.(weight|bias))?$/;

export interface AdapterFiles {
  configText: string;
  weights: Uint8Array | SafetensorsFile;
  /** Names for error messages (the dir or URL the files came from). */
  configFile?: string;
  weightsFile?: string;
}

/**
 * Reads a PEFT LoRA adapter (LoRA, rsLoRA, DoRA, rank/alpha patterns). Every key is accounted
 * for: what we do not serve yet is refused by name, never dropped.
 */
export function loadLoraAdapter(files: AdapterFiles): LoraAdapter {
  const configFile = files.configFile ?? ADAPTER_CONFIG_FILE;
  const file = files.weightsFile ?? ADAPTER_WEIGHTS_FILE;
  const config = parseAdapterConfig(files.configText, configFile);
  if (!['LORA', 'VERA', 'ADALORA'].includes(config.peft_type)) {
    throw new LoraEdgeError(
      'adapter_unsupported',
      `peft_type "${config.peft_type}" is not supported (LORA with DoRA/rsLoRA, VERA, ADALORA)`,
      {
        file: configFile,
        field: 'peft_type',
      },
    );
  }
  if (config.modules_to_save && config.modules_to_save.length > 0) {
    throw new LoraEdgeError('adapter_unsupported', `modules_to_save (${config.modules_to_save.join(', ')}) is not supported`, {
      file: configFile,
      field: 'modules_to_save',
    });
  }
  const st = files.weights instanceof Uint8Array ? readSafetensorsAt(files.weights, file) : files.weights;
  if (config.peft_type === 'VERA')
    return { config, peftType: 'VERA', useDora: false, modules: loadVeraModules(config, st, file, configFile), warnings: [] };
  if (config.peft_type === 'ADALORA')
    return { config, peftType: 'ADALORA', useDora: false, modules: loadAdaLoraModules(config, st, file, configFile), warnings: [] };
  const warnings: string[] = [];
  if (config.fan_in_fan_out) warnings.push('fan_in_fan_out is true but Llama projections are nn.Linear; ignored, as PEFT does');

  const parts = new Map<string, { A?: Tensor; B?: Tensor; magnitude?: Tensor }>();
  for (const key of st.names()) {
    const m = KEY_RE.exec(key);
    if (!key.startsWith(PREFIX) || !m) {
      throw new LoraEdgeError('adapter_key_invalid', 'not a LoRA weight key (expected base_model.model.<module>.lora_A.weight, ...)', {
        file,
        tensor: key,
      });
    }
    const [, path, kind, suffix] = m as unknown as [string, string, string, string | undefined];
    const module = path.slice(PREFIX.length);
    if (kind.startsWith('lora_embedding')) {
      throw new LoraEdgeError('adapter_unsupported', 'LoRA on embedding layers is not supported', { file, tensor: key });
    }
    if (suffix === 'bias')
      throw new LoraEdgeError('adapter_unsupported', 'lora_bias (a bias on lora_B) is not supported', { file, tensor: key });
    const t = st.tensor(key);
    if (!isFloatDType(t.dtype))
      throw new LoraEdgeError('adapter_key_invalid', `dtype ${t.dtype} is not a floating type`, { file, tensor: key });
    const entry = parts.get(module) ?? {};
    if (kind === 'lora_A') entry.A = t;
    else if (kind === 'lora_B') entry.B = t;
    else entry.magnitude = t;
    parts.set(module, entry);
  }
  if (parts.size === 0) throw new LoraEdgeError('adapter_key_invalid', 'the adapter holds no LoRA weights', { file });

  const modules = new Map<string, LoraModule>();
  for (const [module, p] of parts) {
    const place = { file, tensor: `${PREFIX}${module}` };
    if (!p.A || !p.B)
      throw new LoraEdgeError('adapter_key_invalid', `module has ${p.A ? 'lora_A' : 'lora_B'} but no ${p.A ? 'lora_B' : 'lora_A'}`, place);
    if (!isTargeted(config, module)) {
      throw new LoraEdgeError('adapter_key_invalid', `module ${module} has weights but target_modules does not select it`, place);
    }
    if (p.A.shape.length !== 2 || p.B.shape.length !== 2)
      throw new LoraEdgeError('adapter_shape_mismatch', 'lora_A and lora_B must be matrices', place);
    const [rA, inF] = p.A.shape as [number, number];
    const [outF, rB] = p.B.shape as [number, number];
    const hyper = loraModuleHyper(config, module);
    if (rA !== rB) throw new LoraEdgeError('adapter_shape_mismatch', `lora_A has rank ${rA} but lora_B has rank ${rB}`, place);
    if (rA === 0) throw new LoraEdgeError('adapter_shape_mismatch', 'rank 0', place);
    if (rA !== hyper.r) {
      throw new LoraEdgeError('adapter_shape_mismatch', `the config gives rank ${hyper.r} for ${module} but lora_A has ${rA} rows`, place);
    }
    if (config.use_dora) {
      if (!p.magnitude) throw new LoraEdgeError('adapter_key_invalid', 'use_dora is set but lora_magnitude_vector is missing', place);
      if (p.magnitude.shape.length !== 1 || p.magnitude.shape[0] !== outF) {
        throw new LoraEdgeError(
          'adapter_shape_mismatch',
          `lora_magnitude_vector has shape [${p.magnitude.shape}], expected [${outF}]`,
          place,
        );
      }
    } else if (p.magnitude) {
      throw new LoraEdgeError('adapter_key_invalid', 'lora_magnitude_vector present but use_dora is false', place);
    }
    for (const [name, t] of [
      ['lora_A', p.A],
      ['lora_B', p.B],
      ['lora_magnitude_vector', p.magnitude],
    ] as const) {
      if (t && firstNonFinite(toFloat32(t)) >= 0) {
        throw new LoraEdgeError('non_finite_value', `${name} holds NaN or Inf`, place);
      }
    }
    modules.set(module, { module, kind: 'lora', ...hyper, A: p.A, B: p.B, magnitude: p.magnitude, outFeatures: outF, inFeatures: inF });
  }
  return { config, peftType: 'LORA', useDora: config.use_dora ?? false, modules, warnings };
}

function readSafetensorsAt(bytes: Uint8Array, file: string): SafetensorsFile {
  try {
    return readSafetensors(bytes);
  } catch (e) {
    if (e instanceof LoraEdgeError) throw e.at({ file });
    throw e;
  }
}

/**
 * Checks an adapter against its base model and refuses what does not fit (unknown modules,
 * wrong shapes: an adapter for another base). VeRA modules learn their in_features only from
 * the base, so they are re-sliced here from the shared projections.
 */
export function fitAdapterToModel(adapter: LoraAdapter, model: ModelConfig, file = ADAPTER_WEIGHTS_FILE): void {
  for (const m of adapter.modules.values()) {
    const shape = linearShape(model, m.module);
    const place = { file, tensor: `${PREFIX}${m.module}` };
    if (!shape) throw new LoraEdgeError('adapter_base_mismatch', `the base model has no linear module ${m.module}`, place);
    const [out, inF] = shape;
    if (m.vera && m.inFeatures !== inF && inF <= m.vera.maxIn && out === m.outFeatures) {
      const v = m.vera;
      adapter.modules.set(m.module, veraModule(m.module, v.veraA, v.maxIn, v.veraB, m.r, v.lambdaB, v.lambdaD, inF));
      continue;
    }
    if (m.inFeatures !== inF || m.outFeatures !== out) {
      const hint = m.inFeatures !== inF && m.inFeatures !== out ? ' (an adapter for another base model?)' : '';
      throw new LoraEdgeError(
        'adapter_base_mismatch',
        `adapter is ${m.outFeatures}×${m.inFeatures} (out×in) but the base module is ${out}×${inF}${hint}`,
        place,
      );
    }
  }
}

/** Trainable parameter count (A, B and magnitudes). */
export function adapterParameterCount(adapter: LoraAdapter): number {
  let n = 0;
  for (const m of adapter.modules.values()) n += m.r * (m.inFeatures + m.outFeatures) + (m.magnitude ? m.outFeatures : 0);
  return n;
}
