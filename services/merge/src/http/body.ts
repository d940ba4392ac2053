/** Request bodies read with a size cap (before and while reading) and validated with zod. */
import type { z } from 'zod';
import { ApiError } from './errors.ts';

/** The body's bytes; 413 `code` when Content-Length or the bytes actually sent exceed `max`. */
export async function readCapped(req: Request, max: number, code = 'payload_too_large'): Promise<Uint8Array> {
  const tooLarge = () => new ApiError(413, code, `the request body exceeds ${max} bytes`, { limit_bytes: max });
  const declared = req.headers.get('content-length');
  if (declared !== null && /^[0-9]+$/.test(declared) && Number(declared) > max) throw tooLarge();
  if (!req.body) return new Uint8Array(0);
  return readStreamCapped(req.body, max, tooLarge);
}

export async function readStreamCapped(body: ReadableStream<Uint8Array>, max: number, tooLarge: () => Error): Promise<Uint8Array> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Parses `bytes` as JSON and validates it; 400 `invalid_json` / `invalid_request` naming the field. */
export function parseJsonBody<S extends z.ZodType>(bytes: Uint8Array, schema: S): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    throw new ApiError(400, 'invalid_json', 'the request body is not valid UTF-8 JSON');
  }
  return validate(schema, json);
}

/** `at`: the field a scalar value came from (a path parameter), for the message. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, at?: string): z.output<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue && issue.path.length > 0 ? issue.path.join('.') : at;
  const message = `${field ? `${field}: ` : ''}${issue?.message ?? 'invalid'}`;
  throw new ApiError(400, 'invalid_request', message, field ? { field } : {});
}

/** multipart/form-data from bytes already read (so the size cap applied); 400 when it does not parse. */
export async function parseMultipart(bytes: Uint8Array, contentType: string | undefined): Promise<FormData> {
  if (!contentType || !/^multipart\/form-data\s*;/i.test(contentType)) {
    throw new ApiError(415, 'unsupported_media_type', 'send multipart/form-data (one part per file)');
  }
  try {
    return await new Request('http://body.local/', { method: 'POST', headers: { 'content-type': contentType }, body: bytes }).formData();
  } catch {
    throw new ApiError(400, 'invalid_multipart', 'the multipart body does not parse');
  }
}

/** A part's bytes (file or text field), or undefined when absent. */
export async function partBytes(form: FormData, name: string): Promise<Uint8Array | undefined> {
  // workers-types declare get() as string-only; file parts are Files at run time.
  const v = form.get(name) as unknown as File | string | null;
  if (v === null) return undefined;
  if (typeof v === 'string') return new TextEncoder().encode(v);
  return new Uint8Array(await v.arrayBuffer());
}

export function partText(form: FormData, name: string): string | undefined {
  const v = form.get(name);
  return typeof v === 'string' ? v : undefined;
}
