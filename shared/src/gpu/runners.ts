/**
 * The runner pool as the gateway sees it: who is alive (heard from within the lease), how much
 * room the pool has (the backpressure limit), and which runner takes the next job.
 */
import type { RunnerLoad, RunnerRegistration } from './protocol.ts';

export interface RunnerEntry {
  reg: RunnerRegistration;
  load: RunnerLoad;
  last_seen: number;
  registered_at: number;
  /** Jobs handed to it and not yet ended (the gateway's own count; the runner's load lags). */
  assigned: string[];
}

export interface PoolSettings {
  /** A runner silent this long is gone. */
  leaseMs: number;
  /** Jobs allowed to wait per slot of the live pool, beyond the slots themselves. */
  queuePerSlot: number;
  /** Jobs allowed to wait even with no live runner (lets an autoscaler start from zero). */
  queueFloor: number;
}

export const isLive = (r: RunnerEntry, now: number, leaseMs: number): boolean => now - r.last_seen <= leaseMs;

export interface Capacity {
  runners: number;
  slots: number;
  /** Jobs admitted and not ended (queued or running). */
  outstanding: number;
  /** The most outstanding jobs the router admits. */
  limit: number;
  draining: number;
}

export function capacity(runners: readonly RunnerEntry[], outstanding: number, s: PoolSettings, now: number): Capacity {
  const live = runners.filter((r) => isLive(r, now, s.leaseMs));
  const serving = live.filter((r) => !r.load.draining);
  const slots = serving.reduce((n, r) => n + r.reg.slots, 0);
  return {
    runners: serving.length,
    slots,
    outstanding,
    limit: Math.floor(slots * (1 + s.queuePerSlot)) + s.queueFloor,
    draining: live.length - serving.length,
  };
}

export type Admission = { ok: true } | { ok: false; status: 429 | 503; code: string; message: string; retry_after_s: number };

/** Whether one more job may enter: beyond the limit the router answers 429 and enqueues nothing. */
export function admit(c: Capacity): Admission {
  if (c.outstanding < c.limit) return { ok: true };
  if (c.slots === 0)
    return {
      ok: false,
      status: 503,
      code: 'gpu_unavailable',
      message: 'No GPU runner is serving right now; retry shortly.',
      retry_after_s: 5,
    };
  // Wait about as long as the queue ahead takes to drain by one slot's worth per second.
  const retry = Math.min(30, Math.max(1, Math.ceil((c.outstanding - c.limit + 1) / Math.max(1, c.slots))));
  return {
    ok: false,
    status: 429,
    code: 'gpu_busy',
    message: `The GPU runners are at capacity (${c.outstanding} jobs for ${c.slots} slots); retry after ${retry} s.`,
    retry_after_s: retry,
  };
}

export interface JobNeeds {
  kind: 'generate' | 'merge';
  modelBytes: number;
  avoid: readonly string[];
}

/**
 * Candidates for a job, best first: live, not draining, able to hold the model, taking this kind;
 * least loaded (assigned per slot) first; runners the job already failed on go last.
 */
export function candidates(runners: readonly RunnerEntry[], need: JobNeeds, s: PoolSettings, now: number): RunnerEntry[] {
  const fit = runners.filter(
    (r) => isLive(r, now, s.leaseMs) && !r.load.draining && r.reg.kinds.includes(need.kind) && r.reg.max_model_bytes >= need.modelBytes,
  );
  const score = (r: RunnerEntry) => (need.avoid.includes(r.reg.id) ? 1e9 : 0) + r.assigned.length / r.reg.slots;
  return fit.sort((a, b) => score(a) - score(b) || a.reg.id.localeCompare(b.reg.id));
}
