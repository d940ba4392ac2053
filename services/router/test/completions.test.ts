/** /v1/completions through the real infer Worker: the golden continuations, every way of naming a mix, streaming, usage. */
import { beforeAll, describe, expect, it } from 'vitest';
import { SERVED_BY_HEADER } from '../src/routes/common.ts';
import {
  type Chunk,
  FIXTURE_NAMES,
  FIXTURES,
  greedy,
  json,
  post,
  putStories,
  REFS,
  reg,
  STORIES,
  sse,
  tenantWithFixtures,
} from './helpers.ts';

interface CompletionBody {
  object: string;
  model: string;
  choices: { index: number; text: string; token_ids: number[]; prompt_token_ids: number[]; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  lora_edge: {
    model: string;
    adapters: { id: string; weight: number }[];
    mode: string;
    recipe: string | null;
    selection: string;
    alias?: string;
  };
}

let t: { id: string; key: string };

beforeAll(async () => {
  await putStories();
  t = await tenantWithFixtures('golden');
});

describe('golden continuations', () => {
  it('the base model reproduces llama2.c for every reference prompt', async () => {
    for (const c of REFS.stories.cases) {
      const res = await post('/v1/completions', greedy(STORIES, c.prompt_ids, c.greedy_ids.length), t.key);
      const body = await json<CompletionBody>(res);
      expect(body.choices[0]?.token_ids).toEqual(c.greedy_ids);
      expect(body.choices[0]?.prompt_token_ids).toEqual(c.prompt_ids);
      expect(body.choices[0]?.finish_reason).toBe('length');
      expect(body.lora_edge).toMatchObject({ model: STORIES, adapters: [], mode: 'base', recipe: null, selection: 'none' });
      expect(res.headers.get(SERVED_BY_HEADER)).toBe('model=stories260k; mode=base; selection=none');
    }
  });

  it('each fixture adapter, named as base:adapter, reproduces PEFT', async () => {
    for (const name of FIXTURE_NAMES) {
      for (const g of FIXTURES[name].ref.generations) {
        const res = await post('/v1/completions', greedy(`${STORIES}:${name}`, g.prompt_ids, g.greedy_ids_merged.length), t.key);
        const body = await json<CompletionBody>(res);
        expect(body.choices[0]?.token_ids, name).toEqual(g.greedy_ids_merged);
        expect(body.lora_edge).toMatchObject({ adapters: [{ id: `${t.id}/${name}`, weight: 1 }], mode: 'unmerged', selection: 'model' });
        expect(body.lora_edge.recipe).toMatch(/^[0-9a-f]{64}$/);
        expect(res.headers.get(SERVED_BY_HEADER)).toContain(`adapters=${t.id}/${name}*1`);
      }
    }
  });

  it('an adapter named alone (as vLLM lists them) serves on its base', async () => {
    const g = FIXTURES['tiny-qv-r4'].ref.generations[0]!;
    const body = await json<CompletionBody>(await post('/v1/completions', greedy('tiny-qv-r4', g.prompt_ids, 32), t.key));
    expect(body.choices[0]?.token_ids).toEqual(g.greedy_ids_merged);
    expect(body.model).toBe('tiny-qv-r4');
  });

  it('the weighted three-adapter mix reproduces the reference, through `adapters` and through an alias', async () => {
    const { mix } = REFS;
    const adapters = mix.adapters.map((id, i) => ({ id, weight: mix.weights[i] }));
    const explicit = await json<CompletionBody>(
      await post('/v1/completions', greedy(STORIES, mix.prompt_ids, mix.n_generated, { adapters }), t.key),
    );
    expect(explicit.choices[0]?.token_ids).toEqual(mix.greedy_ids_unmerged);
    expect(explicit.lora_edge.selection).toBe('explicit');
    expect(explicit.lora_edge.adapters).toEqual(adapters.map((a) => ({ id: `${t.id}/${a.id}`, weight: a.weight })));

    await reg().putAlias({
      tenant: t.id,
      name: 'story-mix',
      routes: [{ weight: 1, mix: adapters.map((a) => ({ adapter: a.id, weight: a.weight! })) }],
    });
    const aliased = await json<CompletionBody>(await post('/v1/completions', greedy('story-mix', mix.prompt_ids, mix.n_generated), t.key));
    expect(aliased.choices[0]?.token_ids).toEqual(mix.greedy_ids_unmerged);
    expect(aliased.lora_edge).toMatchObject({ selection: 'alias', alias: 'story-mix', recipe: explicit.lora_edge.recipe });
  });

  it('`adapters: []` is the base alone; the same mix in any order is one recipe', async () => {
    const c = REFS.stories.cases[0]!;
    const base = await json<CompletionBody>(await post('/v1/completions', greedy(STORIES, c.prompt_ids, 8, { adapters: [] }), t.key));
    expect(base.choices[0]?.token_ids).toEqual(c.greedy_ids.slice(0, 8));
    expect(base.lora_edge).toMatchObject({ mode: 'base', selection: 'explicit' });
    const a = [
      { id: 'tiny-qv-r4', weight: 0.5 },
      { id: 'tiny-all-r8', weight: 0.5 },
    ];
    const one = await json<CompletionBody>(await post('/v1/completions', greedy(STORIES, [1], 4, { adapters: a }), t.key));
    const two = await json<CompletionBody>(await post('/v1/completions', greedy(STORIES, [1], 4, { adapters: [...a].reverse() }), t.key));
    expect(one.lora_edge.recipe).toBe(two.lora_edge.recipe);
  });
});

describe('request shapes', () => {
  it('several token-id prompts and n give one choice each, usage adds up', async () => {
    const [a, b] = REFS.stories.cases;
    const body = await json<CompletionBody>(
      await post('/v1/completions', greedy(STORIES, [a!.prompt_ids, b!.prompt_ids], 5, { n: 2 }), t.key),
    );
    expect(body.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(body.choices[0]?.token_ids).toEqual(a!.greedy_ids.slice(0, 5));
    expect(body.choices[1]?.token_ids).toEqual(a!.greedy_ids.slice(0, 5));
    expect(body.choices[3]?.token_ids).toEqual(b!.greedy_ids.slice(0, 5));
    expect(body.usage).toEqual({
      prompt_tokens: a!.prompt_ids.length + b!.prompt_ids.length,
      completion_tokens: 20,
      total_tokens: a!.prompt_ids.length + b!.prompt_ids.length + 20,
    });
  });

  it('without return_token_ids there are no ids; a model without tokenizer gives empty text', async () => {
    const body = await json<CompletionBody>(
      await post('/v1/completions', { model: STORIES, prompt: [1], max_tokens: 3, temperature: 0 }, t.key),
    );
    expect(body.choices[0]).toEqual({ index: 0, text: '', logprobs: null, finish_reason: expect.any(String) });
    expect(body.object).toBe('text_completion');
  });

  it('the same seed gives the same sampled tokens', async () => {
    const req = {
      model: `${STORIES}:tiny-all-r8`,
      prompt: [1],
      max_tokens: 12,
      temperature: 1,
      top_k: 40,
      seed: 7,
      return_token_ids: true,
      ignore_eos: true,
    };
    const a = await json<CompletionBody>(await post('/v1/completions', req, t.key));
    const b = await json<CompletionBody>(await post('/v1/completions', req, t.key));
    expect(a.choices[0]?.token_ids).toEqual(b.choices[0]?.token_ids);
  });
});

describe('streaming', () => {
  it('streams OpenAI chunks with each chunk’s new ids, a finish reason, usage and [DONE]', async () => {
    const c = REFS.stories.cases[1]!;
    const res = await post(
      '/v1/completions',
      greedy(STORIES, c.prompt_ids, 10, { stream: true, stream_options: { include_usage: true } }),
      t.key,
    );
    expect(res.headers.get(SERVED_BY_HEADER)).toContain('mode=base');
    const events = await sse(res);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.filter((e): e is Chunk => e !== '[DONE]');
    const ids = chunks.flatMap((ch) => ch.choices.flatMap((x) => x.token_ids ?? []));
    expect(ids).toEqual(c.greedy_ids.slice(0, 10));
    expect(chunks[0]?.lora_edge).toMatchObject({ mode: 'base' });
    const finals = chunks.filter((ch) => ch.choices[0]?.finish_reason);
    expect(finals).toHaveLength(1);
    expect(finals[0]?.choices[0]?.finish_reason).toBe('length');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: c.prompt_ids.length, completion_tokens: 10 } });
  });

  it('streams a mix and multiple choices in turn', async () => {
    const { mix } = REFS;
    const adapters = mix.adapters.map((id, i) => ({ id, weight: mix.weights[i] }));
    const events = await sse(
      await post('/v1/completions', greedy(STORIES, [mix.prompt_ids, mix.prompt_ids], 32, { adapters, stream: true }), t.key),
    );
    const chunks = events.filter((e): e is Chunk => e !== '[DONE]');
    for (const index of [0, 1]) {
      const ids = chunks.flatMap((ch) => ch.choices.filter((x) => x.index === index).flatMap((x) => x.token_ids ?? []));
      expect(ids).toEqual(mix.greedy_ids_unmerged);
    }
  });
});
