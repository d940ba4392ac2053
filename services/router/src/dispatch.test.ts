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
