/**
 * The cpu-native backend: a thin wrapper over the C++ addon (gpu-runner/native, built by
 * `npm ci` through the workspace's install script). All argument checks happen in the addon;
 * this file only maps handles to the addon's native references.
 */
import { createRequire } from 'node:module';
import { AddonBackend } from './addon-backend.ts';
import type {
  AttentionArgs,
  Backend,
  LoraHandle,
  LoraInit,
  LoraLayout,
  VeraInit,
  VeraProjectionHandle,
  VeraProjectionInit,
  WeightDType,
  WeightHandle,
  WeightInit,
} from './types.ts';

/** The addon's exports (native/addon.cc). */
export interface NativeAddon {
  createWeight(init: WeightInit): unknown;
  createLora(init: LoraInit): unknown;
  createVeraProjection(init: VeraProjectionInit): unknown;
  createVera(init: Omit<VeraInit, 'projection'> & { projection: unknown }): unknown;
  loraInfo(ref: unknown): { layout: LoraLayout; bytes: number };
  release(ref: unknown): void;
  matmul(y: Float32Array, x: Float32Array, n: number, w: unknown): void;
  lora(y: Float32Array, x: Float32Array, n: number, slots: Int32Array, handles: unknown): void;
  rmsnorm(y: Float32Array, x: Float32Array, n: number, dim: number, weight: Float32Array, eps: number): void;
  rope(x: Float32Array, n: number, heads: number, headDim: number, positions: Int32Array, theta: number): void;
  attention(args: AttentionArgs): void;
  siluMul(gate: Float32Array, up: Float32Array, len: number): void;
  /** w[out, in] = (src ?? w) + b[out, r] · a[r, in] (b already scaled; src copied in while fusing). */
  fuseRows(w: Float32Array, out: number, inF: number, b: Float32Array, a: Float32Array, r: number, src?: Float32Array): void;
  setThreads(n: number): void;
  threads(): number;
  setIsa(name: string): string;
  isa(): string;
}

/** Kernel sets the addon carries; `auto` picks the best this CPU runs. */
export type NativeIsa = 'auto' | 'avx512' | 'avx2' | 'portable';

const ADDON_PATH = '../../build/Release/lora_edge_native.node';

let cached: { addon?: NativeAddon; error?: Error } | undefined;

/** The addon, or the reason it cannot be loaded (not built, wrong platform). Loaded once. */
export function loadNativeAddon(): { addon?: NativeAddon; error?: Error } {
  if (!cached) {
    try {
      cached = { addon: createRequire(import.meta.url)(ADDON_PATH) as NativeAddon };
    } catch (e) {
      const cause = e instanceof Error ? e.message : String(e);
      cached = {
        error: new Error(
          `the cpu-native addon is not available (build it with \`npm run build:native -w @lora-edge/gpu-runner\`): ${cause}`,
        ),
      };
    }
  }
  return cached;
}

class NativeWeight implements WeightHandle {
  readonly in: number;
  constructor(
    readonly dtype: WeightDType,
    readonly out: number,
    inF: number,
    readonly ref: unknown,
  ) {
    this.in = inF;
  }
}

class NativeLora implements LoraHandle {
  readonly in: number;
  readonly layout: LoraLayout;
  readonly bytes: number;
  constructor(
    readonly rank: number,
    readonly out: number,
    inF: number,
    readonly ref: unknown,
    info: { layout: LoraLayout; bytes: number },
    readonly projection?: VeraProjectionHandle,
  ) {
    this.in = inF;
    this.layout = info.layout;
    this.bytes = info.bytes;
  }
}

class NativeVeraProjection implements VeraProjectionHandle {
  constructor(
    readonly rank: number,
    readonly maxIn: number,
    readonly maxOut: number,
    readonly bytes: number,
    readonly ref: unknown,
  ) {}
}

/** A foreign object goes to the addon as it is, so the addon's type check reports it. */
function ref(h: unknown): unknown {
  return h instanceof NativeWeight || h instanceof NativeLora || h instanceof NativeVeraProjection ? h.ref : h;
}

export class NativeBackend extends AddonBackend implements Backend {
  readonly name = 'cpu-native';

  constructor(private readonly addon: NativeAddon) {
    super(addon, ref);
  }

  /** The kernel set in use: 'avx512', 'avx2' or 'portable'. */
  get isa(): string {
    return this.addon.isa();
  }

  /** Forces a kernel set (tests, comparisons); throws when this CPU lacks it. */
  setIsa(name: NativeIsa): string {
    return this.addon.setIsa(name);
  }

  get threads(): number {
    return this.addon.threads();
  }

  setThreads(n: number): void {
    this.addon.setThreads(n);
  }

  createWeight(init: WeightInit): WeightHandle {
    const r = this.addon.createWeight(init);
    return new NativeWeight(init.dtype, init.out, init.in, r);
  }

  createLora(init: LoraInit): LoraHandle {
    const r = this.addon.createLora(init);
    return new NativeLora(init.rank, init.out, init.in, r, this.addon.loraInfo(r));
  }

  createVeraProjection(init: VeraProjectionInit): VeraProjectionHandle {
    const r = this.addon.createVeraProjection(init);
    const bytes = init.rank * (init.maxIn + init.maxOut) * (init.dtype === 'bf16' ? 2 : 4);
    return new NativeVeraProjection(init.rank, init.maxIn, init.maxOut, bytes, r);
  }

  createVera(init: VeraInit): LoraHandle {
    // A non-object goes as it is, so the addon's type check reports it.
    const raw = typeof init === 'object' && init !== null ? { ...init, projection: ref(init.projection) } : init;
    const r = this.addon.createVera(raw);
    const p = init.projection;
    return new NativeLora(p.rank, init.out, init.in, r, this.addon.loraInfo(r), p);
  }
}

/** A cpu-native backend; throws with the reason when the addon cannot be loaded. */
export function createNativeBackend(): NativeBackend {
  const { addon, error } = loadNativeAddon();
  if (!addon) throw error;
  return new NativeBackend(addon);
}
