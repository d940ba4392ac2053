/**
 * Backend selection: `cpu-native` (the C++ addon), `cuda` (the CUDA module; throws 'no CUDA
 * device…' without one), `js` (the reference), or `auto` (native when the addon loads, else js;
 * with LORA_EDGE_BACKEND=cuda in the environment, `auto` means `cuda`).
 */
import { createCudaBackend } from './cuda.ts';
import { JsBackend } from './js.ts';
import { createNativeBackend, loadNativeAddon } from './native.ts';
import type { Backend } from './types.ts';

export type BackendName = 'cpu-native' | 'cuda' | 'js' | 'auto';

export function loadBackend(name: BackendName = 'auto'): Backend {
  switch (name) {
    case 'js':
      return new JsBackend();
    case 'cpu-native':
      return createNativeBackend();
    case 'cuda':
      return createCudaBackend();
    case 'auto':
      // The GPU is opted into, never guessed: an explicit LORA_EDGE_BACKEND=cuda fails loudly
      // without a device instead of falling back.
      if (process.env.LORA_EDGE_BACKEND === 'cuda') return createCudaBackend();
      return loadNativeAddon().addon ? createNativeBackend() : new JsBackend();
    default:
      throw new RangeError(`unknown backend '${String(name)}': expected 'cpu-native', 'cuda', 'js' or 'auto'`);
  }
}

export { type CudaAddon, CudaBackend, type CudaInfo, createCudaBackend, cudaAvailable, loadCudaAddon } from './cuda.ts';
export { JsBackend } from './js.ts';
export { createNativeBackend, loadNativeAddon, type NativeAddon, NativeBackend, type NativeIsa } from './native.ts';
export type * from './types.ts';
