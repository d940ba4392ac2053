/**
 * The local stack end to end: `scripts/start.mjs` on a free port and a throwaway state directory
 * (wrangler dev running router, merge and infer; the demo data seeded through the API), driven
 * with the official `openai` client as any OpenAI-compatible tool would. stories260k's
 * continuations must equal the golden ids with and without each fixture adapter and with the
 * weighted mix, unmerged and, once the merge service has fused the hot mix, merged.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { signWebhook } from '@lora-edge/shared';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalStack, root, startStack } from './local-stack.ts';

const fixture = (...p: string[]) => JSON.parse(readFileSync(join(root, 'fixtures', ...p), 'utf8'));
const stories = fixture('models', 'stories260k', 'reference.json') as { cases: { prompt_ids: number[]; greedy_ids: number[] }[] };
const mix = fixture('adapters', 'mixes', 'reference.json') as {
  adapters: string[];
  weights: number[];
  prompt_ids: number[];
  n_generated: number;
  greedy_ids_unmerged: number[];
};
const ADAPTERS = ['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8', 'tiny-dora-r4'];
const adapterRef = (name: string) =>
  fixture('adapters', name, 'reference.json') as { generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[] };

/** The vLLM and lora-edge fields the SDK's types do not know; the SDK sends them as they are. */
type Extra = { ignore_eos?: boolean; return_token_ids?: boolean; top_k?: number; adapters?: { id: string; weight: number }[] };
interface ServedBy {
  mode: string;
  recipe: string | null;
  adapters: { id: string; weight: number }[];
  selection: string;
}
type WithIds = { token_ids?: number[]; prompt_token_ids?: number[] };

let stack: LocalStack;
let client: OpenAI;

beforeAll(async () => {
  stack = await startStack();
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0, timeout: 30_000 });
}, 120_000);

afterAll(async () => {
  const bootMs = stack?.bootMs;
  await stack?.stop();
  console.log(`e2e: stack ready in ${bootMs} ms`);
});

async function greedyIds(model: string, prompt: number[], n: number, extra: Extra = {}) {
  const { data, response } = await client.completions
    .create({
      model,
      prompt,
      max_tokens: n,
      temperature: 0,
      ignore_eos: true,
      return_token_ids: true,
      ...extra,
    } as OpenAI.CompletionCreateParamsNonStreaming)
    .withResponse();
  const choice = data.choices[0] as OpenAI.CompletionChoice & WithIds;
  return {
    ids: choice.token_ids,
    served: (data as unknown as { lora_edge: ServedBy }).lora_edge,
    header: response.headers.get('x-lora-edge-served-by'),
    usage: data.usage,
  };
}

describe('the local stack, through the openai client', () => {
  it('lists base models, the demo adapters with their parent, and the aliases', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m as OpenAI.Model & { parent: string | null; root: string });
    const ids = models.map((m) => m.id);
    expect(ids).toEqual(
      expect.arrayContaining(['stories260k', 'tiny-random-chat', 'story-mix', ...ADAPTERS.map((a) => `stories260k:${a}`)]),
    );
    expect(models.find((m) => m.id === 'stories260k:tiny-qv-r4')).toMatchObject({ parent: 'stories260k', root: 'demo/tiny-qv-r4' });
  });

  it('reproduces stories260k’s reference continuations from token-id prompts', async () => {
    for (const c of stories.cases) {
      const r = await greedyIds('stories260k', c.prompt_ids, c.greedy_ids.length, { adapters: [] });
      expect(r.ids).toEqual(c.greedy_ids);
      expect(r.served.mode).toBe('base');
      expect(r.usage).toMatchObject({ prompt_tokens: c.prompt_ids.length, completion_tokens: c.greedy_ids.length });
    }
  });

  it('reproduces PEFT’s continuations with each fixture adapter', async () => {
    for (const name of ADAPTERS) {
      for (const g of adapterRef(name).generations) {
        const r = await greedyIds(`stories260k:${name}`, g.prompt_ids, g.greedy_ids_merged.length);
        expect(r.ids, name).toEqual(g.greedy_ids_merged);
        expect(r.header).toContain(`adapters=demo/${name}*1`);
      }
    }
  });

  it('reproduces the weighted mix through the `adapters` field, and streams it', async () => {
    const adapters = mix.adapters.map((id, i) => ({ id, weight: mix.weights[i] as number }));
    const r = await greedyIds('stories260k', mix.prompt_ids, mix.n_generated, { adapters });
    expect(r.ids).toEqual(mix.greedy_ids_unmerged);
    expect(r.served.adapters).toEqual(adapters.map((a) => ({ id: `demo/${a.id}`, weight: a.weight })));

    const stream = await client.completions.create({
      model: 'stories260k',
      prompt: mix.prompt_ids,
      max_tokens: mix.n_generated,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
      return_token_ids: true,
      adapters,
    } as OpenAI.CompletionCreateParamsStreaming);
    const ids: number[] = [];
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      for (const c of chunk.choices) ids.push(...((c as WithIds).token_ids ?? []));
      usage ??= chunk.usage;
    }
    expect(ids).toEqual(mix.greedy_ids_unmerged);
    expect(usage).toMatchObject({ completion_tokens: mix.n_generated });
  });

  it('serves the alias `story-mix` unmerged, then merged once the merge service has fused the hot mix', async () => {
    const modes: string[] = [];
    let recipe: string | null = null;
    for (let i = 0; i < 40 && modes.at(-1) !== 'merged'; i++) {
      const r = await greedyIds('story-mix', mix.prompt_ids, mix.n_generated);
      expect(r.ids).toEqual(mix.greedy_ids_unmerged);
      expect(r.served.selection).toBe('alias');
      recipe ??= r.served.recipe;
      expect(r.served.recipe).toBe(recipe);
      modes.push(r.served.mode);
      if (r.served.mode !== 'merged' && i >= 2) await new Promise((ok) => setTimeout(ok, 250));
    }
    expect(modes[0]).toBe('unmerged');
    expect(modes.at(-1)).toBe('merged');
  });

  it('a signed webhook caches a merged artifact that the next request for that mix uses; a bad signature makes no job', async () => {
    const secret = /^GENERIC_WEBHOOK_SECRET=(.*)$/m.exec(readFileSync(join(stack.state, 'lora-edge.env'), 'utf8'))?.[1] as string;
    const base = client.baseURL.replace(/\/v1$/, '');
    const adapters = [
      { id: 'tiny-qv-r4', weight: 0.7 },
      { id: 'tiny-rslora-r8', weight: 0.3 },
    ];
    const body = JSON.stringify({
      type: 'merge',
      tenant: 'demo',
      merge: { base: 'stories260k', adapters, method: 'linear', output: 'fused' },
    });
    const post = async (sig: string) => {
      const ts = Math.floor(Date.now() / 1000);
      const mac = sig || (await signWebhook(secret, ts, body));
      return fetch(`${base}/webhooks/generic`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-loraedge-timestamp': String(ts), 'x-loraedge-signature': mac },
        body,
      });
    };
    const forged = await post(`sha256=${'0'.repeat(64)}`);
    expect(forged.status).toBe(401);
    const accepted = await post('');
    expect(accepted.status).toBe(202);
    const { job } = (await accepted.json()) as { job: { id: string } };
    for (let i = 0; i < 80; i++) {
      const r = await fetch(`${base}/v1/jobs/${job.id}`, { headers: { authorization: `Bearer ${client.apiKey}` } });
      const state = ((await r.json()) as { job: { state: string } }).job.state;
      if (state === 'succeeded') break;
      expect(state).not.toBe('failed');
      await new Promise((ok) => setTimeout(ok, 250));
    }
    // The first request for that mix is served by the cached artifact.
    const r = await greedyIds('stories260k', [1], 8, { adapters });
    expect(r.served.mode).toBe('merged');
    expect(r.served.recipe).toBe(job.id);
  });

  it('chats with the tokenizer model, whole and streamed', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me a story about a dragon' }];
    const whole = await client.chat.completions.create({
      model: 'tiny-random-chat',
      messages,
      max_tokens: 10,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const text = whole.choices[0]?.message.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    expect(whole.usage?.completion_tokens).toBe(10);
    expect((whole as unknown as { lora_edge: ServedBy }).lora_edge).toMatchObject({
      selection: 'retrieval',
      adapters: [{ id: 'demo/storyteller' }],
    });

    const stream = await client.chat.completions.create({
      model: 'tiny-random-chat',
      messages,
      max_tokens: 10,
      temperature: 0,
      ignore_eos: true,
      stream: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming);
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
    expect(streamed).toBe(text);
  });

  it('raises the SDK’s errors for unknown models and wrong keys', async () => {
    await expect(client.completions.create({ model: 'no-such-model', prompt: [1], max_tokens: 1 })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    const wrong = new OpenAI({
      apiKey: 'lek_0000000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
      baseURL: client.baseURL,
      maxRetries: 0,
    });
    await expect(wrong.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    await expect(
      client.chat.completions.create({ model: 'stories260k', messages: [{ role: 'user', content: 'hi' }] }),
    ).rejects.toMatchObject({ status: 400, code: 'model_has_no_tokenizer' });
  });
});
