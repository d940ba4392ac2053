/**
 * onnxruntime-web inside workerd. workerd forbids compiling WebAssembly from bytes, so the
 * runtime's .wasm is compiled at deploy time (wrangler's CompiledWasm rule) and handed to
 * onnxruntime when its Emscripten glue asks WebAssembly.instantiate to compile a placeholder.
 * One thread (no Workers in workerd), no proxy worker.
 */

import ortWasm from 'onnxruntime-web/ort-wasm-simd-threaded.wasm';
import * as ort from 'onnxruntime-web/wasm';
import type { onnx } from './onnx.ts';

/** An 8-byte module header: what onnxruntime passes around instead of the real 14 MB binary. */
const PLACEHOLDER = Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00);

let ready: Promise<onnx.OrtModuleLike> | undefined;
let heap: WebAssembly.Memory | undefined;

function isPlaceholder(source: unknown): boolean {
  const bytes =
    source instanceof ArrayBuffer
      ? new Uint8Array(source)
      : ArrayBuffer.isView(source)
        ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
        : undefined;
  return !!bytes && bytes.byteLength === PLACEHOLDER.byteLength && bytes.every((b, i) => b === PLACEHOLDER[i]);
}

function findMemory(imports: unknown): WebAssembly.Memory | undefined {
  for (const mod of Object.values((imports ?? {}) as Record<string, unknown>)) {
    for (const v of Object.values((mod ?? {}) as Record<string, unknown>)) if (v instanceof WebAssembly.Memory) return v;
  }
  return undefined;
}

/** The runtime, initialized once per isolate. */
export function onnxRuntime(): Promise<onnx.OrtModuleLike> {
  ready ??= (async () => {
    const instantiate = WebAssembly.instantiate.bind(WebAssembly);
    const patched = async (source: unknown, imports?: WebAssembly.Imports) => {
      if (!isPlaceholder(source)) return (instantiate as (s: unknown, i?: WebAssembly.Imports) => Promise<unknown>)(source, imports);
      heap = findMemory(imports);
      const instance = await instantiate(ortWasm, imports);
      return { instance, module: ortWasm };
    };
    WebAssembly.instantiate = patched as typeof WebAssembly.instantiate;
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmBinary = PLACEHOLDER;
    ort.env.logLevel = 'error';
    return ort as unknown as onnx.OrtModuleLike;
  })();
  return ready;
}

/** Bytes of onnxruntime's WebAssembly heap (it only grows: its size is the isolate's high-water mark). */
export function wasmHeapBytes(): number {
  return heap?.buffer.byteLength ?? 0;
}
