/**
 * One GPU job's state: its attempts and the tokens the client is owed, with the rules that make
 * an at-least-once runner path deliver exactly once. Tokens are indexed; an attempt is fenced by
 * its number (only the current attempt's runner may append), indices already held are dropped, a
 * gap is refused (the runner resends from `next`), and a retry resumes after the held tokens.
 * Pure data + rules: the gateway's Durable Object persists it, tests drive it directly.
 */
import type { Finish, JobError, JobEvents, Progress } from './protocol.ts';

export type JobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface AttemptRecord {
  n: number;
  runner: string | null;
  /** queued: waiting for a runner; running: a runner accepted it; then how it ended. */
  state: 'queued' | 'running' | 'done' | 'failed';
  queued_at: number;
  started_at?: number;
  ended_at?: number;
  /** Tokens the job held when the attempt started (it resumed after them). */
  resumed_at_token: number;
  error?: { code: string; message: string };
}

export interface JobRecord {
  id: string;
  kind: 'generate' | 'merge';
  status: JobStatus;
  created_at: number;
  updated_at: number;
  max_tokens: number;
  max_attempts: number;
  ids: number[];
  attempts: AttemptRecord[];
  finish?: Finish;
  error?: { code: string; message: string; status: number };
  /** Runners that refused or lost this job: tried last when it is dispatched again. */
  avoid: string[];
  /** Last time the current attempt's runner was heard from (events or acceptance). */
  last_seen: number;
  /** The current attempt's last reported progress (long work without tokens). */
  progress?: Progress;
  /** When the job's first token arrived (the gateway's time to first token, from created_at). */
  first_token_at?: number;
}

export function newJob(id: string, kind: JobRecord['kind'], maxTokens: number, maxAttempts: number, now: number): JobRecord {
  return {
    id,
    kind,
    status: 'queued',
    created_at: now,
    updated_at: now,
    max_tokens: maxTokens,
    max_attempts: maxAttempts,
    ids: [],
    attempts: [{ n: 1, runner: null, state: 'queued', queued_at: now, resumed_at_token: 0 }],
    avoid: [],
    last_seen: now,
  };
}

export const isFinal = (s: JobStatus): boolean => s === 'done' || s === 'failed' || s === 'cancelled';

export function currentAttempt(job: JobRecord): AttemptRecord {
  return job.attempts[job.attempts.length - 1] as AttemptRecord;
}

export interface EventsOutcome {
  /** Ids new to the job, and the index of the first of them. */
  appended: number[];
  from: number;
  current: boolean;
  /** The attempt failed with a retryable error: the caller retries (or dead-letters) the job. */
  retry?: JobError;
  /** The job just ended (done or failed). */
  ended: boolean;
  /** New progress to pass on. */
  progress?: Progress;
}

/** A runner accepted attempt `n`: it owns the job until it ends or goes silent. */
export function markRunning(job: JobRecord, attempt: number, runner: string, now: number): boolean {
  const a = currentAttempt(job);
  if (isFinal(job.status) || a.n !== attempt || a.state !== 'queued') return false;
  a.state = 'running';
  a.runner = runner;
  a.started_at = now;
  job.status = 'running';
  job.last_seen = now;
  job.updated_at = now;
  return true;
}

/** Applies a runner's events under the fencing and dedup rules. */
export function applyEvents(job: JobRecord, ev: JobEvents, now: number): EventsOutcome {
  const a = currentAttempt(job);
  // A runner's first post can overtake the consumer's note that it accepted: it starts the attempt.
  if (a.n === ev.attempt && a.state === 'queued') markRunning(job, ev.attempt, ev.runner, now);
  const none = (current: boolean): EventsOutcome => ({ appended: [], from: job.ids.length, current, ended: false });
  if (a.n !== ev.attempt || a.runner !== ev.runner || a.state !== 'running' || isFinal(job.status)) {
    // A repeat of the final post that already ended this attempt is answered as current (idempotent).
    const repeat = a.n === ev.attempt && a.runner === ev.runner && job.status === 'done' && ev.done !== undefined;
    return none(repeat);
  }
  job.last_seen = now;
  job.updated_at = now;
  if (ev.from > job.ids.length) return none(true); // a gap: the runner resends from `next`
  const skip = job.ids.length - ev.from;
  const room = Math.max(0, job.max_tokens - job.ids.length);
  const appended = ev.ids.slice(skip, skip + room);
  const from = job.ids.length;
  for (const id of appended) job.ids.push(id);
  if (appended.length && job.first_token_at === undefined) job.first_token_at = now;
  const moved = ev.progress && (ev.progress.fraction !== job.progress?.fraction || ev.progress.stage !== job.progress?.stage);
  if (ev.progress) job.progress = ev.progress;
  const progress = moved ? { progress: ev.progress as Progress } : {};
  if (ev.error) {
    a.state = 'failed';
    a.ended_at = now;
    a.error = { code: ev.error.code, message: ev.error.message };
    if (!ev.error.retryable) {
      fail(job, { code: ev.error.code, message: ev.error.message, status: 422 }, now);
      return { appended, from, current: true, ended: true };
    }
    return { appended, from, current: true, retry: ev.error, ended: false };
  }
  if (ev.done) {
    a.state = 'done';
    a.ended_at = now;
    job.status = 'done';
    job.finish = ev.done;
    return { appended, from, current: true, ended: true, ...progress };
  }
  return { appended, from, current: true, ended: false, ...progress };
}

/** The current attempt is lost (runner silent, refused everywhere…): open the next one, or fail. */
export function retryJob(job: JobRecord, why: { code: string; message: string }, now: number): 'retry' | 'exhausted' {
  const a = currentAttempt(job);
  if (a.state === 'queued' || a.state === 'running') {
    a.state = 'failed';
    a.ended_at = now;
    a.error = why;
  }
  if (a.runner && !job.avoid.includes(a.runner)) job.avoid.push(a.runner);
  if (job.attempts.length >= job.max_attempts) return 'exhausted';
  job.attempts.push({ n: a.n + 1, runner: null, state: 'queued', queued_at: now, resumed_at_token: job.ids.length });
  delete job.progress;
  job.status = 'queued';
  job.last_seen = now;
  job.updated_at = now;
  return 'retry';
}

export function fail(job: JobRecord, error: { code: string; message: string; status: number }, now: number): void {
  const a = currentAttempt(job);
  if (a.state === 'queued' || a.state === 'running') {
    a.state = 'failed';
    a.ended_at = now;
    a.error = { code: error.code, message: error.message };
  }
  job.status = 'failed';
  job.error = error;
  job.updated_at = now;
}
