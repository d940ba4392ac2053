/** POST /v1/chat/completions: the conversation through the model's chat template, then as completions. */
import { Hono } from 'hono';
import { dispatcherFor } from '../dispatch.ts';
import { type ChoiceDelta, type ChoiceSpec, completeChoice, jobFor, type Run, sseBody, usageOf } from '../generation.ts';
import { type AppEnv, registry } from '../http/auth.ts';
import { readJson } from '../http/body.ts';
import { invalid } from '../http/errors.ts';
import { ChatCompletionRequestSchema, type ChatMessage } from '../lib.ts';
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

/** Without max_tokens a reply may use the context up to this many tokens. */
export const DEFAULT_CHAT_MAX_TOKENS = 256;

function lastUserText(messages: readonly ChatMessage[]): string | undefined {
  const m = [...messages].reverse().find((x) => x.role === 'user');
  if (!m) return undefined;
  return typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join('');
}

export const chatRoutes = new Hono<AppEnv>();

chatRoutes.post('/chat/completions', async (c) => {
  const req = await readJson(c.req.raw, ChatCompletionRequestSchema);
  refuseUnsupported(req);
  const selection = await select(
    registry(c.env),
    c.get('tenant'),
    { model: req.model, adapters: req.adapters, user: req.user, promptText: () => lastUserText(req.messages) },
    retrievalSettings(c.env),
  );
  const text = await loadTextModel(c.env.BLOBS, selection.base.digest);
  if (!text) throw noTokenizer('model');
  const promptIds = text.encode(text.renderChat(req.messages, req.add_generation_prompt ?? true), false);
  if (promptIds.length === 0) throw invalid('messages', 'The conversation is empty once rendered and tokenized.');
  const context = Number(selection.base.config.max_position_embeddings) || 2048;
  const maxTokens =
    req.max_completion_tokens ?? req.max_tokens ?? Math.max(1, Math.min(DEFAULT_CHAT_MAX_TOKENS, context - promptIds.length));

  const plan = await makePlan(c.env, selection);
  const dispatcher = dispatcherFor(c.env, { tenant: c.get('tenant').id, modelBytes: plan.selection.base.size });
  const run: Run = { dispatcher, plan, sampling: sampling(req, maxTokens), text };
  const n = req.n ?? 1;
  const specs: ChoiceSpec[] = Array.from({ length: n }, (_, j) => ({ index: j, promptIds }));
  const served = servedBy(plan);
  const id = completionId('chatcmpl');
  const created = nowSeconds();
  const withIds = req.return_token_ids === true;

  if (req.stream) {
    const first = await run.dispatcher.stream(jobFor(run, specs[0] as ChoiceSpec));
    afterServed(c, plan);
    const base = { id, object: 'chat.completion.chunk', created, model: req.model };
    const body = sseBody(
      run,
      specs,
      first,
      {
        chunk: (d: ChoiceDelta) => {
          const delta: Record<string, string> = d.first ? { role: 'assistant', content: d.text } : d.text ? { content: d.text } : {};
          const choice: Record<string, unknown> = { index: d.index, delta, logprobs: null, finish_reason: d.finish_reason };
          if (withIds) choice.token_ids = d.ids;
          const chunk: Record<string, unknown> = { ...base, choices: [choice] };
          if (d.first && d.index === 0) {
            chunk.lora_edge = served;
            if (withIds) chunk.prompt_token_ids = promptIds;
          }
          return chunk;
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
      object: 'chat.completion',
      created,
      model: req.model,
      choices: results.map((r) => ({
        index: r.index,
        message: { role: 'assistant', content: r.text },
        logprobs: null,
        finish_reason: r.finish_reason,
        ...(withIds ? { token_ids: r.ids } : {}),
      })),
      usage: usageOf(results),
      ...(withIds ? { prompt_token_ids: promptIds } : {}),
      lora_edge: served,
    },
    200,
    responseHeaders(served, dispatcher.gpuJobs),
  );
});
