/**
 * Upload validation: a PEFT adapter is accepted only once it loads cleanly and fits its base
 * model's modules and shapes. Everything here is pure; nothing is stored yet.
 */
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  adapterParameterCount,
  fitAdapterToModel,
  isLoraEdgeError,
  type LoraAdapter,
  loadLoraAdapter,
  type ModelConfig,
  parseModelConfig,
} from '@lora-edge/shared';
import { ApiError } from '../http/errors.ts';
import type { BaseModelRecord } from '../lib.ts';

export interface ValidatedAdapter {
  adapter: LoraAdapter;
  configText: string;
  summary: { peft_type: LoraAdapter['peftType']; use_dora: boolean; rank: number; modules: number; parameters: number };
}

export function baseModelConfig(base: BaseModelRecord): ModelConfig {
  return parseModelConfig(JSON.stringify(base.config), `models/${base.digest}/config.json`);
}

export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ApiError(400, 'invalid_json', `${file}: not UTF-8 text`, { file });
  }
}

/**
 * Loads the two files and fits them to `base`. Domain refusals keep their codes (400 for a
 * malformed file, 422 for another base or an unsupported kind); anything else the parser
 * trips over in hostile bytes is still the input's fault, so it is a 400 too.
 */
export function validateAdapterFiles(configBytes: Uint8Array, weights: Uint8Array, base: BaseModelRecord): ValidatedAdapter {
  const configText = decodeUtf8(configBytes, ADAPTER_CONFIG_FILE);
  try {
    const adapter = loadLoraAdapter({ configText, weights, configFile: ADAPTER_CONFIG_FILE, weightsFile: ADAPTER_WEIGHTS_FILE });
    fitAdapterToModel(adapter, baseModelConfig(base), ADAPTER_WEIGHTS_FILE);
    const modules = [...adapter.modules.values()];
    return {
      adapter,
      configText,
      summary: {
        peft_type: adapter.peftType,
        use_dora: adapter.useDora,
        rank: Math.max(...modules.map((m) => m.r)),
        modules: modules.length,
        parameters: adapterParameterCount(adapter),
      },
    };
  } catch (e) {
    if (isLoraEdgeError(e) || e instanceof ApiError) throw e;
    throw new ApiError(400, 'adapter_invalid', `the adapter files do not parse (${e instanceof Error ? e.message : String(e)})`);
  }
}
