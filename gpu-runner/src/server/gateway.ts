/** The runner's calls to the gateway Worker: JSON POSTs with the runner token, replies parsed by the contract. */
import { gpu } from '@lora-edge/shared';
import type { z } from 'zod';

export type Outcome<T> =
  | { ok: true; value: T }
  /** The gateway answered 404/409/410: this job or attempt is not (or no longer) the caller's. */
  | { ok: false; gone: true; status: number }
  /** Unreachable, timed out, 5xx, 401, 429 or a reply off the contract: try again later. */
  | { ok: false; gone: false; status: number; why: string };

export class GatewayClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  async post<S extends z.ZodType>(path: string, body: unknown, schema: S, timeoutMs: number): Promise<Outcome<z.infer<S>>> {
    let res: Response;
    try {
      res = await this.fetchImpl(`${this.baseUrl}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      return { ok: false, gone: false, status: 0, why: (e as Error).message };
    }
    const text = await res.text().catch(() => '');
    if (res.status === 404 || res.status === 409 || res.status === 410) return { ok: false, gone: true, status: res.status };
    if (!res.ok) return { ok: false, gone: false, status: res.status, why: `HTTP ${res.status} ${text.slice(0, 200)}` };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, gone: false, status: res.status, why: 'the reply is not JSON' };
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success)
      return { ok: false, gone: false, status: res.status, why: `unexpected reply: ${parsed.error.message.slice(0, 200)}` };
    return { ok: true, value: parsed.data };
  }

  register(reg: gpu.RunnerRegistration, timeoutMs = 10_000) {
    return this.post('/runners/register', reg, gpu.RegisterReplySchema, timeoutMs);
  }

  heartbeat(id: string, load: gpu.RunnerLoad, timeoutMs = 10_000) {
    return this.post(`/runners/${encodeURIComponent(id)}/heartbeat`, load, gpu.HeartbeatReplySchema, timeoutMs);
  }

  /**
   * One job's events, sent with every other job's in a batch (`POST /runners/events`): one batch
   * in flight at a time, the posts made meanwhile ride the next one. Each caller gets its own
   * job's outcome, as from the per-job route, so the posters' rules are unchanged.
   */
  events(job: string, ev: gpu.JobEvents, timeoutMs: number): Promise<Outcome<gpu.EventsReply>> {
    return new Promise((resolve) => {
      this.queued.push({ job, ev, timeoutMs, resolve });
      void this.flush();
    });
  }

  private readonly queued: PendingEvents[] = [];
  private sending = false;
  private lastBatch = Number.NEGATIVE_INFINITY;
  /** Least time between two event batches (ms). */
  batchGapMs = 5;

  private async flush(): Promise<void> {
    if (this.sending || this.queued.length === 0) return;
    this.sending = true;
    try {
      // Batches at most every batchGapMs: a lone fast job would otherwise post every token and
      // spend its CPU on HTTP instead of decoding. The first post of a quiet runner goes at once.
      const wait = this.lastBatch + this.batchGapMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.lastBatch = performance.now();
      // Cap a batch by entries and ids so its body stays well under the gateway's 4 MiB.
      let ids = 0;
      let n = 0;
      while (
        n < this.queued.length &&
        n < gpu.MAX_BATCH_EVENTS &&
        (n === 0 || ids + (this.queued[n] as PendingEvents).ev.ids.length <= BATCH_IDS)
      ) {
        ids += (this.queued[n] as PendingEvents).ev.ids.length;
        n++;
      }
      const batch = this.queued.splice(0, n);
      const runner = (batch[0] as PendingEvents).ev.runner;
      const timeout = Math.max(...batch.map((b) => b.timeoutMs));
      const events = batch.map((b) => ({ job: b.job, ...b.ev }));
      const r = await this.post('/runners/events', { runner, events }, gpu.BatchReplySchema, timeout);
      for (const [i, b] of batch.entries()) b.resolve(outcomeOf(r, i, b.job));
    } finally {
      this.sending = false;
      if (this.queued.length) void this.flush();
    }
  }
}

/** One job's outcome out of a batch's: as the per-job route would have answered it. */
function outcomeOf(r: Outcome<gpu.BatchReply>, i: number, job: string): Outcome<gpu.EventsReply> {
  if (!r.ok) return r;
  const reply = r.value.replies[i];
  if (!reply || reply.job !== job) return { ok: false, gone: false, status: 200, why: 'the batch reply does not match' };
  if (reply.status === 200 && reply.next !== undefined && reply.current !== undefined)
    return { ok: true, value: { next: reply.next, current: reply.current } };
  if (reply.status === 404 || reply.status === 409 || reply.status === 410) return { ok: false, gone: true, status: reply.status };
  return { ok: false, gone: false, status: reply.status, why: reply.error ?? `status ${reply.status}` };
}

interface PendingEvents {
  job: string;
  ev: gpu.JobEvents;
  timeoutMs: number;
  resolve(o: Outcome<gpu.EventsReply>): void;
}

/** Token ids per batch at most (≈ 8 bytes each in JSON). */
const BATCH_IDS = 200_000;
