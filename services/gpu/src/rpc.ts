/**
 * The interface the router (and the merge service) call through a service binding:
 *
 *   services: [{ binding: "GPU", service: "lora-edge-gpu", entrypoint: "GpuRpc" }]
 *   const r = await env.GPU.submit(spec, tenant) // { ok: true, job, body: SSE stream } | { ok: false, status, error, retry_after_s }
 *   const v = await env.GPU.status(job, tenant)  // the job's record (attempts, tokens), or null
 *   const c = await env.GPU.capacity()           // runners, slots, outstanding, limit
 *
 * Admission comes first: past the pool's limit the answer is a refusal and nothing is enqueued.
 */

import { WorkerEntrypoint } from 'cloudflare:workers';
import { gpu } from '@lora-edge/shared';
import { type JobView, jobStub, type Work } from './job.ts';
import { poolStub } from './pool.ts';

function invalid(e: { issues: { path: PropertyKey[]; message: string }[] }): gpu.SubmitRefusal {
  const i = e.issues[0];
  return { ok: false, status: 400, error: { code: 'invalid_argument', message: `${i?.path.join('.')}: ${i?.message}` } };
}

export class GpuRpc extends WorkerEntrypoint<Env> implements gpu.GpuBinding {
  /** A generation: tokens stream back as they come. */
  async submit(spec: gpu.GenerationSpec, tenant: string): Promise<gpu.SubmitResult> {
    const parsed = gpu.GenerationSpecSchema.safeParse(spec);
    if (!parsed.success) return invalid(parsed.error);
    return this.start('gen', { kind: 'generate', spec: parsed.data }, tenant);
  }

  /** A merge / fuse / NF4 build too heavy for a Worker: the stream ends with `{done, artifact}` or an error. */
  async submitMerge(spec: gpu.MergeSpec, tenant: string): Promise<gpu.SubmitResult> {
    const parsed = gpu.MergeSpecSchema.safeParse(spec);
    if (!parsed.success) return invalid(parsed.error);
    return this.start('mrg', { kind: 'merge', spec: parsed.data }, tenant);
  }

  private async start(prefix: string, work: Work, tenant: string): Promise<gpu.SubmitResult> {
    const id = `${prefix}-${crypto.randomUUID()}`;
    const pool = poolStub(this.env);
    const verdict = await pool.admit(id);
    if (!verdict.ok)
      return {
        ok: false,
        status: verdict.status,
        error: { code: verdict.code, message: verdict.message },
        retry_after_s: verdict.retry_after_s,
      };
    const job = jobStub(this.env, id);
    await job.create(id, work, tenant);
    // Listen before enqueueing, so not even a fast runner's first tokens can be missed.
    const body = await job.stream(0);
    try {
      await this.env.GPU_QUEUE.send({ v: 1, job: id, attempt: 1 } satisfies gpu.QueueMessage);
    } catch (e) {
      await job.fail({ code: 'gpu_queue_unavailable', message: 'the GPU queue refused the job', status: 503 });
      await body.cancel().catch(() => {});
      console.error(JSON.stringify({ level: 'error', msg: 'enqueue failed', job: id, error: String(e) }));
      return {
        ok: false,
        status: 503,
        error: { code: 'gpu_queue_unavailable', message: 'The GPU queue is unavailable; retry shortly.' },
        retry_after_s: 5,
      };
    }
    return { ok: true, job: id, body };
  }

  /** A job's stream from token `from` (a reconnecting reader gets the tokens it missed, none twice). */
  async resume(id: string, from: number): Promise<ReadableStream<Uint8Array>> {
    return jobStub(this.env, id).stream(from);
  }

  async status(id: string, tenant: string): Promise<JobView | null> {
    if (!gpu.JOB_ID_RE.test(id)) return null;
    return jobStub(this.env, id).view(tenant);
  }

  async capacity(): Promise<gpu.Capacity> {
    return poolStub(this.env).capacity();
  }
}
