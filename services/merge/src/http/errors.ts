/**
 * Refusals: every one is a 4xx with `{ error: { code, message, … } }`; `code` is stable and
 * machine-readable, `message` a sentence for a person. Domain errors (LoraEdgeError) keep
 * their code and get the status their kind of fault deserves.
 */
import { type ErrorCode, isLoraEdgeError } from '@lora-edge/shared';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

export interface ErrorDetail {
  field?: string;
  tensor?: string;
  file?: string;
  [extra: string]: string | number | boolean | null | undefined;
}

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly detail: ErrorDetail = {},
    /** For jobs: a fault that may pass (an origin that answered 5xx, a network error). */
    readonly retryable = false,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** `{code, message, …detail}` without undefined fields (it is stored as JSON). */
  toJSON(): { code: string; message: string; [detail: string]: string | number | boolean | null } {
    const out: { code: string; message: string; [detail: string]: string | number | boolean | null } = {
      code: this.code,
      message: this.message,
    };
    for (const [k, v] of Object.entries(this.detail)) if (v !== undefined && k !== 'code' && k !== 'message') out[k] = v;
    return out;
  }
}

/** Input that parses but cannot be used: the wrong base, an unsupported adapter type, a merge that cannot be done. */
const UNPROCESSABLE: readonly ErrorCode[] = [
  'adapter_base_mismatch',
  'adapter_unsupported',
  'adapter_weight_invalid',
  'config_unsupported',
  'merge_invalid',
  'input_missing',
];
/** Our own stored data is wrong: not the caller's fault. */
const INTERNAL: readonly ErrorCode[] = ['registry_invalid', 'storage_invalid'];

export function statusOfDomainCode(code: ErrorCode): ContentfulStatusCode {
  if (UNPROCESSABLE.includes(code)) return 422;
  if (INTERNAL.includes(code)) return 500;
  return 400;
}

/** Any thrown value as an ApiError: domain errors mapped, anything else a 500 `internal`. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (isLoraEdgeError(e)) {
    const detail: ErrorDetail = {};
    if (e.field !== undefined) detail.field = e.field;
    if (e.tensor !== undefined) detail.tensor = e.tensor;
    if (e.file !== undefined) detail.file = e.file;
    return new ApiError(statusOfDomainCode(e.code), e.code, e.message, detail);
  }
  return new ApiError(500, 'internal', 'internal error', {}, true);
}

export function errorJson(e: ApiError): { error: ReturnType<ApiError['toJSON']> } {
  return { error: e.toJSON() };
}
