/**
 * Real Workers beside the one under test in vitest-pool-workers: bundled by wrangler (as
 * `wrangler deploy` would; .wasm as CompiledWasm modules) and run as auxiliary workers of the same
 * miniflare, sharing its R2 bucket. Used by the services' vitest configs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export function bundleWorker(config: string, outdir: string): { path: string; type: 'ESModule' | 'CompiledWasm' }[] {
  execFileSync(join(root, 'node_modules', '.bin', 'wrangler'), ['deploy', '--dry-run', '--env', '', '--outdir', outdir, '-c', config], {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' },
    stdio: 'pipe',
  });
  const main = join(outdir, 'index.js');
  if (!existsSync(main) || statSync(main).size === 0) throw new Error(`bundling ${config} produced no ${main}`);
  // Listed by hand: the bundle also holds dynamic imports miniflare will not follow.
  const wasm = readdirSync(outdir).filter((f) => f.endsWith('.wasm'));
  return [{ type: 'ESModule', path: main }, ...wasm.map((f) => ({ type: 'CompiledWasm' as const, path: join(outdir, f) }))];
}

/**
 * The GPU gateway Worker (services/gpu) with its Durable Objects and queues, no runner registered:
 * jobs for the GPU path are refused 503 gpu_unavailable (the path with runners is tested in
 * services/gpu and end to end in test/e2e).
 */
export function gpuGatewayWorker(outdir: string) {
  return {
    name: 'lora-edge-gpu',
    modulesRoot: outdir,
    modules: bundleWorker(join(root, 'services', 'gpu', 'wrangler.jsonc'), outdir),
    compatibilityDate: '2026-04-01',
    r2Buckets: { BLOBS: 'lora-edge-dev' },
    durableObjects: { JOBS: { className: 'GpuJob', useSQLite: true }, POOL: { className: 'RunnerPool', useSQLite: true } },
    queueProducers: { GPU_QUEUE: { queueName: 'lora-edge-gpu-jobs-dev' }, GPU_DLQ: { queueName: 'lora-edge-gpu-jobs-dlq-dev' } },
    queueConsumers: {
      'lora-edge-gpu-jobs-dev': { maxBatchTimeout: 0, maxRetries: 5, deadLetterQueue: 'lora-edge-gpu-jobs-dlq-dev' },
      'lora-edge-gpu-jobs-dlq-dev': { maxBatchTimeout: 0 },
    },
    bindings: { RUNNER_TOKEN: 'test-runner-token', GPU_LEASE_MS: '2000', GPU_QUEUE_TIMEOUT_MS: '5000' },
  };
}
