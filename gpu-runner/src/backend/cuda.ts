/**
 * The cuda backend: a thin wrapper over the CUDA module (gpu-runner/native/cuda, built as
 * `build/Release/lora_edge_cuda.node` by the workspace's install script wherever nvcc runs).
 * Weights and LoRA stacks live in device memory; each op copies the caller's Float32Arrays to
 * the device, runs its kernels and copies the result back before it returns. All argument
 * checks happen in the module, by the cpu-native addon's rules; this file maps handles to the
 * module's references. See gpu-runner/CUDA.md.
 */
import { createRequire } from 'node:module';
import { AddonBackend } from './addon-backend.ts';
import type { AttentionArgs, Backend, LoraHandle, LoraInit, WeightDType, WeightHandle, WeightInit } from './types.ts';

/** What the module reports about the machine (never throws, needs no device). */
export interface CudaInfo {
  /** Devices the runtime sees (0 when there is no driver or no GPU). */
  count: number;
  /** Why there is no device, when count is 0: starts with 'no CUDA device'. */
  error?: string;
  /** CUDA runtime the module was built with / driver installed, as 1000·major + 10·minor (0: none). */
  runtimeVersion: number;
  driverVersion: number;
  /** The device the backend uses (LORA_EDGE_CUDA_DEVICE, default 0). */
  device?: { index: number; name: string; major: number; minor: number; multiprocessors: number; memoryBytes: number; l2Bytes: number };
}

/** The module's exports (native/cuda/addon.cc). */
export interface CudaAddon {
  createWeight(init: WeightInit): unknown;
  createLora(init: LoraInit): unknown;
  release(ref: unknown): void;
  matmul(y: Float32Array, x: Float32Array, n: number, w: unknown): void;
  lora(y: Float32Array, x: Float32Array, n: number, slots: Int32Array, handles: unknown): void;
  rmsnorm(y: Float32Array, x: Float32Array, n: number, dim: number, weight: Float32Array, eps: number): void;
  rope(x: Float32Array, n: number, heads: number, headDim: number, positions: Int32Array, theta: number): void;
  attention(args: AttentionArgs): void;
  siluMul(gate: Float32Array, up: Float32Array, len: number): void;
  info(): CudaInfo;
  /** Device bytes held by live handles, and by the staging buffers the ops reuse. */
  stats(): { handleBytes: number; scratchBytes: number };
}

const MODULE_PATH = '../../build/Release/lora_edge_cuda.node';

let cached: { addon?: CudaAddon; error?: Error } | undefined;

/**
 * The CUDA module, or the reason it cannot be loaded (nvcc absent at install, wrong platform).
 * Loaded once. LORA_EDGE_CUDA_MODULE names another build of it (an absolute path): the CPU
 * emulation of native/cuda/emu, or a build made on the GPU machine.
 */
export function loadCudaAddon(): { addon?: CudaAddon; error?: Error } {
  if (!cached) {
    try {
      cached = { addon: createRequire(import.meta.url)(process.env.LORA_EDGE_CUDA_MODULE || MODULE_PATH) as CudaAddon };
    } catch (e) {
      const cause = e instanceof Error ? e.message : String(e);
      cached = {
        error: new Error(
          `no CUDA device: the CUDA module is not available (it is built where nvcc is on PATH: \`npm run build:native -w @lora-edge/gpu-runner\`): ${cause}`,
        ),
      };
    }
  }
  return cached;
}

/** Whether a CUDA device can be used here: the module loads and the runtime sees a device. */
export function cudaAvailable(): boolean {
  const { addon } = loadCudaAddon();
  return !!addon && addon.info().count > 0;
}

class CudaWeight implements WeightHandle {
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

class CudaLora implements LoraHandle {
  readonly in: number;
  /** This backend stores every B densely (a requested 'sparse' layout gives the same numbers). */
  readonly layout = 'dense' as const;
  /** Device bytes of the factors at their storage width (A padded to rows of 16 values). */
  readonly bytes: number;
  constructor(
    readonly rank: number,
    readonly out: number,
    inF: number,
    readonly ref: unknown,
    width: number,
    rowScale: boolean,
  ) {
    this.in = inF;
    this.bytes = rank * (Math.ceil(inF / 16) * 16 + out) * width + (rowScale ? out * 4 : 0);
  }
}

/** A foreign object goes to the module as it is, so the module's type check reports it. */
function ref(h: unknown): unknown {
  return h instanceof CudaWeight || h instanceof CudaLora ? h.ref : h;
}

export class CudaBackend extends AddonBackend implements Backend {
  readonly name = 'cuda';

  constructor(private readonly addon: CudaAddon) {
    super(addon, ref);
  }

  /** The device in use and the CUDA versions. */
  get info(): CudaInfo {
    return this.addon.info();
  }

  /** Device memory held by handles and by the ops' staging buffers. */
  memory(): { handleBytes: number; scratchBytes: number } {
    return this.addon.stats();
  }

  createWeight(init: WeightInit): WeightHandle {
    const r = this.addon.createWeight(init);
    return new CudaWeight(init.dtype, init.out, init.in, r);
  }

  createLora(init: LoraInit): LoraHandle {
    const r = this.addon.createLora(init);
    return new CudaLora(init.rank, init.out, init.in, r, init.dtype === 'bf16' ? 2 : 4, !!init.rowScale);
  }
}

/**
 * A cuda backend. Throws an Error whose message starts with 'no CUDA device' when the module is
 * not built or the runtime sees no device (no driver, no GPU, LORA_EDGE_CUDA_DEVICE out of range).
 */
export function createCudaBackend(): CudaBackend {
  const { addon, error } = loadCudaAddon();
  if (!addon) throw error;
  const info = addon.info();
  if (info.count <= 0 || !info.device) throw new Error(info.error ?? 'no CUDA device');
  return new CudaBackend(addon);
}
