/** The runner's settings, read once from the environment; a bad value names its variable. */
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from '@lora-edge/shared';
import { z } from 'zod';
import type { BackendName } from '../backend/index.ts';

export type BlobsConfig =
  | { kind: 'gateway' }
  | { kind: 'dir'; dir: string }
  | { kind: 's3'; endpoint: string; bucket: string; accessKeyId: string; secretAccessKey: string; region: string };

export interface RunnerConfig {
  gatewayUrl: string;
  token: string;
  id: string;
  host: string;
  /** 0 = any free port. */
  port: number;
  /** Where the gateway reaches this runner; undefined = http://127.0.0.1:<actual port>. */
  advertisedUrl: string | undefined;
  blobs: BlobsConfig;
  cacheDir: string;
  backend: BackendName;
  slots: number;
  kvBytes: number;
  adapterBytes: number;
  maxModelBytes: number;
  /** Resident models (weights bytes) at most; evicted least recently used. */
  modelCacheBytes: number;
  drainMs: number;
  /** Engine pacing: each decode step takes at least this long (0 = off; load and fault tests). */
  minStepMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const GiB = 2 ** 30;
const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: GiB, t: 2 ** 40 };

/** Bytes as an integer or with a binary unit: 1073741824, 1G, 512MiB, 8gb. */
const byteSize = z.string().transform((s, ctx) => {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(s);
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${s}" is not a byte size (e.g. 1073741824, 512MiB, 8G)` });
    return z.NEVER;
  }
  return Math.floor(Number(m[1]) * unit);
});

const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\s*\d+\s*$/, 'an integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const httpUrl = z.url({ protocol: /^https?$/ }).transform((u) => u.replace(/\/+$/, ''));

const EnvSchema = z.object({
  LORA_EDGE_GATEWAY_URL: httpUrl,
  LORA_EDGE_RUNNER_TOKEN: z.string().min(16, 'at least 16 characters'),
  LORA_EDGE_RUNNER_ID: z.string().regex(gpu.RUNNER_ID_RE, 'letters, digits, dot, dash, underscore; at most 64').optional(),
  LORA_EDGE_RUNNER_HOST: z.string().min(1).default('0.0.0.0'),
  LORA_EDGE_RUNNER_PORT: int(0, 65535).default(8790),
  LORA_EDGE_RUNNER_URL: httpUrl.optional(),
  LORA_EDGE_BLOBS: z
    .string()
    .regex(/^(gateway|s3|dir:.+)$/, "'gateway', 's3' or 'dir:/path'")
    .default('gateway'),
  LORA_EDGE_S3_ENDPOINT: httpUrl.optional(),
  LORA_EDGE_S3_BUCKET: z.string().min(1).optional(),
  AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
  AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
  LORA_EDGE_CACHE_DIR: z.string().min(1).default(join(tmpdir(), 'lora-edge-runner-cache')),
  LORA_EDGE_BACKEND: z.enum(['cpu-native', 'cuda', 'js', 'auto']).default('auto'),
  LORA_EDGE_SLOTS: int(1, 4096).default(16),
  LORA_EDGE_KV_BYTES: byteSize.default(GiB),
  LORA_EDGE_ADAPTER_BYTES: byteSize.default(512 * 2 ** 20),
  LORA_EDGE_MAX_MODEL_BYTES: byteSize.default(16 * GiB),
  LORA_EDGE_MODEL_CACHE_BYTES: byteSize.optional(),
  LORA_EDGE_DRAIN_MS: int(0, 24 * 3600_000).default(30_000),
  LORA_EDGE_MIN_STEP_MS: int(0, 60_000).default(0),
});

/** Reads the settings; throws one ConfigError listing every bad variable by name. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): RunnerConfig {
  // Empty strings count as unset (an `ENV=` line in a compose file).
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const r = EnvSchema.safeParse(present);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `${String(i.path[0] ?? '?')}: ${i.code === 'invalid_type' ? 'required' : i.message}`);
    throw new ConfigError(`invalid runner settings:\n  ${lines.join('\n  ')}`);
  }
  const e = r.data;
  let blobs: BlobsConfig;
  if (e.LORA_EDGE_BLOBS === 'gateway') blobs = { kind: 'gateway' };
  else if (e.LORA_EDGE_BLOBS.startsWith('dir:')) blobs = { kind: 'dir', dir: e.LORA_EDGE_BLOBS.slice(4) };
  else {
    const missing = (['LORA_EDGE_S3_ENDPOINT', 'LORA_EDGE_S3_BUCKET', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const).filter(
      (k) => e[k] === undefined,
    );
    if (missing.length) throw new ConfigError(`invalid runner settings: LORA_EDGE_BLOBS=s3 needs ${missing.join(', ')}`);
    blobs = {
      kind: 's3',
      endpoint: e.LORA_EDGE_S3_ENDPOINT as string,
      bucket: e.LORA_EDGE_S3_BUCKET as string,
      accessKeyId: e.AWS_ACCESS_KEY_ID as string,
      secretAccessKey: e.AWS_SECRET_ACCESS_KEY as string,
      region: 'auto',
    };
  }
  // The default id must match RUNNER_ID_RE: a hostname may carry characters it refuses.
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '') || 'runner';
  return {
    gatewayUrl: e.LORA_EDGE_GATEWAY_URL,
    token: e.LORA_EDGE_RUNNER_TOKEN,
    id: e.LORA_EDGE_RUNNER_ID ?? `${host.slice(0, 50)}-${process.pid}`,
    host: e.LORA_EDGE_RUNNER_HOST,
    port: e.LORA_EDGE_RUNNER_PORT,
    advertisedUrl: e.LORA_EDGE_RUNNER_URL,
    blobs,
    cacheDir: e.LORA_EDGE_CACHE_DIR,
    backend: e.LORA_EDGE_BACKEND,
    slots: e.LORA_EDGE_SLOTS,
    kvBytes: e.LORA_EDGE_KV_BYTES,
    adapterBytes: e.LORA_EDGE_ADAPTER_BYTES,
    maxModelBytes: e.LORA_EDGE_MAX_MODEL_BYTES,
    modelCacheBytes: e.LORA_EDGE_MODEL_CACHE_BYTES ?? e.LORA_EDGE_MAX_MODEL_BYTES,
    drainMs: e.LORA_EDGE_DRAIN_MS,
    minStepMs: e.LORA_EDGE_MIN_STEP_MS,
  };
}
