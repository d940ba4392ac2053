/**
 * The internal generation request (router → infer, over the service binding or HTTP), checked
 * field by field; every refusal names its field.
 */
import type { MixEntry, ServeMode } from './adapters.ts';
import { ApiError } from './errors.ts';
import type { Sampling } from './sampling.ts';
import type { ModelRef } from './storage.ts';

export interface GenerateRequest {
  /** The base model (or a fused artifact stored as a model): R2 `models/<digest>/`. */
  model: { digest: string };
  /** The mix: adapters under R2 `adapters/<tenant>/<name>/<digest>/`, with weights (negative allowed). */
  adapters?: { tenant: string; name: string; digest: string; weight?: number }[];
  /** `unmerged` (default): stacked low-rank factors; `merged`: fused weights where the graph takes them. */
  mode?: ServeMode;
  prompt_ids: number[];
  max_tokens?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  seed?: number;
  /** Generate exactly max_tokens, past the model's EOS. */
  ignore_eos?: boolean;
  /** Extra stop ids. */
  stop_token_ids?: number[];
}

export interface ParsedRequest {
  model: ModelRef;
  mix: MixEntry[];
  mode: ServeMode;
  prompt: number[];
  maxTokens: number;
  sampling: Sampling;
  ignoreEos: boolean;
  stopIds: number[];
}

const bad = (field: string, message: string) => new ApiError(400, 'invalid_argument', message, { field });

function int(v: unknown, field: string, min: number, max: number, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw bad(field, `${field} must be an integer in [${min}, ${max}]`);
  return v;
}

function num(v: unknown, field: string, ok: (x: number) => boolean, rule: string, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw bad(field, `${field} ${rule}`);
  return v;
}

function str(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0) throw bad(field, `${field} must be a non-empty string`);
  return v;
}

function ids(v: unknown, field: string): number[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isInteger(x) || x < 0)) {
    throw bad(field, `${field} must be an array of non-negative integer token ids`);
  }
  return v as number[];
}

export function parseRequest(body: unknown, maxNewTokens: number): ParsedRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('body', 'the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  const m = b.model as Record<string, unknown> | undefined;
  if (typeof m !== 'object' || m === null) throw bad('model', 'model must be an object {digest}');
  const prompt = ids(b.prompt_ids, 'prompt_ids');
  if (prompt.length === 0) throw bad('prompt_ids', 'prompt_ids is empty');
  const rawMix = b.adapters ?? [];
  if (!Array.isArray(rawMix)) throw bad('adapters', 'adapters must be an array');
  const mix = rawMix.map((a: unknown, i) => {
    if (typeof a !== 'object' || a === null) throw bad(`adapters[${i}]`, 'each adapter is an object {tenant, name, digest, weight}');
    const r = a as Record<string, unknown>;
    return {
      ref: {
        tenant: str(r.tenant, `adapters[${i}].tenant`),
        name: str(r.name, `adapters[${i}].name`),
        digest: str(r.digest, `adapters[${i}].digest`),
      },
      weight: num(r.weight, `adapters[${i}].weight`, () => true, 'must be a finite number', 1),
    };
  });
  if (b.mode !== undefined && b.mode !== 'merged' && b.mode !== 'unmerged') throw bad('mode', 'mode must be "merged" or "unmerged"');
  return {
    model: { digest: str(m.digest, 'model.digest') },
    mix,
    mode: (b.mode as ServeMode | undefined) ?? 'unmerged',
    prompt,
    maxTokens: int(b.max_tokens, 'max_tokens', 1, maxNewTokens, Math.min(16, maxNewTokens)),
    sampling: {
      temperature: num(b.temperature, 'temperature', (x) => x >= 0, 'must be ≥ 0', 0),
      topK: int(b.top_k, 'top_k', 0, 2 ** 31 - 1, 0),
      topP: num(b.top_p, 'top_p', (x) => x > 0 && x <= 1, 'must be in (0, 1]', 1),
      seed: int(b.seed, 'seed', -(2 ** 53 - 1), 2 ** 53 - 1, 0),
    },
    ignoreEos: b.ignore_eos === undefined ? false : b.ignore_eos === true,
    stopIds: b.stop_token_ids === undefined ? [] : ids(b.stop_token_ids, 'stop_token_ids'),
  };
}
