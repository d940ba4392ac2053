/**
 * One Durable Object per job (merge jobs: per recipe sha). Its single-threaded, strongly
 * consistent storage makes it the compute-once lock: of two identical submissions only one
 * is told to enqueue, and of two deliveries of one message only one gets the lease to compute.
 */
import { DurableObject } from 'cloudflare:workers';
import type { JobError, JobKind, JobPayload, JobRecord, JobResult, JobState, JobView } from './types.ts';

const KEY = 'job';
/** A lease outlives the longest consumer invocation (15 min wall): past it, the holder died. */
const LEASE_MS = 15 * 60_000;
/** A queued job untouched this long lost its message (a failed send): resubmitting enqueues again. */
const STALE_QUEUED_MS = 10 * 60_000;
const HISTORY_MAX = 50;

export type Claim = { token: string; payload: JobPayload; attempt: number } | { skip: 'done' | 'busy' | 'missing' };

export class JobObject extends DurableObject<Env> {
  private load(): JobRecord | undefined {
    return this.ctx.storage.kv.get<JobRecord>(KEY);
  }

  private save(j: JobRecord): void {
    this.ctx.storage.kv.put(KEY, j);
  }

  private move(j: JobRecord, state: JobState, now: number, note?: string): void {
    j.state = state;
    j.updated_at = new Date(now).toISOString();
    j.history.push(note === undefined ? { state, at: j.updated_at } : { state, at: j.updated_at, note });
    if (j.history.length > HISTORY_MAX) j.history.splice(1, j.history.length - HISTORY_MAX);
  }

  /**
   * Registers interest in the job, creating it when new (or when it failed, or lost its
   * message). `enqueue` is true for exactly one of any number of concurrent callers.
   */
  submit(id: string, kind: JobKind, payload: JobPayload, tenant: string): { job: JobView; enqueue: boolean } {
    const now = Date.now();
    const j = this.load();
    if (
      j &&
      (j.state === 'running' || j.state === 'succeeded' || (j.state === 'queued' && now - Date.parse(j.updated_at) < STALE_QUEUED_MS))
    ) {
      if (!j.requesters.includes(tenant)) {
        j.requesters.push(tenant);
        this.save(j);
      }
      return { job: view(j), enqueue: false };
    }
    const at = new Date(now).toISOString();
    const next: JobRecord = {
      id,
      kind,
      state: 'queued',
      progress: 0,
      stage: 'queued',
      attempts: j?.attempts ?? 0,
      requesters: [...new Set([...(j?.requesters ?? []), tenant])],
      created_at: j?.created_at ?? at,
      updated_at: at,
      history: j ? [...j.history, { state: 'queued', at, note: 'resubmitted' }] : [{ state: 'queued', at }],
      payload,
    };
    this.save(next);
    return { job: view(next), enqueue: true };
  }

  /**
   * Records a job whose result already exists (an artifact built earlier), so the tenant
   * asking for it can read the job and the artifact. Keeps an existing record as it is.
   */
  adopt(id: string, kind: JobKind, payload: JobPayload, tenant: string, result: JobResult): JobView {
    const now = Date.now();
    const j = this.load();
    if (j) {
      if (!j.requesters.includes(tenant)) j.requesters.push(tenant);
      if (j.state !== 'succeeded' && j.state !== 'running') {
        j.result = result;
        j.progress = 1;
        j.stage = 'done';
        j.finished_at = new Date(now).toISOString();
        delete j.error;
        this.move(j, 'succeeded', now, 'artifact already built');
      }
      this.save(j);
      return view(j);
    }
    const at = new Date(now).toISOString();
    const next: JobRecord = {
      id,
      kind,
      state: 'succeeded',
      progress: 1,
      stage: 'done',
      attempts: 0,
      requesters: [tenant],
      created_at: at,
      updated_at: at,
      finished_at: at,
      history: [{ state: 'succeeded', at, note: 'artifact already built' }],
      result,
      payload,
    };
    this.save(next);
    return view(next);
  }

  /** Takes the lease to compute, unless the job is finished or another consumer holds a live lease. */
  begin(): Claim {
    const now = Date.now();
    const j = this.load();
    if (!j) return { skip: 'missing' };
    if (j.state === 'succeeded' || j.state === 'failed') return { skip: 'done' };
    if (j.state === 'running' && j.lease && j.lease.until > now) return { skip: 'busy' };
    const token = crypto.randomUUID();
    j.lease = { token, until: now + LEASE_MS };
    j.attempts += 1;
    j.started_at ??= new Date(now).toISOString();
    j.stage = 'starting';
    this.move(j, 'running', now, j.attempts > 1 ? `attempt ${j.attempts}` : undefined);
    this.save(j);
    return { token, payload: j.payload, attempt: j.attempts };
  }

  progress(token: string, fraction: number, stage: string): boolean {
    const j = this.load();
    if (j?.state !== 'running' || j.lease?.token !== token) return false;
    j.progress = Math.min(1, Math.max(j.progress, fraction));
    j.stage = stage;
    j.updated_at = new Date().toISOString();
    this.save(j);
    return true;
  }

  complete(token: string, result: JobResult): boolean {
    const now = Date.now();
    const j = this.load();
    if (j?.state !== 'running' || j.lease?.token !== token) return false;
    j.result = result;
    j.progress = 1;
    j.stage = 'done';
    j.finished_at = new Date(now).toISOString();
    delete j.lease;
    delete j.error;
    this.move(j, 'succeeded', now);
    this.save(j);
    return true;
  }

  /** A failed attempt: back to queued when the queue will retry it, else failed for good. */
  fail(token: string, error: JobError, retry: boolean): boolean {
    const now = Date.now();
    const j = this.load();
    if (j?.state !== 'running' || j.lease?.token !== token) return false;
    j.error = error;
    delete j.lease;
    if (retry) {
      j.stage = 'waiting to retry';
      this.move(j, 'queued', now, `attempt ${j.attempts} failed: ${error.code}`);
    } else {
      j.stage = 'failed';
      j.finished_at = new Date(now).toISOString();
      this.move(j, 'failed', now);
    }
    this.save(j);
    return true;
  }

  /** The queue gave up on the job's message: fail it unless it finished or is still being computed. */
  deadLetter(): boolean {
    const now = Date.now();
    const j = this.load();
    if (!j || j.state === 'succeeded' || j.state === 'failed') return false;
    if (j.state === 'running' && j.lease && j.lease.until > now) return false;
    j.error = { code: 'job_dead_lettered', message: `gave up after ${j.attempts} attempts${j.error ? ` (last: ${j.error.message})` : ''}` };
    j.stage = 'failed';
    j.finished_at = new Date(now).toISOString();
    delete j.lease;
    this.move(j, 'failed', now);
    this.save(j);
    return true;
  }

  /** The queue refused the job's message: nothing will run it. */
  abort(error: JobError): void {
    const now = Date.now();
    const j = this.load();
    if (j?.state !== 'queued') return;
    j.error = error;
    j.stage = 'failed';
    j.finished_at = new Date(now).toISOString();
    this.move(j, 'failed', now);
    this.save(j);
  }

  /** The job as `tenant` may see it (it must have requested it); null otherwise. */
  read(tenant: string | null): JobView | null {
    const j = this.load();
    if (!j || (tenant !== null && !j.requesters.includes(tenant))) return null;
    return view(j);
  }
}

function view(j: JobRecord): JobView {
  const { payload: _p, lease: _l, requesters: _r, ...rest } = j;
  return structuredClone(rest);
}
