/**
 * The GPU path as a Dispatcher: the job goes to the gateway Worker (services/gpu, GPU binding),
 * which admits it (or refuses: 429 with Retry-After, 503), enqueues it and hands back the job's
 * result stream in infer's SSE shape. The stream is held until its first event, so a job that
 * fails before any token (no runner can hold the model, the queue timed out) is an HTTP error,
 * not half a stream.
 */
import type { Completion, Dispatcher, InferRequest, Job } from './dispatch.ts';
import { ApiError } from './http/errors.ts';
import { type gpu, SseParser } from './lib.ts';

export type SubmitResult =
  | { ok: true; job: string; body: ReadableStream<Uint8Array> }
  | { ok: false; status: number; error: { code: string; message: string }; retry_after_s?: number };

/** The GpuRpc entrypoint as the router sees it through the service binding. */
export interface GpuBinding {
  submit(spec: gpu.GenerationSpec, tenant: string): Promise<SubmitResult>;
  status(id: string, tenant: string): Promise<unknown>;
  capacity(): Promise<gpu.Capacity>;
}

export const JOB_HEADER = 'x-lora-edge-job';

function statusOf(n: number): 400 | 404 | 422 | 429 | 502 | 503 {
  return n === 400 || n === 404 || n === 422 || n === 429 || n === 503 ? n : 502;
}

export function specOf(req: InferRequest, modelBytes: number): gpu.GenerationSpec {
  return {
    model: { digest: req.model.digest, bytes: modelBytes },
    adapters: req.adapters,
    mode: req.mode,
    prompt_ids: req.prompt_ids,
    max_tokens: req.max_tokens,
    temperature: req.temperature,
    top_k: req.top_k,
    top_p: req.top_p,
    seed: req.seed,
    ignore_eos: req.ignore_eos,
    stop_token_ids: req.stop_token_ids,
  };
}

/** Reads up to the first complete SSE event; an error event becomes the thrown HTTP error. */
async function holdFirstEvent(body: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  const reader = body.getReader();
  const parser = new SseParser();
  const head: Uint8Array[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new ApiError(502, 'gpu_job_failed', 'The GPU job ended without a result.');
    head.push(value);
    const events = parser.push(value);
    const first = events[0];
    if (!first) continue;
    if (first.event === 'error') {
      await reader.cancel().catch(() => {});
      const e = JSON.parse(first.data) as { code?: string; message?: string; status?: number };
      throw new ApiError(statusOf(e.status ?? 502), e.code ?? 'gpu_job_failed', e.message ?? 'The GPU job failed.', 'model');
    }
    break;
  }
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of head) controller.enqueue(c);
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await reader.cancel(reason);
    },
  });
}

export class GpuDispatcher implements Dispatcher {
  /** Jobs this request started (their ids go out in the x-lora-edge-job header). */
  readonly jobs: string[] = [];

  constructor(
    private readonly binding: GpuBinding,
    private readonly tenant: string,
    private readonly modelBytes: number,
  ) {}

  async stream(job: Job): Promise<ReadableStream<Uint8Array>> {
    const r = await this.binding.submit(specOf(job.request, this.modelBytes), this.tenant);
    if (!r.ok) {
      const headers = r.retry_after_s ? { 'retry-after': String(r.retry_after_s) } : undefined;
      throw new ApiError(statusOf(r.status), r.error.code, r.error.message, null, headers);
    }
    this.jobs.push(r.job);
    return holdFirstEvent(r.body);
  }

  async generate(job: Job): Promise<Completion> {
    const body = await this.stream(job);
    const reader = body.getReader();
    const parser = new SseParser();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new ApiError(502, 'gpu_job_failed', 'The GPU job ended without a result.');
      for (const ev of parser.push(value)) {
        const data = JSON.parse(ev.data) as Record<string, unknown>;
        if (ev.event === 'error')
          throw new ApiError(502, String(data.code ?? 'gpu_job_failed'), String(data.message ?? 'The GPU job failed.'));
        if (data.done === true) {
          await reader.cancel().catch(() => {});
          return data as unknown as Completion;
        }
      }
    }
  }
}
