/** The gateway's settings from its vars (text), with defaults when a var is missing or not a number. */
import type { gpu } from '@lora-edge/shared';

export interface Settings extends gpu.PoolSettings {
  maxAttempts: number;
  heartbeatMs: number;
  queueTimeoutMs: number;
}

function num(v: unknown, dflt: number, min = 0): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  return Number.isFinite(n) && n >= min ? n : dflt;
}

export function settings(env: Env): Settings {
  const e = env as unknown as Record<string, unknown>;
  return {
    maxAttempts: Math.floor(num(e.GPU_MAX_ATTEMPTS, 3, 1)),
    heartbeatMs: num(e.GPU_HEARTBEAT_MS, 1000, 50),
    leaseMs: num(e.GPU_LEASE_MS, 4000, 100),
    queuePerSlot: num(e.GPU_QUEUE_PER_SLOT, 1),
    queueFloor: Math.floor(num(e.GPU_QUEUE_FLOOR, 0)),
    queueTimeoutMs: num(e.GPU_QUEUE_TIMEOUT_MS, 120_000, 1000),
  };
}
