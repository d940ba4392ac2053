import type { AttentionArgs, LoraHandle, WeightHandle } from './types.ts';

/** The ops every native module (cpu-native, cuda) exports with the same signatures. */
export interface AddonOps {
  release(h: unknown): void;
  matmul(y: Float32Array, x: Float32Array, n: number, w: unknown): void;
  lora(y: Float32Array, x: Float32Array, n: number, slots: Int32Array, handles: unknown): void;
  rmsnorm(y: Float32Array, x: Float32Array, n: number, dim: number, weight: Float32Array, eps: number): void;
  rope(x: Float32Array, n: number, heads: number, headDim: number, positions: Int32Array, theta: number): void;
  attention(args: AttentionArgs): void;
  siluMul(gate: Float32Array, up: Float32Array, len: number): void;
}

/**
 * The forwarding every addon-backed Backend shares: handles are unwrapped to the module's own
 * references, everything else goes through as is (the module checks its arguments).
 */
export abstract class AddonBackend {
  constructor(
    private readonly ops: AddonOps,
    private readonly ref: (h: unknown) => unknown,
  ) {}

  release(h: unknown): void {
    this.ops.release(this.ref(h));
  }

  matmul(y: Float32Array, x: Float32Array, n: number, w: WeightHandle): void {
    this.ops.matmul(y, x, n, this.ref(w));
  }

  lora(y: Float32Array, x: Float32Array, n: number, slots: Int32Array, handles: readonly LoraHandle[]): void {
    this.ops.lora(y, x, n, slots, Array.isArray(handles) ? handles.map(this.ref) : handles);
  }

  rmsnorm(y: Float32Array, x: Float32Array, n: number, dim: number, weight: Float32Array, eps: number): void {
    this.ops.rmsnorm(y, x, n, dim, weight, eps);
  }

  rope(x: Float32Array, n: number, heads: number, headDim: number, positions: Int32Array, theta: number): void {
    this.ops.rope(x, n, heads, headDim, positions, theta);
  }

  attention(args: AttentionArgs): void {
    this.ops.attention(args);
  }

  siluMul(gate: Float32Array, up: Float32Array, len: number): void {
    this.ops.siluMul(gate, up, len);
  }
}
