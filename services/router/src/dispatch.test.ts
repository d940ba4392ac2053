import { describe, expect, it } from 'vitest';
import {
  type Completion,
  EdgeDispatcher,
  type InferBinding,
  type InferRequest,
  type Job,
  RoutingDispatcher,
  UnavailableGpuDispatcher,
} from './dispatch.ts';
import { type GpuBinding, GpuDispatcher, type SubmitResult } from './gpu.ts';

const request: InferRequest = {
  model: { digest: 'd'.repeat(64) },
  adapters: [],
  mode: 'merged',
  prompt_ids: [1],
  max_tokens: 1,
  temperature: 0,
  top_k: 0,
  top_p: 1,
  seed: 0,
  ignore_eos: false,
  stop_token_ids: [],
};
const completion = { ids: [5], finish_reason: 'length' } as Completion;

function infer(answer: Awaited<ReturnType<InferBinding['generate']>>): InferBinding {
  return {
    generate: async () => answer,
    stream: async () => (answer.ok ? { ok: true, body: new ReadableStream() } : answer),
  };
}

describe('dispatch', () => {
  it('runs edge jobs on infer and passes its refusals on with their status and field', async () => {
    const ok = new RoutingDispatcher(new EdgeDispatcher(infer({ ok: true, completion })), new UnavailableGpuDispatcher());
    expect(await ok.generate({ target: 'edge', request })).toBe(completion);
    const refused = new RoutingDispatcher(
      new EdgeDispatcher(
        infer({ ok: false, status: 400, error: { code: 'context_length_exceeded', message: 'too long', field: 'max_tokens' } }),
      ),
      new UnavailableGpuDispatcher(),
    );
    await expect(refused.generate({ target: 'edge', request })).rejects.toMatchObject({
      status: 400,
      code: 'context_length_exceeded',
      param: 'max_tokens',
    });
  });

  it('sends models over the edge budget, and non-edge models, to the GPU path', async () => {
    const overBudget = infer({ ok: false, status: 413, error: { code: 'edge_budget_exceeded', message: 'too big', route: 'gpu' } });
    let gpuJobs = 0;
    const gpu = {
      generate: async (j: Job) => {
        gpuJobs++;
        expect(j.target).toBe('gpu');
        return completion;
      },
      stream: async () => new ReadableStream<Uint8Array>(),
    };
    const d = new RoutingDispatcher(new EdgeDispatcher(overBudget), gpu);
    expect(await d.generate({ target: 'edge', request })).toBe(completion);
    expect(await d.generate({ target: 'gpu', request })).toBe(completion);
    expect(gpuJobs).toBe(2);
    const none = new RoutingDispatcher(new EdgeDispatcher(overBudget), new UnavailableGpuDispatcher());
    await expect(none.stream({ target: 'edge', request })).rejects.toMatchObject({ status: 503, code: 'gpu_path_unavailable' });
    // An engine fault is ours, not the caller's: 502.
    const broken = new EdgeDispatcher(infer({ ok: false, status: 500, error: { code: 'internal', message: 'boom' } }));
    await expect(broken.generate({ target: 'edge', request })).rejects.toMatchObject({ status: 502, code: 'internal' });
  });
});

describe('the GPU path dispatcher', () => {
  const sse = (...events: string[]) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (const e of events) c.enqueue(new TextEncoder().encode(e));
        c.close();
      },
    });
  const ids = (index: number, ...t: number[]) => `data: ${JSON.stringify({ index, ids: t })}\n\n`;
  const done = `data: ${JSON.stringify({ done: true, ids: [1, 2, 3], finish_reason: 'length' })}\n\n`;
  const job: Job = { target: 'gpu', request };

  function binding(first: SubmitResult, resumes: ReadableStream<Uint8Array>[] = []) {
    const calls: number[] = [];
    const b: GpuBinding = {
      submit: async () => first,
      resume: async (_id, from) => {
        calls.push(from);
        return resumes.shift() ?? sse();
      },
      status: async () => null,
      capacity: async () => ({ runners: 0, slots: 0, outstanding: 0, limit: 0, draining: 0 }),
    };
    return { b, calls };
  }

  it('reopens a lost job stream after the tokens received: every token once', async () => {
    const { b, calls } = binding({ ok: true, job: 'gen-00000001', body: sse(ids(0, 1, 2)) }, [sse(ids(2, 3), done)]);
    const d = new GpuDispatcher(b, 'tenant', 10);
    const text = await new Response(await d.stream(job)).text();
    expect(calls).toEqual([2]);
    const events = text.split('\n\n').filter(Boolean);
    expect(events).toEqual([ids(0, 1, 2).trim(), ids(2, 3).trim(), done.trim()]);
    expect(d.jobs).toEqual(['gen-00000001']);
    // The whole completion, through the same mended stream.
    const again = binding({ ok: true, job: 'gen-00000002', body: sse(ids(0, 1)) }, [sse(ids(1, 2, 3), done)]);
    expect((await new GpuDispatcher(again.b, 'tenant', 10).generate(job)).ids).toEqual([1, 2, 3]);
  });

  it('turns refusals and failures before the first token into HTTP errors (429 with Retry-After)', async () => {
    const busy = binding({ ok: false, status: 429, error: { code: 'gpu_busy', message: 'full' }, retry_after_s: 3 });
    await expect(new GpuDispatcher(busy.b, 't', 1).stream(job)).rejects.toMatchObject({
      status: 429,
      code: 'gpu_busy',
      headers: { 'retry-after': '3' },
    });
    const failed = binding({
      ok: true,
      job: 'gen-00000003',
      body: sse(`event: error\ndata: ${JSON.stringify({ code: 'model_too_large', message: 'no runner', status: 422 })}\n\n`),
    });
    await expect(new GpuDispatcher(failed.b, 't', 1).stream(job)).rejects.toMatchObject({ status: 422, code: 'model_too_large' });
  });

  it('gives up on a stream that keeps dropping', async () => {
    const { b, calls } = binding({ ok: true, job: 'gen-00000004', body: sse(ids(0, 1)) });
    const body = await new GpuDispatcher(b, 't', 1).stream(job);
    await expect(new Response(body).text()).rejects.toThrow();
    expect(calls.length).toBe(5);
  });
});
