/**
 * Running the choices of one request (each prompt × n) on a dispatcher, whole or as a stream of
 * OpenAI chunks. The engine speaks token ids; text comes from the model's tokenizer when it has
 * one. Stop strings need the text, so requests with `stop` read the engine's stream and cancel it
 * at the stop, instead of generating to max_tokens and cutting afterwards.
 */
import type { Completion, Dispatcher, Job } from './dispatch.ts';
import { ApiError, toApiError } from './http/errors.ts';
import { SseParser, sseData, type Usage } from './lib.ts';
import { engineModel, type Plan } from './plan.ts';
import { TextAssembler } from './text.ts';
import type { TextModel } from './tokenizer.ts';

export interface Sampling {
  max_tokens: number;
  temperature: number;
  top_k: number;
  top_p: number;
  /** Undefined: a fresh random seed per choice. */
  seed: number | undefined;
  ignore_eos: boolean;
  stop_token_ids: number[];
  stop: string[];
}

export interface ChoiceSpec {
  index: number;
  promptIds: number[];
}

export interface ChoiceResult {
  index: number;
  promptIds: number[];
  ids: number[];
  text: string;
  finish_reason: 'stop' | 'length';
}

/** One piece of a streamed choice: its new ids and text, and on the last one the finish reason. */
export interface ChoiceDelta {
  index: number;
  promptIds: number[];
  first: boolean;
  ids: number[];
  text: string;
  finish_reason: 'stop' | 'length' | null;
}

export interface Run {
  dispatcher: Dispatcher;
  plan: Plan;
  sampling: Sampling;
  text: TextModel | undefined;
}

function seedFor(s: Sampling, index: number): number {
  // n > 1 with a seed: different but reproducible draws per choice.
  if (s.seed !== undefined) return s.seed + index;
  return crypto.getRandomValues(new Uint32Array(1))[0] as number;
}

export function jobFor(run: Run, spec: ChoiceSpec): Job {
  const s = run.sampling;
  return {
    target: run.plan.target,
    request: {
      ...engineModel(run.plan),
      mode: run.plan.mode === 'unmerged' ? 'unmerged' : 'merged',
      prompt_ids: spec.promptIds,
      max_tokens: s.max_tokens,
      temperature: s.temperature,
      top_k: Math.max(s.top_k, 0),
      top_p: s.top_p,
      seed: seedFor(s, spec.index),
      ignore_eos: s.ignore_eos,
      stop_token_ids: s.stop_token_ids,
    },
  };
}

/** The engine's token stream as ids, ending with its completion. */
async function* engineTokens(body: ReadableStream<Uint8Array>): AsyncGenerator<number[], Completion | undefined> {
  const reader = body.getReader();
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return undefined;
      for (const ev of parser.push(value)) {
        const data = JSON.parse(ev.data) as Record<string, unknown>;
        if (ev.event === 'error') {
          throw new ApiError(502, typeof data.code === 'string' ? data.code : 'engine_error', String(data.message ?? 'generation failed'));
        }
        if (data.done === true) return data as unknown as Completion;
        if (Array.isArray(data.ids)) yield data.ids as number[];
      }
    }
  } finally {
    // Stops the engine when we stop early (a stop string, a client gone).
    await reader.cancel().catch(() => {});
  }
}

/** A choice token by token: deltas as they come; the first request to the engine may be started already. */
export async function* streamChoice(
  run: Run,
  spec: ChoiceSpec,
  started?: ReadableStream<Uint8Array>,
): AsyncGenerator<ChoiceDelta, ChoiceResult> {
  const body = started ?? (await run.dispatcher.stream(jobFor(run, spec)));
  const asm = new TextAssembler(run.text, run.sampling.stop);
  let finish: 'stop' | 'length' = 'length';
  let first = true;
  const tokens = engineTokens(body);
  for (;;) {
    const r = await tokens.next();
    if (r.done) {
      if (r.value) finish = r.value.finish_reason;
      break;
    }
    const before = asm.tokenIds.length;
    let text = '';
    for (const id of r.value) text += asm.push(id);
    const ids = asm.tokenIds.slice(before);
    if (asm.stopped) {
      await tokens.return(undefined);
      finish = 'stop';
      yield { index: spec.index, promptIds: spec.promptIds, first, ids, text, finish_reason: null };
      break;
    }
    yield { index: spec.index, promptIds: spec.promptIds, first, ids, text, finish_reason: null };
    first = false;
  }
  const rest = asm.finish();
  if (rest) yield { index: spec.index, promptIds: spec.promptIds, first, ids: [], text: rest, finish_reason: null };
  return { index: spec.index, promptIds: spec.promptIds, ids: [...asm.tokenIds], text: asm.output, finish_reason: finish };
}

/** A choice run to the end. */
export async function completeChoice(run: Run, spec: ChoiceSpec): Promise<ChoiceResult> {
  if (run.sampling.stop.length > 0) {
    const it = streamChoice(run, spec);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }
  const c = await run.dispatcher.generate(jobFor(run, spec));
  const asm = new TextAssembler(run.text);
  for (const id of c.ids) asm.push(id);
  asm.finish();
  return { index: spec.index, promptIds: spec.promptIds, ids: c.ids, text: asm.output, finish_reason: c.finish_reason };
}

export function usageOf(
  results: readonly { promptIds: number[]; ids: number[] }[],
  promptsCounted: ReadonlySet<number[]> = new Set(),
): Usage {
  // A prompt sampled n times is read once, as OpenAI counts it.
  const seen = new Set<number[]>(promptsCounted);
  let prompt = 0;
  let completion = 0;
  for (const r of results) {
    if (!seen.has(r.promptIds)) {
      seen.add(r.promptIds);
      prompt += r.promptIds.length;
    }
    completion += r.ids.length;
  }
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export interface StreamFormat {
  /** The chunk object for a delta (the last delta of a choice carries its finish reason). */
  chunk(d: ChoiceDelta): Record<string, unknown>;
  /** The last chunk with usage and no choices (stream_options.include_usage). */
  usage(u: Usage): Record<string, unknown>;
}

/**
 * The SSE response body: every choice in turn (chunks carry their choice's index), then the usage
 * chunk if asked, then `data: [DONE]`. The first engine stream is opened by the caller before the
 * response starts, so refusals still get their HTTP status; a failure later becomes an error event.
 */
export function sseBody(
  run: Run,
  specs: readonly ChoiceSpec[],
  first: ReadableStream<Uint8Array>,
  format: StreamFormat,
  includeUsage: boolean,
): ReadableStream<Uint8Array> {
  async function* events(): AsyncGenerator<Uint8Array> {
    const results: ChoiceResult[] = [];
    try {
      for (const [i, spec] of specs.entries()) {
        const it = streamChoice(run, spec, i === 0 ? first : undefined);
        let last: ChoiceDelta | undefined;
        for (;;) {
          const r = await it.next();
          if (r.done) {
            results.push(r.value);
            const end: ChoiceDelta = {
              index: spec.index,
              promptIds: spec.promptIds,
              first: last === undefined,
              ids: [],
              text: '',
              finish_reason: r.value.finish_reason,
            };
            yield sseData(format.chunk(end));
            break;
          }
          last = r.value;
          if (r.value.ids.length || r.value.text || r.value.first) yield sseData(format.chunk(r.value));
        }
      }
      if (includeUsage) yield sseData(format.usage(usageOf(results)));
    } catch (e) {
      const err = toApiError(e);
      if (err.status >= 500) console.error('stream:', e);
      yield sseData(err.toJSON());
    }
    yield sseData('[DONE]');
  }
  const it = events();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = await it.next();
      if (r.done) controller.close();
      else controller.enqueue(r.value);
    },
    async cancel() {
      await it.return(undefined);
    },
  });
}
