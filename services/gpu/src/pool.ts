/**
 * The runner pool: one Durable Object for the whole gateway. It knows the registered runners
 * (their last heartbeat and load), the jobs admitted and not ended (the backpressure count), and
 * the dead letters. Admission and release happen here, in one single-threaded place, so a flood
 * of concurrent requests can never overshoot the limit.
 */

import { DurableObject } from 'cloudflare:workers';
import { gpu } from '@lora-edge/shared';
import { type Settings, settings } from './settings.ts';

/** A job admitted this long ago and never released leaked (its object lost it): stop counting it. */
const ADMITTED_TTL_MS = 6 * 3600_000;
const DEAD_LETTERS_KEPT = 200;
/** Runners gone this long are forgotten (until then they show as gone in the status). */
const FORGET_MS = 10 * 60_000;

export interface DeadLetter {
  at: string;
  job: string | null;
  reason: string;
  detail: string;
}

export interface PoolView {
  capacity: gpu.Capacity;
  runners: {
    id: string;
    url: string;
    live: boolean;
    slots: number;
    assigned: number;
    backend: string;
    kinds: string[];
    max_model_bytes: number;
    load: gpu.RunnerLoad;
    last_seen_ms_ago: number;
  }[];
}

export class RunnerPool extends DurableObject<Env> {
  private get s(): Settings {
    return settings(this.env);
  }

  private runners(): Record<string, gpu.RunnerEntry> {
    return this.ctx.storage.kv.get<Record<string, gpu.RunnerEntry>>('runners') ?? {};
  }

  private saveRunners(r: Record<string, gpu.RunnerEntry>): void {
    this.ctx.storage.kv.put('runners', r);
  }

  private admitted(now: number): Record<string, number> {
    const a = this.ctx.storage.kv.get<Record<string, number>>('admitted') ?? {};
    for (const [id, at] of Object.entries(a)) if (now - at > ADMITTED_TTL_MS) delete a[id];
    return a;
  }

  register(reg: gpu.RunnerRegistration): gpu.RegisterReply {
    const now = Date.now();
    const all = this.runners();
    for (const [id, r] of Object.entries(all)) if (now - r.last_seen > FORGET_MS) delete all[id];
    const before = all[reg.id];
    // A runner that restarted under the same id holds none of its old jobs: their leases lapse.
    all[reg.id] = { reg, load: reg.load, last_seen: now, registered_at: now, assigned: before?.assigned ?? [] };
    this.saveRunners(all);
    console.log(JSON.stringify({ level: 'info', msg: 'runner registered', runner: reg.id, url: reg.url, slots: reg.slots }));
    return { ok: true, heartbeat_ms: this.s.heartbeatMs, lease_ms: this.s.leaseMs };
  }

  heartbeat(id: string, load: gpu.RunnerLoad): { ok: boolean; known: boolean } {
    const all = this.runners();
    const r = all[id];
    if (!r) return { ok: false, known: false };
    r.load = load;
    r.last_seen = Date.now();
    this.saveRunners(all);
    return { ok: true, known: true };
  }

  capacity(): gpu.Capacity {
    const now = Date.now();
    return gpu.capacity(Object.values(this.runners()), Object.keys(this.admitted(now)).length, this.s, now);
  }

  /** Admits one more job, or says why not (429 over the limit, 503 with no runner). Idempotent per job. */
  admit(job: string): gpu.Admission {
    const now = Date.now();
    const a = this.admitted(now);
    if (a[job] !== undefined) return { ok: true };
    const verdict = gpu.admit(gpu.capacity(Object.values(this.runners()), Object.keys(a).length, this.s, now));
    if (verdict.ok) {
      a[job] = now;
      this.ctx.storage.kv.put('admitted', a);
    }
    return verdict;
  }

  /** The job ended (or was never enqueued): it no longer counts, and no runner holds it. */
  release(job: string): void {
    const a = this.admitted(Date.now());
    delete a[job];
    this.ctx.storage.kv.put('admitted', a);
    const all = this.runners();
    for (const r of Object.values(all)) r.assigned = r.assigned.filter((j) => j !== job);
    this.saveRunners(all);
  }

  candidates(need: gpu.JobNeeds): { id: string; url: string; max_model_bytes: number }[] {
    const now = Date.now();
    return gpu
      .candidates(Object.values(this.runners()), need, this.s, now)
      .map((r) => ({ id: r.reg.id, url: r.reg.url, max_model_bytes: r.reg.max_model_bytes }));
  }

  /** The largest model any live runner holds (0 with none): tells "too large for all" from "busy". */
  largestModel(kind: 'generate' | 'merge'): { live: number; bytes: number } {
    const now = Date.now();
    const live = Object.values(this.runners()).filter((r) => gpu.isLive(r, now, this.s.leaseMs) && r.reg.kinds.includes(kind));
    return { live: live.length, bytes: Math.max(0, ...live.map((r) => r.reg.max_model_bytes)) };
  }

  assign(job: string, runner: string): void {
    const all = this.runners();
    for (const r of Object.values(all)) r.assigned = r.assigned.filter((j) => j !== job);
    all[runner]?.assigned.push(job);
    this.saveRunners(all);
  }

  /** Whether the runner is alive (heard from within the lease): a silent one lost its jobs. */
  isLive(runner: string): boolean {
    const r = this.runners()[runner];
    return r !== undefined && gpu.isLive(r, Date.now(), this.s.leaseMs);
  }

  deadLetter(d: Omit<DeadLetter, 'at'>): void {
    const list = this.ctx.storage.kv.get<DeadLetter[]>('dead') ?? [];
    list.push({ at: new Date().toISOString(), ...d });
    this.ctx.storage.kv.put('dead', list.slice(-DEAD_LETTERS_KEPT));
  }

  deadLetters(): DeadLetter[] {
    return this.ctx.storage.kv.get<DeadLetter[]>('dead') ?? [];
  }

  view(): PoolView {
    const now = Date.now();
    const all = Object.values(this.runners());
    return {
      capacity: gpu.capacity(all, Object.keys(this.admitted(now)).length, this.s, now),
      runners: all.map((r) => ({
        id: r.reg.id,
        url: r.reg.url,
        live: gpu.isLive(r, now, this.s.leaseMs),
        slots: r.reg.slots,
        assigned: r.assigned.length,
        backend: r.reg.backend,
        kinds: r.reg.kinds,
        max_model_bytes: r.reg.max_model_bytes,
        load: r.load,
        last_seen_ms_ago: now - r.last_seen,
      })),
    };
  }
}

export function poolStub(env: Env): DurableObjectStub<RunnerPool> {
  return env.POOL.get(env.POOL.idFromName('pool'));
}
