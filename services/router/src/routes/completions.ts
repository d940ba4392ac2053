/** POST /v1/completions: OpenAI's legacy completions, with vLLM's token-id prompts and extensions. */
import { Hono } from 'hono';
import { dispatcherFor } from '../dispatch.ts';
import { type ChoiceDelta, type ChoiceSpec, completeChoice, jobFor, type Run, sseBody, usageOf } from '../generation.ts';
import { type AppEnv, registry } from '../http/auth.ts';
import { readJson } from '../http/body.ts';
import { invalid } from '../http/errors.ts';
import { type CompletionRequest, CompletionRequestSchema } from '../lib.ts';
import { plan as makePlan, servedBy } from '../plan.ts';
import { select } from '../select.ts';
import { loadTextModel, noTokenizer } from '../tokenizer.ts';
import {
  afterServed,
  completionId,
  nowSeconds,
  refuseUnsupported,
  responseHeaders,
  retrievalSettings,
  sampling,
  sseResponse,
} from './common.ts';

export const DEFAULT_MAX_TOKENS = 16;

type Prompts = { texts: string[] } | { ids: number[][] };

function prompts(p: CompletionRequest['prompt']): Prompts {
  if (typeof p === 'string') return { texts: [p] };
  if (p.every((x) => typeof x === 'string')) return { texts: p as string[] };
  if (p.every((x) => typeof x === 'number')) return { ids: [p as number[]] };
  return { ids: p as number[][] };
}

export const completionRoutes = new Hono<AppEnv>();

completionRoutes.post('/completions', async (c) => {
  const req = await readJson(c.req.raw, CompletionRequestSchema);
  refuseUnsupported(req);
  const given = prompts(req.prompt);
  const texts = 'texts' in given ? given.texts : undefined;
  const selection = await select(
    registry(c.env),
    c.get('tenant'),
    { model: req.model, adapters: req.adapters, user: req.user, promptText: () => texts?.join('\n') },
    retrievalSettings(c.env),
  );
  const text = await loadTextModel(c.env.BLOBS, selection.base.digest);
  if (texts && !text) throw noTokenizer('prompt');
  const s = sampling(req, req.max_tokens ?? DEFAULT_MAX_TOKENS);
  if (s.stop.length && !text) throw noTokenizer('stop');
  const promptIds = texts ? texts.map((t) => text!.encode(t, true)) : (given as { ids: number[][] }).ids;
  promptIds.forEach((p, i) => {
    if (p.length === 0) throw invalid(texts && texts.length > 1 ? `prompt[${i}]` : 'prompt', 'The prompt is empty once tokenized.');
  });

  const plan = await makePlan(c.env, selection);
  const dispatcher = dispatcherFor(c.env, { tenant: c.get('tenant').id, modelBytes: plan.selection.base.size });
  const run: Run = { dispatcher, plan, sampling: s, text };
  const n = req.n ?? 1;
  const specs: ChoiceSpec[] = promptIds.flatMap((p, i) => Array.from({ length: n }, (_, j) => ({ index: i * n + j, promptIds: p })));
  const served = servedBy(plan);
  const id = completionId('cmpl');
  const created = nowSeconds();
  const withIds = req.return_token_ids === true;

  if (req.stream) {
    const first = await run.dispatcher.stream(jobFor(run, specs[0] as ChoiceSpec));
    afterServed(c, plan);
    const base = { id, object: 'text_completion', created, model: req.model };
    const body = sseBody(
      run,
      specs,
      first,
      {
        chunk: (d: ChoiceDelta) => {
          const choice: Record<string, unknown> = { index: d.index, text: d.text, logprobs: null, finish_reason: d.finish_reason };
          if (withIds) {
            choice.token_ids = d.ids;
            if (d.first) choice.prompt_token_ids = d.promptIds;
          }
          return d.first && d.index === 0 ? { ...base, choices: [choice], lora_edge: served } : { ...base, choices: [choice] };
        },
        usage: (u) => ({ ...base, choices: [], usage: u }),
      },
      req.stream_options?.include_usage === true,
    );
    return sseResponse(body, served, dispatcher.gpuJobs);
  }

  const results = await Promise.all(specs.map((spec) => completeChoice(run, spec)));
  afterServed(c, plan);
  return c.json(
    {
      id,
      object: 'text_completion',
      created,
      model: req.model,
      choices: results.map((r) => ({
        index: r.index,
        text: r.text,
        logprobs: null,
        finish_reason: r.finish_reason,
        ...(withIds ? { token_ids: r.ids, prompt_token_ids: r.promptIds } : {}),
      })),
      usage: usageOf(results),
      lora_edge: served,
    },
    200,
    responseHeaders(served, dispatcher.gpuJobs),
  );
});
