import { LoraEdgeError } from '../errors.ts';
import type { SafetensorsFile } from '../safetensors/read.ts';
import type { LoraModule } from './adapter.ts';
import type { AdapterConfig } from './config.ts';
import { f32Tensor, floatFactor } from './factors.ts';
import { isTargeted } from './targets.ts';

const PREFIX = 'base_model.model.';
const KEY_RE = /^base_model\.model\.(.+)\.(vera_lambda_b|vera_lambda_d)$/;

/**
 * VeRA: shared frozen projections vera_A [r, max in] and vera_B [max out, r], saved once; each
 * module slices the leading rows/columns and scales them by its own λ_d [r] and λ_b [out]:
 * ΔW = (λ_b ⊙ B[:out]) (λ_d ⊙ A[:, :in]), no alpha/r scaling.
 */
export function loadVeraModules(config: AdapterConfig, st: SafetensorsFile, file: string, configFile: string): Map<string, LoraModule> {
  if (config.save_projection === false) {
    throw new LoraEdgeError('adapter_unsupported', 'save_projection is false: the shared VeRA projections are not in the file', {
      file: configFile,
      field: 'save_projection',
    });
  }
  const r = config.r;
  if (r === undefined || !Number.isInteger(r) || r <= 0)
    throw new LoraEdgeError('adapter_config_invalid', `r must be a positive integer, got ${r}`, { file: configFile, field: 'r' });
  const A = floatFactor(st, 'base_model.vera_A', 2, file);
  const B = floatFactor(st, 'base_model.vera_B', 2, file);
  const [ar, maxIn] = A.shape as [number, number];
  const [maxOut, br] = B.shape as [number, number];
  if (ar !== r || br !== r)
    throw new LoraEdgeError('adapter_shape_mismatch', `vera_A is [${A.shape}] and vera_B [${B.shape}] but r = ${r}`, { file });
  const lambdas = new Map<string, { b?: string; d?: string }>();
  for (const key of st.names()) {
    if (key === 'base_model.vera_A' || key === 'base_model.vera_B') continue;
    const m = KEY_RE.exec(key);
    if (!m)
      throw new LoraEdgeError('adapter_key_invalid', 'not a VeRA key (expected base_model.model.<module>.vera_lambda_b / _d)', {
        file,
        tensor: key,
      });
    const entry = lambdas.get(m[1] as string) ?? {};
    if (m[2] === 'vera_lambda_b') entry.b = key;
    else entry.d = key;
    lambdas.set(m[1] as string, entry);
  }
  const modules = new Map<string, LoraModule>();
  for (const [module, keys] of lambdas) {
    const place = { file, tensor: `${PREFIX}${module}` };
    if (!keys.b || !keys.d) throw new LoraEdgeError('adapter_key_invalid', 'needs both vera_lambda_b and vera_lambda_d', place);
    if (!isTargeted(config, module))
      throw new LoraEdgeError('adapter_key_invalid', `module ${module} has weights but target_modules does not select it`, place);
    const lb = floatFactor(st, keys.b, 1, file).values;
    const ld = floatFactor(st, keys.d, 1, file).values;
    const out = lb.length;
    if (ld.length !== r) throw new LoraEdgeError('adapter_shape_mismatch', `vera_lambda_d has ${ld.length} entries, r = ${r}`, place);
    if (out > maxOut)
      throw new LoraEdgeError('adapter_shape_mismatch', `vera_lambda_b has ${out} entries but vera_B only ${maxOut} rows`, place);
    // in_features is only known from the base model: keep the widest slice; fitting to the base narrows it.
    modules.set(module, veraModule(module, A.values, maxIn, B.values, r, lb, ld, maxIn));
  }
  if (modules.size === 0) throw new LoraEdgeError('adapter_key_invalid', 'the adapter holds no VeRA modules', { file });
  return modules;
}

/** The module in A/B form for a given in_features (the leading columns of vera_A). */
export function veraModule(
  module: string,
  veraA: Float32Array,
  maxIn: number,
  veraB: Float32Array,
  r: number,
  lb: Float32Array,
  ld: Float32Array,
  inF: number,
): LoraModule {
  const out = lb.length;
  const A = new Float32Array(r * inF);
  for (let k = 0; k < r; k++) for (let j = 0; j < inF; j++) A[k * inF + j] = (ld[k] as number) * (veraA[k * maxIn + j] as number);
  const B = new Float32Array(out * r);
  for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) B[i * r + k] = (lb[i] as number) * (veraB[i * r + k] as number);
  return {
    module,
    kind: 'vera',
    r,
    alpha: r,
    scaling: 1,
    A: f32Tensor(A, [r, inF]),
    B: f32Tensor(B, [out, r]),
    outFeatures: out,
    inFeatures: inF,
    vera: { veraA, maxIn, veraB, lambdaB: lb, lambdaD: ld },
  };
}
