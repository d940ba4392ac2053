/** JSON bodies, capped and validated; the first problem becomes a 400 naming its field. */
import type { z } from 'zod';
import { paramPath } from '../lib.ts';
import { ApiError, invalid } from './errors.ts';

export const MAX_BODY_BYTES = 1 << 20;

export async function readJson<S extends z.ZodType>(req: Request, schema: S, maxBytes = MAX_BODY_BYTES): Promise<z.output<S>> {
  const declared = Number(req.headers.get('content-length') ?? 0);
  if (declared > maxBytes) throw new ApiError(413, 'payload_too_large', `The request body is over ${maxBytes} bytes.`);
  const text = await req.text();
  if (text.length > maxBytes) throw new ApiError(413, 'payload_too_large', `The request body is over ${maxBytes} bytes.`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalid(null, `The request body is not valid JSON (${e instanceof Error ? e.message : String(e)}).`, 'invalid_json');
  }
  return validate(schema, json);
}

export function validate<S extends z.ZodType>(schema: S, value: unknown, prefix: readonly PropertyKey[] = []): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const param = paramPath([...prefix, ...(issue?.path ?? [])]);
  const message = issue?.message ?? 'invalid';
  throw invalid(param, param ? `${param}: ${message}` : message);
}
