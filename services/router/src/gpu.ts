/**
 * The GPU path as a Dispatcher: the job goes to the gateway Worker (services/gpu, GPU binding),
 * which admits it (or refuses: 429 with Retry-After, 503), enqueues it and hands back the job's
 * result stream in infer's SSE shape. The stream is held until its first event, so a job that
 * fails before any token (no runner can hold the model, the queue timed out) is an HTTP error,
 * not half a stream; a connection to the job lost midway is reopened after the tokens received.
 */
import type { Completion, Dispatcher, InferRequest, Job } from './dispatch.ts';
import { ApiError } from './http/errors.ts';
import { type gpu, SseParser } from './lib.ts';

/** The GpuRpc entrypoint as the router sees it through the service binding. */
export type GpuBinding = Pick<gpu.GpuBinding, 'submit' | 'resume' | 'status' | 'capacity'>;
export type SubmitResult = gpu.SubmitResult;

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

const MAX_RECONNECTS = 5;
const enc = new TextEncoder();

/**
 * The job's stream as the engine's SSE, held until its first event (an error event there becomes
 * the thrown HTTP error), and mended: if the connection to the job object ends without the job's
 * end (the object restarted, a connection dropped), it is reopened from the next token index, so
 * the client still gets every token once.
 */
async function jobStream(binding: GpuBinding, job: string, body: ReadableStream<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  let reader = body.getReader();
  let parser = new SseParser();
  let tokens = 0;
  let ended = false;
  let reconnects = 0;
  /** The next events, re-encoded; [] at the end. Reconnects when the connection ends early. */
  const next = async (): Promise<Uint8Array[]> => {
    for (;;) {
      if (ended) return [];
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await reader.read();
      } catch {
        r = { done: true, value: undefined };
      }
      if (r.done) {
        if (reconnects++ >= MAX_RECONNECTS) throw new ApiError(502, 'gpu_stream_lost', `The stream of GPU job ${job} was lost.`);
        reader = (await binding.resume(job, tokens)).getReader();
        parser = new SseParser();
        continue;
      }
      const out: Uint8Array[] = [];
      for (const ev of parser.push(r.value)) {
        const data = JSON.parse(ev.data) as { ids?: number[]; done?: boolean };
        if (ev.event === 'error' || data.done === true) ended = true;
        else if (Array.isArray(data.ids)) tokens += data.ids.length;
        out.push(enc.encode(`${ev.event ? `event: ${ev.event}\n` : ''}data: ${ev.data}\n\n`));
      }
      if (out.length) return out;
    }
  };
  const head = await next();
  const first = new SseParser().push(head[0] ?? new Uint8Array())[0];
  if (!first) throw new ApiError(502, 'gpu_job_failed', 'The GPU job ended without a result.');
  if (first.event === 'error') {
    await reader.cancel().catch(() => {});
    const e = JSON.parse(first.data) as { code?: string; message?: string; status?: number };
    throw new ApiError(statusOf(e.status ?? 502), e.code ?? 'gpu_job_failed', e.message ?? 'The GPU job failed.', 'model');
  }
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of head) controller.enqueue(c);
    },
    async pull(controller) {
      const chunks = await next();
      if (chunks.length === 0) controller.close();
      for (const c of chunks) controller.enqueue(c);
    },
    async cancel(reason) {
      ended = true;
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
    return jobStream(this.binding, r.job, r.body);
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
