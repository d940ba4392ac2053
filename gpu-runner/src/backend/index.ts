/**
 * Backend selection: `cpu-native` (the C++ addon), `js` (the reference), or `auto` (native when
 * the addon loads, else js).
 */
import { JsBackend } from './js.ts';
import { createNativeBackend, loadNativeAddon } from './native.ts';
import type { Backend } from './types.ts';

export type BackendName = 'cpu-native' | 'js' | 'auto';

export function loadBackend(name: BackendName = 'auto'): Backend {
  switch (name) {
    case 'js':
      return new JsBackend();
    case 'cpu-native':
      return createNativeBackend();
    case 'auto':
      return loadNativeAddon().addon ? createNativeBackend() : new JsBackend();
    default:
      throw new RangeError(`unknown backend '${String(name)}': expected 'cpu-native', 'js' or 'auto'`);
  }
}

export { JsBackend } from './js.ts';
export { createNativeBackend, loadNativeAddon, type NativeAddon, NativeBackend, type NativeIsa } from './native.ts';
export type * from './types.ts';
