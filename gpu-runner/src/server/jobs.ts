/**
 * The job table: admission (draining, kind, model size, slots + a small local queue), one run per
 * (id, attempt), the per-kind handlers, a gate that admits runs by free slots and KV-cache bytes,
 * and each attempt's events poster. A job ends when the gateway has acknowledged its end, or
 * when it was fenced off, abandoned (gateway unreachable past the lease) or cancelled.
 */
import type { gpu, ModelConfig } from '@lora-edge/shared';
import type { RequestHandle } from '../engine/engine.ts';
import { toJobError } from './errors.ts';
import type { GatewayClient } from './gateway.ts';
import type { Logger } from './log.ts';
import type { AdapterStore, ModelLease, ModelStore } from './models.ts';
import { Poster, type PosterEnd } from './poster.ts';

export type JobKind = gpu.RunnerJob['kind'];
export type JobState = 'loading' | 'waiting' | 'running' | 'ending' | 'ended';

export interface Refusal {
  status: 400 | 401 | 422 | 503;
  error: { code: (typeof gpu.JobRefusalCodes)[number]; message: string; retryable: boolean };
}

export type Admission = { accepted: true; id: string; attempt: number } | { accepted: false; refusal: Refusal };

/** KV-cache bytes a sequence of `tokens` positions holds (f32 K and V per layer, as the Engine allocates). */
export function kvBytesFor(c: ModelConfig, tokens: number): number {
  return c.numLayers * c.numKvHeads * c.headDim * tokens * 4 * 2;
}

/** Runs admitted by free slots and KV bytes, first come first served; one always runs (nothing starves). */
export class Gate {
  running = 0;
  kvUsed = 0;
  private readonly queue: { need: number; resolve: (admitted: boolean) => void }[] = [];

  constructor(
    readonly slots: number,
    readonly kvTotal: number,
  ) {}

  private fits(need: number): boolean {
    return this.running < this.slots && (this.running === 0 || this.kvUsed + need <= this.kvTotal);
  }

  /** `admitted` resolves true once in (then `leave` once), or false when abandoned before that. */
  enter(need: number): { admitted: Promise<boolean>; abandon(): void } {
    let entry: { need: number; resolve: (admitted: boolean) => void } | undefined;
    const admitted = new Promise<boolean>((resolve) => {
      entry = { need, resolve };
      this.queue.push(entry);
    });
    this.pump();
    return {
      admitted,
      abandon: () => {
        const i = entry ? this.queue.indexOf(entry) : -1;
        if (i < 0) return;
        this.queue.splice(i, 1);
        entry?.resolve(false);
        this.pump();
      },
    };
  }

  leave(need: number): void {
    this.running--;
    this.kvUsed -= need;
    this.pump();
  }

  private pump(): void {
    for (let head = this.queue[0]; head && this.fits(head.need); head = this.queue[0]) {
      this.queue.shift();
      this.running++;
      this.kvUsed += head.need;
      head.resolve(true);
    }
  }
}

/** One attempt of one job as this runner runs it. */
export class Job {
  state: JobState = 'loading';
  /** Job-level ids: the resumed ones, then the generated ones (index = position). */
  readonly ids: number[] = [];
  readonly poster: Poster;
  /** Set when the attempt must stop without a normal end (fenced, abandoned, drained). */
  cancelled: string | undefined;
  handle: RequestHandle | undefined;
  private onCancel: (() => void)[] = [];
  readonly acceptedAt = Date.now();
  readonly ended: Promise<PosterEnd>;

  constructor(
    readonly job: gpu.RunnerJob,
    readonly runner: string,
    gateway: GatewayClient,
    timing: () => { heartbeatMs: number; leaseMs: number },
    readonly log: Logger,
  ) {
    if (job.kind === 'generate') this.ids.push(...job.resume_ids);
    this.poster = new Poster({
      runner,
      attempt: job.attempt,
      ids: this.ids,
      start: this.ids.length,
      send: (ev, timeoutMs) => gateway.events(job.id, ev, timeoutMs),
      timing,
      onRetry: (why, n) => log.log('warn', 'events post failed; retrying', { why, failures: n }),
    });
    this.ended = this.poster.finished.then((end) => {
      if (end !== 'delivered') this.cancel(end);
      this.state = 'ended';
      return end;
    });
  }

  get key(): string {
    return jobKey(this.job.id, this.job.attempt);
  }

  /** Registers what stops this attempt's work (the engine sequence, a gate wait). */
  onCancelled(fn: () => void): void {
    if (this.cancelled) fn();
    else this.onCancel.push(fn);
  }

  cancel(why: string): void {
    if (this.cancelled) return;
    this.cancelled = why;
    for (const fn of this.onCancel.splice(0)) fn();
  }

  /** Ends the attempt with an error the gateway acts on (retryable: it resumes elsewhere after our ids). */
  abort(error: gpu.JobError): void {
    this.cancel(error.code);
    this.state = 'ending';
    this.poster.close({ error });
  }

  status(): Record<string, unknown> {
    return {
      id: this.job.id,
      attempt: this.job.attempt,
      kind: this.job.kind,
      state: this.state,
      tokens: this.ids.length,
      acked: this.poster.acked,
      cancelled: this.cancelled ?? null,
    };
  }
}

export const jobKey = (id: string, attempt: number): string => `${id}#${attempt}`;

export interface JobContext {
  models: ModelStore;
  adapters: AdapterStore;
  gate: Gate;
}

/** Runs one admitted job to its end: sets the poster's end (done or error), or returns once cancelled. */
export type JobHandler = (job: Job, ctx: JobContext) => Promise<void>;

export interface JobTableOptions {
  runner: string;
  gateway: GatewayClient;
  models: ModelStore;
  adapters: AdapterStore;
  slots: number;
  /** Accepted jobs beyond the slots that may wait here. */
  queueLimit: number;
  kvBytes: number;
  adapterBytes: number;
  maxModelBytes: number;
  timing: () => { heartbeatMs: number; leaseMs: number };
  log: Logger;
  handlers: Partial<Record<JobKind, JobHandler>>;
}

/** (id, attempt) keys of ended jobs remembered, so a repeated POST is acknowledged and not run again. */
const REMEMBER_ENDED = 4096;

export class JobTable {
  readonly gate: Gate;
  private readonly live = new Map<string, Job>();
  private readonly ended = new Set<string>();
  draining = false;

  constructor(readonly o: JobTableOptions) {
    this.gate = new Gate(o.slots, o.kvBytes);
  }

  get jobs(): Job[] {
    return [...this.live.values()];
  }

  load(): gpu.RunnerLoad {
    let queued = 0;
    for (const j of this.live.values()) if (j.state === 'loading' || j.state === 'waiting') queued++;
    let stacks = 0;
    for (const e of this.o.models.engines) stacks += e.stacks.bytes;
    return {
      active: this.gate.running,
      queued,
      kv_free_bytes: Math.max(0, this.o.kvBytes - this.gate.kvUsed),
      kv_total_bytes: this.o.kvBytes,
      adapter_free_bytes: Math.max(0, this.o.adapterBytes - stacks),
      draining: this.draining,
    };
  }

  /** Admission of a parsed job: accepted jobs start at once (the returned promise does not wait for them). */
  submit(job: gpu.RunnerJob): Admission {
    const refuse = (status: Refusal['status'], code: Refusal['error']['code'], message: string, retryable: boolean): Admission => ({
      accepted: false,
      refusal: { status, error: { code, message, retryable } },
    });
    const key = jobKey(job.id, job.attempt);
    // A repeat (the gateway's POST retried after a lost reply): acknowledged, never run twice.
    if (this.live.has(key) || this.ended.has(key)) return { accepted: true, id: job.id, attempt: job.attempt };
    if (this.draining) return refuse(503, 'runner_draining', 'this runner is draining: it takes no new jobs', true);
    const handler = this.o.handlers[job.kind];
    if (!handler) return refuse(422, 'kind_unsupported', `this runner does not run ${job.kind} jobs`, true);
    if (job.kind === 'generate' && (job.spec.model.bytes ?? 0) > this.o.maxModelBytes)
      return refuse(
        422,
        'model_too_large',
        `the model has ${job.spec.model.bytes} bytes; this runner holds ${this.o.maxModelBytes} at most`,
        true,
      );
    if (job.kind === 'merge' && (job.spec.bytes ?? 0) > this.o.maxModelBytes)
      return refuse(
        422,
        'model_too_large',
        `the build holds ${job.spec.bytes} bytes; this runner holds ${this.o.maxModelBytes} at most`,
        true,
      );
    let waiting = 0;
    for (const j of this.live.values()) if (j.state !== 'ending' && j.state !== 'ended') waiting++;
    if (waiting >= this.o.slots + this.o.queueLimit)
      return refuse(503, 'runner_busy', `${waiting} jobs here already (${this.o.slots} slots + ${this.o.queueLimit} queued)`, true);
    // An older attempt of the same job still here was fenced off by this one: stop it now.
    for (const j of this.live.values())
      if (j.job.id === job.id && j.job.attempt < job.attempt) {
        j.cancel('superseded');
        j.poster.stop();
      }

    const log = this.o.log.child({ job: job.id, attempt: job.attempt });
    const j = new Job(job, this.o.runner, this.o.gateway, this.o.timing, log);
    this.live.set(key, j);
    log.log('info', 'job accepted', { kind: job.kind, resume: j.ids.length });
    const ctx: JobContext = { models: this.o.models, adapters: this.o.adapters, gate: this.gate };
    handler(j, ctx).catch((e) => {
      if (!j.cancelled) j.abort(toJobError(e));
    });
    void j.ended.then((end) => {
      this.live.delete(key);
      this.ended.add(key);
      if (this.ended.size > REMEMBER_ENDED) this.ended.delete(this.ended.values().next().value as string);
      log.log(end === 'delivered' ? 'info' : 'warn', 'job ended', { end, tokens: j.ids.length, posts: j.poster.posts });
    });
    return { accepted: true, id: job.id, attempt: job.attempt };
  }

  /** Resolves once every live job has ended. */
  async idle(): Promise<void> {
    while (this.live.size) await Promise.all([...this.live.values()].map((j) => j.ended));
  }

  /**
   * Graceful drain: refuse new jobs; let live ones finish for up to `ms`; then end the rest with a
   * retryable runner_draining error (the gateway resumes them elsewhere after the ids they
   * delivered) and wait, at most `graceMs`, for those posts.
   */
  async drain(ms: number, graceMs = 10_000): Promise<{ finished: number; handedBack: number }> {
    this.draining = true;
    const before = this.live.size;
    const timeout = <T>(p: Promise<T>, t: number) =>
      new Promise<T | undefined>((res) => {
        const timer = setTimeout(() => res(undefined), t);
        void p.then((v) => {
          clearTimeout(timer);
          res(v);
        });
      });
    await timeout(this.idle(), ms);
    const rest = this.jobs;
    for (const j of rest)
      j.abort({ code: 'runner_draining', message: 'the runner shut down before this attempt finished', retryable: true });
    await timeout(this.idle(), graceMs);
    for (const j of this.jobs) j.poster.stop();
    return { finished: before - rest.length, handedBack: rest.length };
  }
}

/** `generate`: load the model and adapters, wait for room, stream the engine's tokens, end with done or an error. */
export const generateHandler: JobHandler = async (job, ctx) => {
  const spec = job.job;
  if (spec.kind !== 'generate') throw new Error('generateHandler takes generate jobs');
  const s = spec.spec;
  const t0 = performance.now();
  let lease: ModelLease | undefined;
  let need = 0;
  let entered = false;
  try {
    lease = await ctx.models.acquire(s.model.digest);
    const mix = await ctx.adapters.mix(s.adapters);
    const loadMs = performance.now() - t0;
    if (job.cancelled) return;
    const engine = lease.engine;
    const config = engine.model.config;
    need = kvBytesFor(config, s.prompt_ids.length + s.max_tokens);
    job.state = 'waiting';
    const wait = ctx.gate.enter(need);
    job.onCancelled(() => wait.abandon());
    entered = await wait.admitted;
    if (job.cancelled) return;
    job.state = 'running';
    const tSubmit = performance.now();
    // The service's stop semantics: EOS (unless ignore_eos) plus the extra stop ids.
    const stopIds = [...(s.ignore_eos ? [] : config.eosTokenIds), ...s.stop_token_ids];
    const handle = engine.submit({
      prompt: s.prompt_ids,
      maxTokens: s.max_tokens,
      mix,
      mode: s.mode,
      sampling: { temperature: s.temperature, topK: s.top_k, topP: s.top_p, seed: s.seed },
      stopIds,
      ignoreEos: true,
      resumeIds: spec.resume_ids,
    });
    job.handle = handle;
    job.onCancelled(() => handle.cancel());
    let tFirst: number | undefined;
    for await (const t of handle.tokens) {
      tFirst ??= performance.now();
      if (t.index !== job.ids.length) throw new Error(`engine token index ${t.index}, expected ${job.ids.length}`);
      job.ids.push(t.token);
      job.poster.poke();
    }
    const r = await handle.result;
    if (job.cancelled) return;
    const tEnd = performance.now();
    const produced = job.ids.length - spec.resume_ids.length;
    job.state = 'ending';
    job.poster.close({
      done: {
        finish_reason: r.finishReason,
        prompt_tokens: s.prompt_ids.length,
        timing: {
          load_ms: loadMs,
          prefill_ms: tFirst === undefined ? 0 : tFirst - tSubmit,
          decode_ms_per_token: tFirst !== undefined && produced > 1 ? (tEnd - tFirst) / (produced - 1) : 0,
        },
      },
    });
  } finally {
    if (entered) ctx.gate.leave(need);
    lease?.release();
  }
};

export const DEFAULT_HANDLERS: Partial<Record<JobKind, JobHandler>> = {
  generate: generateHandler,
  // merge: added by startRunner (merge.ts), which knows the blob settings a build writes through.
};
