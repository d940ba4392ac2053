/**
 * Refusals as `{ error: { code, message, … } }` with a status. Domain errors keep their code;
 * a model over the edge budget says `edge_budget_exceeded` with the numbers and `route: "gpu"`,
 * the router's cue to send the job to the GPU queue.
 */
import { type ErrorCode, isLoraEdgeError } from '@lora-edge/shared';
import { onnx } from './onnx.ts';

export type Detail = Record<string, string | number | boolean | undefined>;

export class ApiError extends Error {
  constructor(
    readonly status: 400 | 404 | 413 | 422 | 500 | 503,
    readonly code: string,
    message: string,
    readonly detail: Detail = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toJSON(): Record<string, string | number | boolean> {
    const out: Record<string, string | number | boolean> = { code: this.code, message: this.message };
    for (const [k, v] of Object.entries(this.detail)) if (v !== undefined) out[k] = v;
    return out;
  }
}

const UNPROCESSABLE: readonly ErrorCode[] = [
  'adapter_base_mismatch',
  'adapter_unsupported',
  'adapter_weight_invalid',
  'config_unsupported',
  'adapter_shape_mismatch',
];
const BROKEN_STORAGE: readonly ErrorCode[] = ['model_weights_invalid', 'safetensors_truncated', 'safetensors_header_invalid'];

export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof onnx.EdgeBudgetError) {
    return new ApiError(413, e.reason, e.message, { required_bytes: e.requiredBytes, budget_bytes: e.budgetBytes, route: 'gpu' });
  }
  if (isLoraEdgeError(e)) {
    const status = UNPROCESSABLE.includes(e.code) ? 422 : BROKEN_STORAGE.includes(e.code) ? 422 : 400;
    return new ApiError(status, e.code, e.message, { field: e.field, tensor: e.tensor, file: e.file });
  }
  return new ApiError(500, 'internal', e instanceof Error ? e.message : String(e));
}
