/**
 * Every refusal as OpenAI's error object, `{error: {message, type, code, param}}`, with the
 * status its kind of fault deserves. Domain errors (LoraEdgeError) keep their code; `param`
 * names the request field where there is one.
 */
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { type ErrorCode, type ErrorObject, errorObject, isLoraEdgeError } from '../lib.ts';

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    /** Extra response headers (Retry-After on 429 and 503). */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toJSON(): ErrorObject {
    return errorObject(this.status, this.code, this.message, this.param);
  }
}

export const invalid = (param: string | null, message: string, code = 'invalid_request') => new ApiError(400, code, message, param);

/** Unknown and invisible look the same: another tenant's private adapter is "does not exist". */
export const modelNotFound = (model: string) =>
  new ApiError(404, 'model_not_found', `The model \`${model}\` does not exist or you do not have access to it.`, 'model');

export const adapterNotFound = (ref: string, param: string) =>
  new ApiError(404, 'adapter_not_found', `The adapter \`${ref}\` does not exist or you do not have access to it.`, param);

/** Stored data we cannot read is our fault, not the caller's. */
const INTERNAL: readonly ErrorCode[] = ['registry_invalid', 'storage_invalid'];
const UNPROCESSABLE: readonly ErrorCode[] = ['adapter_base_mismatch', 'adapter_unsupported', 'config_unsupported', 'merge_invalid'];

export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (isLoraEdgeError(e)) {
    const status = INTERNAL.includes(e.code) ? 500 : UNPROCESSABLE.includes(e.code) ? 422 : 400;
    return new ApiError(status, e.code, e.message, e.field ?? null);
  }
  if (e instanceof HTTPException) {
    // Hono's own refusals (e.g. a body it cannot parse): keep the status, give it our shape.
    return new ApiError(e.status as ContentfulStatusCode, e.status === 400 ? 'invalid_json' : 'http_error', e.message);
  }
  return new ApiError(500, 'internal_error', 'The server had an error while processing your request.');
}
