/** Refusals: OpenAI's error object, the right status, the offending field named. */
import { beforeAll, describe, expect, it } from 'vitest';
import { call, get, greedy, newTenant, post, putAdapter, putStories, STORIES } from './helpers.ts';

let t: { id: string; key: string };

beforeAll(async () => {
  const base = await putStories();
  t = await newTenant('errors');
  await putAdapter(t.id, 'qv', 'tiny-qv-r4');
  await putAdapter(t.id, 'elsewhere', 'tiny-all-r8', { base: 'other-base' });
  expect(base.id).toBe(STORIES);
});

async function error(res: Response, status: number) {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  const body = JSON.parse(text) as { error: { message: string; type: string; code: string | null; param: string | null } };
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(body.error.message.length).toBeGreaterThan(5);
  return body.error;
}

describe('errors', () => {
  it('401 without a key or with a wrong one', async () => {
    expect(await error(await post('/v1/completions', greedy(STORIES, [1], 1)), 401)).toMatchObject({
      code: 'missing_api_key',
      type: 'authentication_error',
    });
    expect(
      await error(
        await post('/v1/completions', greedy(STORIES, [1], 1), 'lek_0000000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'),
        401,
      ),
    ).toMatchObject({
      code: 'invalid_api_key',
    });
    expect((await get('/v1/models', 'nonsense')).status).toBe(401);
  });

  it('400 for malformed JSON and for each invalid field, naming it', async () => {
    expect(await error(await post('/v1/completions', '{"model":', t.key), 400)).toMatchObject({
      code: 'invalid_json',
      type: 'invalid_request_error',
    });
    expect(await error(await post('/v1/completions', { prompt: [1] }, t.key), 400)).toMatchObject({ param: 'model' });
    expect(await error(await post('/v1/completions', { model: STORIES, prompt: [1.5] }, t.key), 400)).toMatchObject({ param: 'prompt' });
    expect(await error(await post('/v1/completions', { ...greedy(STORIES, [1], 1), temperature: -1 }, t.key), 400)).toMatchObject({
      param: 'temperature',
    });
    expect(await error(await post('/v1/completions', { ...greedy(STORIES, [1], 1), max_tokens: 0 }, t.key), 400)).toMatchObject({
      param: 'max_tokens',
    });
    expect(
      await error(await post('/v1/completions', { ...greedy(STORIES, [1], 1), adapters: [{ id: 'qv', weight: 'x' }] }, t.key), 400),
    ).toMatchObject({
      param: 'adapters[0].weight',
    });
    expect(
      await error(await post('/v1/chat/completions', { model: STORIES, messages: [{ role: 'user', content: 3 }] }, t.key), 400),
    ).toMatchObject({
      param: 'messages[0].content',
    });
    expect(await error(await post('/v1/completions', { ...greedy(STORIES, [1], 1), echo: true }, t.key), 400)).toMatchObject({
      code: 'unsupported_parameter',
      param: 'echo',
    });
  });

  it('refuses tool calling and JSON output by name rather than ignoring them', async () => {
    const chat = { model: STORIES, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 };
    const tool = { type: 'function', function: { name: 'f', parameters: {} } };
    for (const [extra, param] of [
      [{ tools: [tool] }, 'tools'],
      [{ tool_choice: 'required' }, 'tool_choice'],
      [{ functions: [{ name: 'f' }] }, 'functions'],
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } }, 'response_format'],
    ] as const) {
      expect(await error(await post('/v1/chat/completions', { ...chat, ...extra }, t.key), 400)).toMatchObject({
        code: 'unsupported_parameter',
        param,
      });
    }
  });

  it('400 for weights that are not finite or sum to zero', async () => {
    const zero = [
      { id: 'qv', weight: 1 },
      { id: 'qv', weight: -1 },
    ];
    expect(await error(await post('/v1/completions', greedy(STORIES, [1], 1, { adapters: zero }), t.key), 400)).toMatchObject({
      code: 'adapter_weight_invalid',
      param: 'adapters',
    });
    // JSON has no Infinity, but 1e999 parses to it.
    const res = await post('/v1/completions', `{"model":"${STORIES}","prompt":[1],"adapters":[{"id":"qv","weight":1e999}]}`, t.key);
    expect(await error(res, 400)).toMatchObject({ param: 'adapters[0].weight' });
  });

  it('404 naming the unknown model or adapter', async () => {
    const m = await error(await post('/v1/completions', greedy('no-such-model', [1], 1), t.key), 404);
    expect(m).toMatchObject({ code: 'model_not_found', param: 'model' });
    expect(m.message).toContain('no-such-model');
    const a = await error(await post('/v1/completions', greedy(`${STORIES}:nope`, [1], 1), t.key), 404);
    expect(a).toMatchObject({ code: 'adapter_not_found', param: 'model' });
    expect(a.message).toContain('nope');
    const b = await error(await post('/v1/completions', greedy('ghost-base:qv', [1], 1), t.key), 404);
    expect(b.message).toContain('ghost-base');
    const c = await error(await post('/v1/completions', greedy(STORIES, [1], 1, { adapters: [{ id: 'qv' }, { id: 'zzz' }] }), t.key), 404);
    expect(c).toMatchObject({ code: 'adapter_not_found', param: 'adapters[1].id' });
    expect(await error(await get('/v1/models/nothing-here', t.key), 404)).toMatchObject({ code: 'model_not_found' });
  });

  it('refuses an adapter made for another base, and adapters with an alias', async () => {
    expect(await error(await post('/v1/completions', greedy(`${STORIES}:elsewhere`, [1], 1), t.key), 400)).toMatchObject({
      code: 'adapter_base_mismatch',
    });
    expect(await error(await post('/v1/completions', greedy(`${STORIES}:qv`, [1], 1, { adapters: [] }), t.key), 400)).toMatchObject({
      param: 'adapters',
    });
  });

  it('400 model_has_no_tokenizer for text on a model that has none', async () => {
    expect(await error(await post('/v1/completions', { model: STORIES, prompt: 'Once upon a time' }, t.key), 400)).toMatchObject({
      code: 'model_has_no_tokenizer',
      param: 'prompt',
    });
    expect(
      await error(await post('/v1/chat/completions', { model: STORIES, messages: [{ role: 'user', content: 'hi' }] }, t.key), 400),
    ).toMatchObject({
      code: 'model_has_no_tokenizer',
    });
    expect(await error(await post('/v1/completions', { ...greedy(STORIES, [1], 4), stop: ['x'] }, t.key), 400)).toMatchObject({
      code: 'model_has_no_tokenizer',
      param: 'stop',
    });
  });

  it('passes the engine’s refusals on with their field', async () => {
    const e = await error(await post('/v1/completions', greedy(STORIES, [1, 2, 3], 100000), t.key), 400);
    expect(e.param).toBe('max_tokens');
  });

  it('503 gpu_unavailable with Retry-After for a model beyond the edge while no GPU runner serves', async () => {
    const { reg } = await import('./helpers.ts');
    const stories = await reg().getModel(STORIES);
    await reg().putModel({ ...stories!, id: 'big-model', edge_eligible: false });
    const res = await post('/v1/completions', greedy('big-model', [1], 1), t.key);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    const e = await error(res, 503);
    expect(e).toMatchObject({ code: 'gpu_unavailable', type: 'service_unavailable_error' });
    const listed = (await (await call('/v1/models/big-model', { headers: { authorization: `Bearer ${t.key}` } })).json()) as {
      lora_edge: { target: string };
    };
    expect(listed.lora_edge.target).toBe('gpu');
  });

  it('shows GPU jobs only to their tenant, and passes the runner API through to the gateway', async () => {
    expect(
      await error(await call('/v1/generations/gen-00000000-none', { headers: { authorization: `Bearer ${t.key}` } }), 404),
    ).toMatchObject({
      code: 'job_not_found',
    });
    const runners = await call('/runners/capacity', { headers: { authorization: 'Bearer wrong' } });
    expect(runners.status).toBe(401);
    const ok = await call('/runners/capacity', { headers: { authorization: 'Bearer test-runner-token' } });
    expect(await ok.json()).toMatchObject({ runners: 0, slots: 0, outstanding: 0 });
  });

  it('answers unknown routes with a machine-readable 404', async () => {
    expect(await error(await call('/v2/nothing'), 404)).toMatchObject({ code: 'not_found' });
  });
});
