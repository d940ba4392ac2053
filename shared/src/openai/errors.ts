/** OpenAI-shaped error objects: `{error: {message, type, code, param}}`. */
import type { ErrorObject } from './schemas.ts';

/** OpenAI's `type` for a status: clients branch on it (the SDK maps statuses to error classes). */
export function errorTypeOf(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return status === 503 ? 'service_unavailable_error' : 'server_error';
  return 'invalid_request_error';
}

export function errorObject(status: number, code: string | null, message: string, param: string | null = null): ErrorObject {
  return { error: { message, type: errorTypeOf(status), code, param } };
}

/** A zod issue path as a person writes it: `messages[0].content`, `adapters[1].weight`. */
export function paramPath(path: readonly PropertyKey[]): string | null {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || null;
}
