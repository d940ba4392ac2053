import type { AdapterConfig } from './config.ts';

function fullMatch(pattern: string, s: string): boolean {
  return new RegExp(`^(?:${pattern})$`).test(s);
}

/** PEFT's rule for a list of names: exact module name or a `.name` suffix. */
function listMatch(names: readonly string[], module: string): boolean {
  return names.some((t) => module === t || module.endsWith(`.${t}`));
}

/** The layer number in a module path: the last `.<container>.<n>.` segment (any container unless layers_pattern names them). */
function layerIndex(module: string, layersPattern: AdapterConfig['layers_pattern']): number | undefined {
  const containers =
    layersPattern == null || layersPattern.length === 0 ? ['[^.]*'] : Array.isArray(layersPattern) ? layersPattern : [layersPattern];
  for (const c of containers) {
    const m = new RegExp(`^.*\\.${c}\\.(\\d+)\\.`).exec(module);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/**
 * Whether the config selects `module` (e.g. `model.layers.3.self_attn.v_proj`):
 * target_modules as a list (name or suffix) or a regex string (full match), "all-linear",
 * exclude_modules, and layers_to_transform / layers_pattern.
 */
export function isTargeted(config: AdapterConfig, module: string): boolean {
  const ex = config.exclude_modules;
  if (ex != null && (typeof ex === 'string' ? fullMatch(ex, module) : listMatch(ex, module))) return false;
  const t = config.target_modules;
  if (t == null) return false;
  let hit: boolean;
  if (t === 'all-linear') hit = /\.(self_attn|mlp)\.\w+_proj$/.test(module);
  else if (typeof t === 'string') hit = fullMatch(t, module);
  else hit = listMatch(t, module);
  if (!hit) return false;
  const layers = config.layers_to_transform;
  if (layers == null) return true;
  const idx = layerIndex(module, config.layers_pattern);
  if (idx === undefined) return false;
  return Array.isArray(layers) ? layers.includes(idx) : layers === idx;
}
