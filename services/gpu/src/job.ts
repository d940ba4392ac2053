/**
 * One Durable Object per generation job: the job's record (attempts, tokens), its lease watchdog
 * and the client's result stream. Runners post indexed tokens; the shared job rules (fencing by
 * attempt, dedup by index) make every token reach the stream exactly once and in order, however
 * many runners die on the way. A lost attempt is re-enqueued to resume after the tokens already
 * sent; the last allowed attempt failing sends the job to the dead-letter queue and the client an
 * error event.
 */

import { DurableObject } from 'cloudflare:workers';
import { gpu } from '@lora-edge/shared';
import { poolStub } from './pool.ts';
import { settings } from './settings.ts';

export type Work = { kind: 'generate'; spec: gpu.GenerationSpec } | { kind: 'merge'; spec: gpu.MergeSpec };

export interface StoredJob {
  record: gpu.JobRecord;
  work: Work;
  tenant: string;
}

export interface JobView {
  id: string;
  object: 'generation.job';
  status: gpu.JobStatus;
  created_at: string;
  updated_at: string;
  tokens: number;
  max_tokens: number;
  finish_reason: 'stop' | 'length' | null;
  error: { code: string; message: string } | null;
  /** Long work without tokens (merge builds): the current attempt's last report. */
  progress: gpu.Progress | null;
  /** When the first token reached the gateway. */
  first_token_at: string | null;
  attempts: (Omit<gpu.AttemptRecord, 'queued_at' | 'started_at' | 'ended_at'> & {
    queued_at: string;
    started_at: string | null;
    ended_at: string | null;
  })[];
}

export type DispatchInfo =
  | { ok: false; skip: 'missing' | 'final' | 'stale' }
  | { ok: true; job: gpu.RunnerJob; need: gpu.JobNeeds; queuedMs: number };

const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
const enc = new TextEncoder();
const sse = (data: unknown, event?: string) => enc.encode(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`);

interface Listener {
  writer: WritableStreamDefaultWriter<Uint8Array>;
}

export class GpuJob extends DurableObject<Env> {
  private readonly listeners = new Set<Listener>();

  /** The job as last saved; kept in memory while this object lives (storage stays the truth). */
  private cached: StoredJob | undefined;
  /** Ids already in storage. */
  private persisted = 0;

  /**
   * The record is stored without its ids; the ids go in append-only chunks (`ids:<from>`), so a
   * long generation writes each token once instead of rewriting a growing record on every post.
   */
  private load(): StoredJob | undefined {
    if (this.cached) return this.cached;
    const head = this.ctx.storage.kv.get<StoredJob>('job');
    if (!head) return undefined;
    const ids: number[] = [];
    for (const [, chunk] of this.ctx.storage.kv.list<number[]>({ prefix: 'ids:' })) ids.push(...chunk);
    head.record.ids = ids;
    this.persisted = ids.length;
    this.cached = head;
    return head;
  }

  private save(j: StoredJob): void {
    const ids = j.record.ids;
    if (ids.length > this.persisted) {
      // Zero-padded so the chunks list in token order.
      this.ctx.storage.kv.put(`ids:${String(this.persisted).padStart(10, '0')}`, ids.slice(this.persisted));
      this.persisted = ids.length;
    }
    this.ctx.storage.kv.put('job', { ...j, record: { ...j.record, ids: [] } });
    this.cached = j;
  }

  /** Creates the job (idempotent: a second call with the same id changes nothing). */
  async create(id: string, work: Work, tenant: string): Promise<void> {
    if (this.load()) return;
    const s = settings(this.env);
    const now = Date.now();
    const maxTokens = work.kind === 'generate' ? work.spec.max_tokens : 0;
    this.save({ record: gpu.newJob(id, work.kind, maxTokens, s.maxAttempts, now), work, tenant });
    await this.ctx.storage.setAlarm(now + s.leaseMs);
  }

  view(tenant?: string): JobView | null {
    const j = this.load();
    if (!j || (tenant !== undefined && j.tenant !== tenant)) return null;
    const r = j.record;
    return {
      id: r.id,
      object: 'generation.job',
      status: r.status,
      created_at: iso(r.created_at) as string,
      updated_at: iso(r.updated_at) as string,
      tokens: r.ids.length,
      max_tokens: r.max_tokens,
      finish_reason: r.finish?.finish_reason ?? null,
      error: r.error ? { code: r.error.code, message: r.error.message } : null,
      progress: r.progress ?? null,
      first_token_at: iso(r.first_token_at),
      attempts: r.attempts.map((a) => ({
        ...a,
        queued_at: iso(a.queued_at) as string,
        started_at: iso(a.started_at),
        ended_at: iso(a.ended_at),
      })),
    };
  }

  /** What the queue consumer needs to hand attempt `n` to a runner, unless that attempt is over. */
  dispatchInfo(attempt: number): DispatchInfo {
    const j = this.load();
    if (!j) return { ok: false, skip: 'missing' };
    const r = j.record;
    if (gpu.isFinal(r.status)) return { ok: false, skip: 'final' };
    const a = gpu.currentAttempt(r);
    if (a.n !== attempt || a.state !== 'queued') return { ok: false, skip: 'stale' };
    const w = j.work;
    const queuedMs = Date.now() - a.queued_at;
    if (w.kind === 'merge')
      return {
        ok: true,
        job: { kind: 'merge', id: r.id, attempt, spec: w.spec },
        need: { kind: 'merge', modelBytes: w.spec.bytes ?? 0, avoid: r.avoid },
        queuedMs,
      };
    return {
      ok: true,
      job: { kind: 'generate', id: r.id, attempt, spec: w.spec, resume_ids: r.ids.slice() },
      need: { kind: 'generate', modelBytes: w.spec.model.bytes ?? 0, avoid: r.avoid },
      queuedMs,
    };
  }

  /** A runner took attempt `n`. false: the attempt is over (the consumer tells the runner nothing; its posts will be refused). */
  async accepted(attempt: number, runner: string): Promise<boolean> {
    const j = this.load();
    if (!j) return false;
    const ok = gpu.markRunning(j.record, attempt, runner, Date.now());
    if (ok) {
      this.save(j);
      await poolStub(this.env).assign(j.record.id, runner);
    }
    // The runner's first post may have started the attempt already: that is the same placement.
    const a = gpu.currentAttempt(j.record);
    return ok || (a.n === attempt && a.runner === runner);
  }

  /** A runner's tokens (or keep-alive, or end). */
  async events(ev: gpu.JobEvents): Promise<gpu.EventsReply> {
    const j = this.load();
    if (!j) return { next: 0, current: false };
    const now = Date.now();
    const wasQueued = gpu.currentAttempt(j.record).state === 'queued';
    const out = gpu.applyEvents(j.record, ev, now);
    this.save(j);
    // Broadcast before any await: another post handled meanwhile must not overtake these tokens.
    if (out.appended.length) this.broadcast(sse({ index: out.from, ids: out.appended }));
    if (out.progress) this.broadcast(sse(out.progress, 'progress'));
    if (wasQueued && gpu.currentAttempt(j.record).state !== 'queued') await poolStub(this.env).assign(j.record.id, ev.runner);
    if (out.retry) await this.retry({ code: out.retry.code, message: out.retry.message });
    else if (out.ended) await this.ended(j);
    return { next: j.record.ids.length, current: out.current };
  }

  /** Fails the job for good (queue timeout, dead letter, no runner can hold the model). */
  async fail(error: { code: string; message: string; status: number }): Promise<void> {
    const j = this.load();
    if (!j || gpu.isFinal(j.record.status)) return;
    gpu.fail(j.record, error, Date.now());
    this.save(j);
    await this.ended(j);
  }

  /** The client went away before the end: stop the work (the runner learns it from its next post). */
  async cancel(): Promise<void> {
    const j = this.load();
    if (!j || gpu.isFinal(j.record.status)) return;
    gpu.fail(j.record, { code: 'cancelled', message: 'the client went away', status: 499 }, Date.now());
    j.record.status = 'cancelled';
    this.save(j);
    await this.ended(j);
  }

  /**
   * The job's stream from token index `from`: infer's SSE shape (`data: {"index","ids"}` per
   * batch of tokens, `data: {"done": true, …}` at the end, `event: error` on failure).
   */
  async stream(from = 0): Promise<ReadableStream<Uint8Array>> {
    const j = this.load();
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = writable.getWriter();
    if (!j) {
      void writer.write(sse({ code: 'job_not_found', message: 'no such job', status: 404 }, 'error')).then(() => writer.close());
      return readable;
    }
    const backlog = j.record.ids.slice(from);
    if (backlog.length) void writer.write(sse({ index: from, ids: backlog })).catch(() => {});
    if (gpu.isFinal(j.record.status)) {
      void writer.write(this.endEvent(j)).then(
        () => writer.close(),
        () => {},
      );
      return readable;
    }
    const l: Listener = { writer };
    this.listeners.add(l);
    // The reader cancelling (client gone) ends the job unless another listener still reads it.
    writer.closed.catch(async () => {
      this.listeners.delete(l);
      if (this.listeners.size === 0) await this.cancel();
    });
    return readable;
  }

  /** The lease watchdog: an attempt whose runner went silent is retried; a job waiting too long fails. */
  override async alarm(): Promise<void> {
    const j = this.load();
    if (!j || gpu.isFinal(j.record.status)) return;
    const s = settings(this.env);
    const now = Date.now();
    const a = gpu.currentAttempt(j.record);
    if (a.state === 'running' && now - j.record.last_seen > s.leaseMs) {
      const live = a.runner ? await poolStub(this.env).isLive(a.runner) : false;
      await this.retry({
        code: 'runner_lost',
        message: `runner ${a.runner} ${live ? 'stopped posting for this job' : 'stopped heartbeating'} (${now - j.record.last_seen} ms)`,
      });
    } else if (a.state === 'queued' && now - a.queued_at > s.queueTimeoutMs) {
      await this.fail({
        code: 'gpu_queue_timeout',
        message: `no GPU runner took the job within ${s.queueTimeoutMs / 1000} s`,
        status: 503,
      });
      return;
    }
    await this.ctx.storage.setAlarm(Date.now() + Math.max(100, Math.floor(s.leaseMs / 2)));
  }

  /** The current attempt is lost: enqueue the next (it resumes after the tokens sent), or dead-letter the job. */
  private async retry(why: { code: string; message: string }): Promise<void> {
    const j = this.load();
    if (!j || gpu.isFinal(j.record.status)) return;
    const now = Date.now();
    const lost = gpu.currentAttempt(j.record);
    const verdict = gpu.retryJob(j.record, why, now);
    this.save(j);
    console.log(
      JSON.stringify({
        level: 'warn',
        msg: 'attempt lost',
        job: j.record.id,
        attempt: lost.n,
        runner: lost.runner,
        reason: why.code,
        verdict,
      }),
    );
    if (verdict === 'retry') {
      const n = gpu.currentAttempt(j.record).n;
      await this.env.GPU_QUEUE.send({ v: 1, job: j.record.id, attempt: n } satisfies gpu.QueueMessage);
      return;
    }
    const reason = `${j.record.attempts.length} attempts failed; the last: ${why.code}: ${why.message}`;
    await this.env.GPU_DLQ.send({ v: 1, job: j.record.id, attempt: lost.n, reason });
    gpu.fail(j.record, { code: 'gpu_job_failed', message: `The GPU job failed: ${reason}`, status: 502 }, now);
    this.save(j);
    await this.ended(j);
  }

  private endEvent(j: StoredJob): Uint8Array {
    const r = j.record;
    if (r.status === 'done' && j.work.kind === 'merge')
      return sse({ done: true, artifact: r.finish?.artifact ?? null, job: r.id, attempts: r.attempts.length });
    if (r.status === 'done' && j.work.kind === 'generate') {
      const spec = j.work.spec;
      const prompt = spec.prompt_ids.length;
      return sse({
        done: true,
        ids: r.ids,
        finish_reason: r.finish?.finish_reason ?? 'length',
        usage: { prompt_tokens: prompt, completion_tokens: r.ids.length, total_tokens: prompt + r.ids.length },
        served: {
          model: spec.model.digest,
          mode: spec.mode,
          adapters: spec.adapters.map((a) => `${a.tenant}/${a.name}`),
          context: 0,
        },
        timing: r.finish?.timing ?? { load_ms: 0, prefill_ms: 0, decode_ms_per_token: 0 },
        job: r.id,
        attempts: r.attempts.length,
      });
    }
    const e = r.error ?? { code: 'gpu_job_failed', message: 'the job ended without a result', status: 502 };
    return sse({ code: e.code, message: e.message, status: e.status }, 'error');
  }

  private async ended(j: StoredJob): Promise<void> {
    await poolStub(this.env).release(j.record.id);
    await this.ctx.storage.deleteAlarm();
    const last = this.endEvent(j);
    const all = [...this.listeners];
    this.listeners.clear();
    for (const l of all) {
      l.writer.write(last).catch(() => {});
      l.writer.close().catch(() => {});
    }
  }

  /** Queued on each listener without waiting: a slow reader must not hold up the runner's post. */
  private broadcast(chunk: Uint8Array): void {
    for (const l of this.listeners) l.writer.write(chunk).catch(() => this.listeners.delete(l));
  }
}

export function jobStub(env: Env, id: string): DurableObjectStub<GpuJob> {
  return env.JOBS.get(env.JOBS.idFromName(id));
}
