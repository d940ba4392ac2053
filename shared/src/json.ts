import type { z } from 'zod';
import { type ErrorCode, LoraEdgeError } from './errors.ts';

/** JSON.parse with a LoraEdgeError naming the file. */
export function parseJsonText(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LoraEdgeError('invalid_json', `not valid JSON (${(e as Error).message})`, { file });
  }
}

/** Validates with a zod schema; the first issue becomes a LoraEdgeError naming the field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, code: ErrorCode, file: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.join('.') : undefined;
  const message = issue?.message ?? 'invalid';
  throw new LoraEdgeError(code, field ? message : `${message}`, { file, field });
}
