/**
 * The runner's standing with the gateway: register (retried with backoff: the gateway may start
 * after the runner), then a heartbeat with the load every heartbeat_ms; a heartbeat answered
 * `known: false` (the gateway expired this runner) registers again.
 */
import type { gpu } from '@lora-edge/shared';
import type { GatewayClient } from './gateway.ts';
import type { Logger } from './log.ts';
import { Signal } from './poster.ts';

export interface ControlOptions {
  gateway: GatewayClient;
  registration(): gpu.RunnerRegistration;
  load(): gpu.RunnerLoad;
  log: Logger;
  /** Backoff of registration retries: first and largest delay. */
  backoffMs?: { first: number; max: number };
}

export class Control {
  /** Defaults until the gateway says otherwise in its register reply. */
  heartbeatMs = 5_000;
  leaseMs = 30_000;
  registered = false;
  registrations = 0;
  heartbeats = 0;
  private readonly wake = new Signal();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private firstRegistration: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly o: ControlOptions) {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.firstRegistration = { promise, resolve };
  }

  timing = (): { heartbeatMs: number; leaseMs: number } => ({ heartbeatMs: this.heartbeatMs, leaseMs: this.leaseMs });

  /** Starts the loop; the promise resolves once the first registration succeeded. */
  start(): Promise<void> {
    this.loop ??= this.run();
    return this.firstRegistration.promise;
  }

  /** Heartbeat now (e.g. draining just began). */
  beat(): void {
    this.wake.notify();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.notify();
    await this.loop;
  }

  private async run(): Promise<void> {
    const backoff = this.o.backoffMs ?? { first: 250, max: 5_000 };
    let delay = backoff.first;
    while (!this.stopped) {
      if (!this.registered) {
        const r = await this.o.gateway.register(this.o.registration());
        if (this.stopped) return;
        if (r.ok) {
          this.registered = true;
          this.registrations++;
          this.heartbeatMs = r.value.heartbeat_ms;
          this.leaseMs = r.value.lease_ms;
          delay = backoff.first;
          this.o.log.log('info', 'registered with the gateway', { heartbeat_ms: this.heartbeatMs, lease_ms: this.leaseMs });
          this.firstRegistration.resolve();
        } else {
          this.o.log.log('warn', 'registration failed; retrying', { why: r.gone ? `HTTP ${r.status}` : r.why, retry_ms: delay });
          await this.wake.wait(delay);
          delay = Math.min(delay * 2, backoff.max);
          continue;
        }
      }
      await this.wake.wait(this.heartbeatMs);
      if (this.stopped) {
        // The last word: the gateway learns the final load (draining) before the process goes.
        await this.o.gateway.heartbeat(this.o.registration().id, this.o.load(), 2_000);
        return;
      }
      const r = await this.o.gateway.heartbeat(this.o.registration().id, this.o.load());
      this.heartbeats++;
      if (r.ok && !r.value.known) {
        this.o.log.log('warn', 'the gateway forgot this runner; registering again');
        this.registered = false;
      } else if (!r.ok) {
        // 404: the gateway does not know the id at all; other failures: keep beating, it may come back.
        if (r.gone) this.registered = false;
        this.o.log.log('warn', 'heartbeat failed', { why: r.gone ? `HTTP ${r.status}` : r.why });
      }
    }
  }
}
