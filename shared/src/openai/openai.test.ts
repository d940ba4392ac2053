import { describe, expect, it } from 'vitest';
import { errorObject, paramPath } from './errors.ts';
import { ChatCompletionRequestSchema, CompletionRequestSchema } from './schemas.ts';
import { parseSse, SseParser, sseData } from './sse.ts';

describe('request schemas', () => {
  it('accepts every prompt shape vLLM accepts', () => {
    for (const prompt of ['hi', ['a', 'b'], [1, 2, 3], [[1], [2, 3]]]) {
      expect(CompletionRequestSchema.safeParse({ model: 'm', prompt }).success).toBe(true);
    }
    for (const prompt of [[], [1.5], [-1], [[]], [['a']], 3]) {
      expect(CompletionRequestSchema.safeParse({ model: 'm', prompt }).success).toBe(false);
    }
  });

  it('names the field of the first problem', () => {
    const r = CompletionRequestSchema.safeParse({ model: 'm', prompt: [1], adapters: [{ id: 'a', weight: 'x' }] });
    expect(r.success).toBe(false);
    expect(paramPath(r.error?.issues[0]?.path ?? [])).toBe('adapters[0].weight');
    const c = ChatCompletionRequestSchema.safeParse({ model: 'm', messages: [{ role: 'user', content: 5 }] });
    expect(paramPath(c.error?.issues[0]?.path ?? [])).toBe('messages[0].content');
  });

  it('refuses infinite weights and defaults missing ones to 1', () => {
    expect(
      CompletionRequestSchema.safeParse({ model: 'm', prompt: 'x', adapters: [{ id: 'a', weight: Number.POSITIVE_INFINITY }] }).success,
    ).toBe(false);
    expect(CompletionRequestSchema.parse({ model: 'm', prompt: 'x', adapters: [{ id: 'a' }] }).adapters).toEqual([{ id: 'a', weight: 1 }]);
  });

  it('drops fields it does not know, as OpenAI-compatible servers do', () => {
    expect(CompletionRequestSchema.parse({ model: 'm', prompt: 'x', something_new: 1 })).not.toHaveProperty('something_new');
  });
});

describe('errors', () => {
  it('shapes errors like OpenAI', () => {
    expect(errorObject(404, 'model_not_found', 'no', 'model')).toEqual({
      error: { message: 'no', type: 'not_found_error', code: 'model_not_found', param: 'model' },
    });
    expect(errorObject(401, 'invalid_api_key', 'x').error.type).toBe('authentication_error');
    expect(errorObject(400, 'x', 'x').error.type).toBe('invalid_request_error');
    expect(paramPath([])).toBeNull();
  });
});

describe('sse', () => {
  it('parses events however the bytes are cut', () => {
    const bytes = new TextEncoder().encode('data: {"a":1}\n\nevent: error\ndata: {"b":"é"}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\n');
    for (const cut of [1, 2, 3, 7, bytes.length]) {
      const p = new SseParser();
      const events = [];
      for (let i = 0; i < bytes.length; i += cut) events.push(...p.push(bytes.subarray(i, i + cut)));
      expect(events).toEqual([{ data: '{"a":1}' }, { event: 'error', data: '{"b":"é"}' }, { data: 'x\ny' }]);
    }
    expect(parseSse(new TextDecoder().decode(sseData({ done: true })))).toEqual([{ data: '{"done":true}' }]);
    expect(new TextDecoder().decode(sseData('[DONE]'))).toBe('data: [DONE]\n\n');
  });
});
