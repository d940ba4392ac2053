/** Limits from vars (text), with the defaults wrangler.jsonc documents. */

function int(v: string | undefined, fallback: number): number {
  const n = v === undefined ? Number.NaN : Number(v);
  return Number.isSafeInteger(n) && n > 0 ? n : fallback;
}

export interface Limits {
  maxAdapterBytes: number;
  maxModelBytes: number;
  maxEdgeJobBytes: number;
  webhookToleranceS: number;
  webhookBodyBytes: number;
  fetchAllowedHosts: string[];
}

export function limits(env: Env): Limits {
  const e = env as unknown as Record<string, string | undefined>;
  return {
    maxAdapterBytes: int(e.MAX_ADAPTER_BYTES, 50 * 1024 * 1024),
    maxModelBytes: int(e.MAX_MODEL_BYTES, 64 * 1024 * 1024),
    maxEdgeJobBytes: int(e.MAX_EDGE_JOB_BYTES, 64 * 1024 * 1024),
    webhookToleranceS: int(e.WEBHOOK_TOLERANCE_S, 300),
    webhookBodyBytes: 64 * 1024,
    fetchAllowedHosts: (e.FETCH_ALLOWED_HOSTS ?? 'huggingface.co')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter(Boolean),
  };
}
