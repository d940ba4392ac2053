/** What the two generation endpoints share: refusing what we cannot honour, sampling defaults, the served-by header. */
import type { Context } from 'hono';
import type { Sampling } from '../generation.ts';
import { JOB_HEADER } from '../gpu.ts';
import type { AppEnv } from '../http/auth.ts';
import { invalid } from '../http/errors.ts';
import type { ChatCompletionRequest, CompletionRequest, ServedBy } from '../lib.ts';
import { noteUnmerged, type Plan, servedByHeader } from '../plan.ts';
import type { RetrievalSettings } from '../select.ts';

export const SERVED_BY_HEADER = 'x-lora-edge-served-by';

const unsupported = (param: string, what: string) => invalid(param, `${what} is not supported.`, 'unsupported_parameter');

/** Fields OpenAI defines that lora-edge cannot honour yet: refused by name rather than silently ignored. */
export function refuseUnsupported(req: CompletionRequest | ChatCompletionRequest): void {
  if (req.presence_penalty) throw unsupported('presence_penalty', 'presence_penalty');
  if (req.frequency_penalty) throw unsupported('frequency_penalty', 'frequency_penalty');
  if (req.logit_bias && Object.keys(req.logit_bias).length) throw unsupported('logit_bias', 'logit_bias');
  if ('echo' in req && req.echo) throw unsupported('echo', 'echo');
  if ('best_of' in req && req.best_of != null && req.best_of > 1) throw unsupported('best_of', 'best_of > 1');
  if ('suffix' in req && req.suffix) throw unsupported('suffix', 'suffix');
  if (req.logprobs !== undefined && req.logprobs !== null && req.logprobs !== false) throw unsupported('logprobs', 'logprobs');
  if ('messages' in req) {
    // Asked-for tool calls or JSON output would be silently ignored otherwise: refused by name.
    if (req.tools?.length) throw unsupported('tools', 'Tool calling');
    if (req.functions?.length) throw unsupported('functions', 'Function calling');
    const none = (v: unknown) => v === undefined || v === null || v === 'none';
    if (!none(req.tool_choice)) throw unsupported('tool_choice', 'tool_choice other than "none"');
    if (!none(req.function_call)) throw unsupported('function_call', 'function_call other than "none"');
    if (req.response_format && req.response_format.type !== 'text')
      throw unsupported('response_format', `response_format ${JSON.stringify(req.response_format.type)}`);
  }
}

export function sampling(req: CompletionRequest | ChatCompletionRequest, maxTokens: number): Sampling {
  const stop = req.stop == null ? [] : typeof req.stop === 'string' ? [req.stop] : req.stop;
  return {
    max_tokens: maxTokens,
    temperature: req.temperature ?? 1,
    top_k: req.top_k ?? 0,
    top_p: req.top_p ?? 1,
    seed: req.seed ?? undefined,
    ignore_eos: req.ignore_eos ?? false,
    stop_token_ids: req.stop_token_ids ?? [],
    stop: stop.filter((s) => s.length > 0),
  };
}

export function retrievalSettings(env: Env): RetrievalSettings {
  const topK = Number(env.RETRIEVAL_TOP_K);
  const minScore = Number(env.RETRIEVAL_MIN_SCORE);
  return { topK: Number.isFinite(topK) ? topK : 2, minScore: Number.isFinite(minScore) ? minScore : 0.2 };
}

/** Counts the hit of an unmerged mix after the response has started, without delaying it. */
export function afterServed(c: Context<AppEnv>, plan: Plan): void {
  const auth = c.req.header('authorization') ?? '';
  const task = noteUnmerged(c.env, plan, auth).catch((e) => console.error('hit counting / merge request failed:', e));
  try {
    c.executionCtx.waitUntil(task);
  } catch {
    // No execution context (plain app.request in unit tests): the task runs on its own.
  }
}

/** The served-by header, and the GPU jobs that ran the request (GET /v1/generations/:id shows each). */
export function responseHeaders(served: ServedBy, gpuJobs: readonly string[] = []): Record<string, string> {
  const h: Record<string, string> = { [SERVED_BY_HEADER]: servedByHeader(served) };
  if (gpuJobs.length) h[JOB_HEADER] = gpuJobs.join(', ');
  return h;
}

/** An OpenAI-style SSE response carrying the served-by header (and, on the GPU path, the first choice's job). */
export function sseResponse(body: ReadableStream<Uint8Array>, served: ServedBy, gpuJobs: readonly string[] = []): Response {
  return new Response(body, {
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...responseHeaders(served, gpuJobs) },
  });
}

export function completionId(prefix: string): string {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
