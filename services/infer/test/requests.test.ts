/**
 * The Worker's contract around the generation: streaming, seeded sampling, and refusals that
 * leave the isolate healthy for the next request.
 */

import { exports } from 'cloudflare:workers';
import { serializeSafetensors } from '@lora-edge/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import storiesRef from '../../../fixtures/models/stories260k/reference.json';
import { putAdapter, putModel, seedAdapter, seedStories } from './seed.ts';

let model: string;
let qv: { tenant: string; name: string; digest: string };
const prompt = storiesRef.cases[1]!.prompt_ids;
const greedy = storiesRef.cases[1]!.greedy_ids;

beforeAll(async () => {
  model = await seedStories();
  qv = await seedAdapter('tiny-qv-r4');
});

const post = (body: unknown) =>
  exports.default.fetch('http://infer.local/v1/generate', {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });

async function sse(res: Response): Promise<{ ids: number[]; done?: Record<string, unknown>; error?: Record<string, unknown> }> {
  const text = await res.text();
  const out: { ids: number[]; done?: Record<string, unknown>; error?: Record<string, unknown> } = { ids: [] };
  for (const block of text.split('\n\n').filter(Boolean)) {
    const data = JSON.parse(block.slice(block.indexOf('data: ') + 6)) as Record<string, unknown>;
    if (block.startsWith('event: error')) out.error = data;
    else if (data.done) out.done = data;
    else out.ids.push(...(data.ids as number[]));
  }
  return out;
}

describe('HTTP route', () => {
  it('streams the same tokens as the JSON answer, one event per token', async () => {
    const req = { model: { digest: model }, prompt_ids: prompt, max_tokens: 12, ignore_eos: true };
    const json = (await (await post(req)).json()) as { ids: number[]; usage: { completion_tokens: number }; served: { mode: string } };
    expect(json.ids).toEqual(greedy.slice(0, 12));
    expect(json.served.mode).toBe('base');
    const res = await post({ ...req, stream: true });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const s = await sse(res);
    expect(s.ids).toEqual(json.ids);
    expect(s.done).toMatchObject({ finish_reason: 'length', usage: { prompt_tokens: prompt.length, completion_tokens: 12 } });
  });

  it('RPC stream gives the same events', async () => {
    const r = await exports.InferRpc.stream({ model: { digest: model }, prompt_ids: prompt, max_tokens: 5, ignore_eos: true });
    expect(r.ok).toBe(true);
    if (r.ok) expect((await sse(new Response(r.body))).ids).toEqual(greedy.slice(0, 5));
  });
});

describe('sampling', () => {
  const run = async (extra: Record<string, unknown>) => {
    const r = await exports.InferRpc.generate({ model: { digest: model }, prompt_ids: prompt, max_tokens: 24, ignore_eos: true, ...extra });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    return r.completion.ids;
  };
  it('a seed fixes the tokens; another seed gives others; top_k 1 is greedy', async () => {
    const a = await run({ temperature: 1.2, top_k: 40, top_p: 0.95, seed: 7 });
    expect(await run({ temperature: 1.2, top_k: 40, top_p: 0.95, seed: 7 })).toEqual(a);
    expect(await run({ temperature: 1.2, top_k: 40, top_p: 0.95, seed: 8 })).not.toEqual(a);
    expect(await run({ temperature: 1, top_k: 1, seed: 3 })).toEqual(greedy.slice(0, 24));
  });
  it('stops at EOS unless ignore_eos', async () => {
    // The first id of the greedy run that did not occur before it, as a stop id.
    const at = greedy.findIndex((id, i) => i >= 2 && !greedy.slice(0, i).includes(id));
    const r = await exports.InferRpc.generate({
      model: { digest: model },
      prompt_ids: prompt,
      max_tokens: 24,
      stop_token_ids: [greedy[at] as number],
    });
    expect(r.ok && r.completion).toMatchObject({ ids: greedy.slice(0, at + 1), finish_reason: 'stop' });
  });
});

describe('refusals leave the isolate healthy', () => {
  it('a model over the edge budget: 413 edge_budget_exceeded with the numbers, route gpu', async () => {
    // TinyLlama's shape; the budget is checked from the config before any weight is read.
    const config = {
      model_type: 'llama',
      hidden_size: 2048,
      intermediate_size: 5632,
      num_hidden_layers: 22,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      vocab_size: 32000,
      max_position_embeddings: 2048,
    };
    const big = await putModel(config, serializeSafetensors([{ name: 'x', dtype: 'F32', shape: [1], data: new Uint8Array(4) }]));
    const r = await exports.InferRpc.generate({ model: { digest: big }, prompt_ids: [1], max_tokens: 1 });
    expect(r).toMatchObject({ ok: false, status: 413, error: { code: 'edge_budget_exceeded', route: 'gpu', budget_bytes: 128 * 2 ** 20 } });
    if (!r.ok) expect(r.error.required_bytes as number).toBeGreaterThan(4e9);
    const res = await post({ model: { digest: big }, prompt_ids: [1] });
    expect(res.status).toBe(413);
  });

  it('an adapter whose factors do not fit the model: 422 naming the module', async () => {
    const bad = serializeSafetensors([
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
        dtype: 'F32',
        shape: [4, 32],
        data: new Uint8Array(4 * 32 * 4),
      },
      {
        name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
        dtype: 'F32',
        shape: [64, 4],
        data: new Uint8Array(64 * 4 * 4),
      },
    ]);
    const cfg = { peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'], base_model_name_or_path: 'x' };
    const a = await putAdapter('t1', 'wrong-shape', cfg, bad);
    const r = await exports.InferRpc.generate({ model: { digest: model }, prompt_ids: [1], adapters: [{ ...a, weight: 1 }] });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.status).toBe(422);
      expect(String(r.error.message)).toContain('q_proj');
    }
  });

  it('malformed inputs: 400 with the field', async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [{ prompt_ids: [1, 600] }, 400, 'invalid_argument'],
      [{ prompt_ids: [] }, 400, 'invalid_argument'],
      [{ prompt_ids: [1], max_tokens: 2000 }, 400, 'invalid_argument'],
      [{ prompt_ids: [1], max_tokens: 600 }, 400, 'context_length_exceeded'],
      [{ prompt_ids: Array(500).fill(1), max_tokens: 100 }, 400, 'context_length_exceeded'],
      [{ prompt_ids: [1], temperature: -1 }, 400, 'invalid_argument'],
      [{ prompt_ids: [1], adapters: [{ ...qv, weight: Number.NaN }] }, 400, 'invalid_argument'],
      [{ prompt_ids: [1], model: { digest: 'f'.repeat(64) } }, 404, 'not_found'],
      [{ prompt_ids: [1], model: { digest: '../x' } }, 400, 'invalid_argument'],
    ];
    for (const [extra, status, code] of cases) {
      const r = await exports.InferRpc.generate({ model: { digest: model }, prompt_ids: [1], ...extra } as never);
      expect(r, JSON.stringify(extra)).toMatchObject({ ok: false, status, error: { code } });
    }
    const res = await exports.default.fetch('http://infer.local/v1/generate', { method: 'POST', body: '{nope' });
    expect(res.status).toBe(400);
    // The same isolate answers the next good request, from the model it already holds.
    const ok = await exports.InferRpc.generate({
      model: { digest: model },
      prompt_ids: prompt,
      max_tokens: 8,
      adapters: [{ ...qv, weight: 1 }],
      ignore_eos: true,
    });
    expect(ok.ok).toBe(true);
    const stats = await exports.InferRpc.stats();
    expect(stats.models.filter((m) => m.digest === model)).toHaveLength(1);
    console.log(
      `stories260k in workerd: wasm heap ${(stats.wasm_heap_bytes / 2 ** 20).toFixed(1)} MiB; footprint ${JSON.stringify(stats.models)}`,
    );
  });
});
