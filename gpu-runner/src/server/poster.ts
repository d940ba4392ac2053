/**
 * One attempt's events stream to the gateway: one post in flight at a time, carrying every token
 * produced since the last acknowledged index (tokens that arrive meanwhile ride the next post),
 * an empty keep-alive when nothing happened for a heartbeat, resends from the gateway's `next`
 * after a gap or a lost post, and the end (`done` or `error`) with the last ids.
 */
import type { gpu } from '@lora-edge/shared';
import type { Outcome } from './gateway.ts';

/** A wake-up that may come before anyone waits (then the next wait returns at once). */
export class Signal {
  private pending = false;
  private wake: (() => void) | undefined;

  notify(): void {
    this.pending = true;
    this.wake?.();
  }

  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(0, ms));
      const self = this;
      function done() {
        clearTimeout(t);
        self.wake = undefined;
        self.pending = false;
        resolve();
      }
      this.wake = done;
    });
  }
}

export const MAX_IDS_PER_POST = 1 << 16;

export type PosterEnd = 'delivered' | 'fenced' | 'unreachable' | 'stopped';

export interface PosterOptions {
  runner: string;
  attempt: number;
  /** The attempt's ids from job index 0: the resumed ones first, then what this runner generates. */
  ids: readonly number[];
  /** Index the gateway already holds when the attempt starts (resume_ids.length). */
  start: number;
  send(ev: gpu.JobEvents, timeoutMs: number): Promise<Outcome<gpu.EventsReply>>;
  /** Read on each use: the register reply may change them. */
  timing(): { heartbeatMs: number; leaseMs: number };
  onRetry?(why: string, attempt: number): void;
  now?(): number;
}

export class Poster {
  readonly signal = new Signal();
  /** What the gateway acknowledged holding: the next post's `from`. */
  acked: number;
  posts = 0;
  private end: { done?: gpu.Finish; error?: gpu.JobError } | undefined;
  private stopped = false;
  readonly finished: Promise<PosterEnd>;

  constructor(private readonly o: PosterOptions) {
    this.acked = o.start;
    this.finished = this.loop();
  }

  /** New tokens are in `ids`. */
  poke(): void {
    this.signal.notify();
  }

  /** Progress of long work without tokens: sent with the next post. */
  report(p: gpu.Progress): void {
    this.progress = p;
    this.signal.notify();
  }
  private progress: gpu.Progress | undefined;
  private sentProgress: gpu.Progress | undefined;

  /** The attempt ended: post the rest with this end, until the gateway acknowledges it. */
  close(end: { done?: gpu.Finish; error?: gpu.JobError }): void {
    this.end ??= end;
    this.signal.notify();
  }

  /** Stop posting at once (the job was fenced off or abandoned). */
  stop(): void {
    this.stopped = true;
    this.signal.notify();
  }

  private async loop(): Promise<PosterEnd> {
    const now = this.o.now ?? Date.now;
    let lastPost = now();
    let lastHeard = now();
    let failures = 0;
    for (;;) {
      if (this.stopped) return 'stopped';
      const { heartbeatMs, leaseMs } = this.o.timing();
      const ids = this.o.ids;
      const end = this.end;
      const progress = this.progress;
      const fresh = ids.length > this.acked || progress !== this.sentProgress;
      if (!fresh && !end && now() - lastPost < heartbeatMs) {
        await this.signal.wait(heartbeatMs - (now() - lastPost));
        continue;
      }
      const from = Math.min(this.acked, ids.length);
      const chunk = ids.slice(from, from + MAX_IDS_PER_POST);
      const last = from + chunk.length === ids.length;
      const ev: gpu.JobEvents = { runner: this.o.runner, attempt: this.o.attempt, from, ids: chunk };
      if (end && last) Object.assign(ev, end);
      if (progress && progress !== this.sentProgress) ev.progress = progress;
      lastPost = now();
      this.posts++;
      const r = await this.o.send(ev, Math.max(1000, leaseMs));
      if (this.stopped) return 'stopped';
      if (r.ok) {
        lastHeard = now();
        // Fenced off (a retry took the job, or it ended). A first post that overtakes the hand-off
        // is not refused: the gateway's job rules let it start the attempt.
        if (!r.value.current) return 'fenced';
        failures = 0;
        if (ev.progress) this.sentProgress = ev.progress;
        // Behind what was sent (a gap, a lost post): resend from there. Ahead: the gateway drops repeats.
        this.acked = Math.min(r.value.next, ids.length);
        if (end && last && r.value.next >= ids.length) return 'delivered';
        continue;
      }
      if (r.gone) return 'fenced';
      if (now() - lastHeard > leaseMs) return 'unreachable';
      failures++;
      this.o.onRetry?.(r.why, failures);
      // Backoff, never past the point the lease would lapse; new tokens do not cut it short.
      const delay = Math.min(100 * 2 ** Math.min(failures - 1, 5), heartbeatMs, Math.max(10, leaseMs - (now() - lastHeard)));
      await new Promise((res) => setTimeout(res, delay));
    }
  }
}
