/** Input checks for a merge: every refusal names the adapter, the factor or the option at fault. */
import { LoraEdgeError } from '../errors.ts';
import { firstNonFinite } from '../tensor/tensor.ts';
import { MERGE_METHODS, type MergeAdapter, type MergeMethod, type MergeOptions } from './types.ts';

export interface ModuleShape {
  out: number;
  inF: number;
}

function fail(message: string, field?: string): never {
  throw new LoraEdgeError('merge_invalid', message, field ? { field } : {});
}

/** Checks the adapters' factors and returns the module's shape. */
export function validateAdapters(
  adapters: readonly MergeAdapter[],
  opts: Pick<MergeOptions, 'inFeatures' | 'outFeatures'> = {},
): ModuleShape {
  if (adapters.length === 0) fail('no adapters to merge: give at least one');
  let shape: (ModuleShape & { from: string }) | undefined;
  adapters.forEach((ad, i) => {
    const name = ad.name || `adapter ${i}`;
    if (!Number.isInteger(ad.r) || ad.r < 1) fail(`adapter "${name}": rank r must be a positive integer, got ${ad.r}`);
    if (!Number.isFinite(ad.weight)) {
      throw new LoraEdgeError('adapter_weight_invalid', `adapter "${name}": weight must be a finite number, got ${ad.weight}`);
    }
    if (!Number.isFinite(ad.scaling)) fail(`adapter "${name}": scaling must be a finite number, got ${ad.scaling}`);
    const inF = ad.lora_A.length / ad.r;
    const out = ad.lora_B.length / ad.r;
    if (!Number.isInteger(inF) || inF < 1 || !Number.isInteger(out) || out < 1) {
      throw new LoraEdgeError(
        'adapter_shape_mismatch',
        `adapter "${name}": lora_A (${ad.lora_A.length} values) and lora_B (${ad.lora_B.length} values) are not [${ad.r}, in] and [out, ${ad.r}]`,
      );
    }
    if (!shape) shape = { out, inF, from: name };
    else if (shape.out !== out || shape.inF !== inF) {
      throw new LoraEdgeError(
        'adapter_shape_mismatch',
        `adapter "${name}" has lora_A [${ad.r}, ${inF}] / lora_B [${out}, ${ad.r}], but adapter "${shape.from}" targets a ${shape.out}×${shape.inF} module`,
      );
    }
    for (const [factor, data] of [
      ['lora_A', ad.lora_A],
      ['lora_B', ad.lora_B],
    ] as const) {
      const at = firstNonFinite(data);
      if (at >= 0) {
        const cols = factor === 'lora_A' ? inF : ad.r;
        throw new LoraEdgeError(
          'non_finite_value',
          `adapter "${name}": ${factor} holds ${data[at]} at [${Math.floor(at / cols)}, ${at % cols}]`,
          { tensor: `${name}.${factor}` },
        );
      }
    }
  });
  const s = shape as ModuleShape & { from: string };
  if ((opts.outFeatures !== undefined && opts.outFeatures !== s.out) || (opts.inFeatures !== undefined && opts.inFeatures !== s.inF)) {
    throw new LoraEdgeError(
      'adapter_shape_mismatch',
      `the factors describe a ${s.out}×${s.inF} module, expected ${opts.outFeatures ?? s.out}×${opts.inFeatures ?? s.inF}`,
    );
  }
  return { out: s.out, inF: s.inF };
}

/** Checks the options that apply to the method; returns the density to use (1 when unused). */
export function validateOptions(opts: MergeOptions, shape: ModuleShape): { density: number } {
  if (!(MERGE_METHODS as readonly string[]).includes(opts.method)) {
    fail(`unknown merge method "${opts.method}": expected one of ${MERGE_METHODS.join(', ')}`, 'method');
  }
  const needsDensity = usesDensity(opts.method);
  if (opts.density !== undefined && !(opts.density > 0 && opts.density <= 1)) {
    fail(`density must be in (0, 1], got ${opts.density}`, 'density');
  }
  if (needsDensity && opts.density === undefined) fail(`method ${opts.method} needs a density in (0, 1]`, 'density');
  if (opts.svdRank !== undefined) {
    if (!Number.isInteger(opts.svdRank) || opts.svdRank <= 0) fail(`svdRank must be a positive integer, got ${opts.svdRank}`, 'svdRank');
    const p = Math.min(shape.out, shape.inF);
    if (opts.svdRank > p) fail(`svdRank ${opts.svdRank} exceeds min(out, in) = ${p} of the ${shape.out}×${shape.inF} module`, 'svdRank');
  }
  if (opts.svdClamp !== undefined && !(opts.svdClamp >= 0 && opts.svdClamp <= 1)) {
    fail(`svdClamp is a quantile in [0, 1], got ${opts.svdClamp}`, 'svdClamp');
  }
  const msm = opts.majoritySignMethod;
  if (msm !== undefined && msm !== 'total' && msm !== 'frequency') {
    fail(`majoritySignMethod must be "total" or "frequency", got "${msm}"`, 'majoritySignMethod');
  }
  if (opts.exactSvdMaxDim !== undefined && !(Number.isInteger(opts.exactSvdMaxDim) && opts.exactSvdMaxDim >= 0)) {
    fail(`exactSvdMaxDim must be a non-negative integer, got ${opts.exactSvdMaxDim}`, 'exactSvdMaxDim');
  }
  return { density: needsDensity ? (opts.density as number) : 1 };
}

function usesDensity(m: MergeMethod): boolean {
  return m.startsWith('ties') || m.startsWith('dare') || m.startsWith('magnitude_prune');
}

/** PEFT refuses unequal ranks for the methods that combine A and B factor by factor. */
export function requireEqualRanks(adapters: readonly MergeAdapter[], method: MergeMethod): void {
  const ranks = new Set(adapters.map((a) => a.r));
  if (ranks.size > 1) {
    const list = adapters.map((a, i) => `"${a.name || `adapter ${i}`}" r=${a.r}`).join(', ');
    fail(
      `method ${method} combines the A and B factors entry by entry, so all adapters need the same rank; got ${list} (use cat, svd or a *_svd method, or exact: true)`,
      'method',
    );
  }
}
