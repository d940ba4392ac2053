import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const root = here('../..');
const inferBundle = here('./.wrangler/test-infer');
const gpuBundle = here('./.wrangler/test-gpu');

/**
 * The real infer and GPU gateway Workers serve the router's INFER and GPU bindings in the tests:
 * bundled by wrangler (as `wrangler deploy` would, onnxruntime's .wasm as a CompiledWasm module)
 * and run beside the router as auxiliary workers of the same miniflare, sharing its R2 bucket.
 */
function bundle(config: string, outdir: string): { path: string; type: 'ESModule' | 'CompiledWasm' }[] {
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
 * A stand-in for the merge service: records what the router sends it (GET /__calls lists it) and
 * answers 202 as POST /v1/merges does. The merge service itself is exercised end to end
 * (test/e2e/stack.test.ts) and by its own tests.
 */
const MERGE_STUB = `
const calls = [];
export default {
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === '/__calls') return Response.json(calls);
    const text = req.method === 'GET' || req.method === 'HEAD' ? '' : await req.text();
    calls.push({ method: req.method, path: url.pathname, authorization: req.headers.get('authorization'), body: text });
    return Response.json({ stub: 'merge', path: url.pathname }, { status: url.pathname === '/v1/merges' ? 202 : 200 });
  },
};`;

export default defineConfig({
  root,
  server: { fs: { allow: [root] } },
  plugins: [
    cloudflareTest(() => ({
      wrangler: { configPath: here('./wrangler.jsonc') },
      miniflare: {
        bindings: { ADMIN_TOKEN: 'test-admin-token' },
        workers: [
          {
            name: 'lora-edge-infer',
            modulesRoot: inferBundle,
            modules: bundle(here('../infer/wrangler.jsonc'), inferBundle),
            compatibilityDate: '2026-04-01',
            r2Buckets: { BLOBS: 'lora-edge-dev' },
            bindings: { EDGE_MEMORY_BUDGET: '134217728', MAX_NEW_TOKENS: '1024' },
          },
          { name: 'lora-edge-merge', modules: true, script: MERGE_STUB, compatibilityDate: '2026-04-01' },
          {
            // No runner registers in these tests: the GPU path answers 503 gpu_unavailable (the
            // path with runners is tested in services/gpu and end to end in test/e2e).
            name: 'lora-edge-gpu',
            modulesRoot: gpuBundle,
            modules: bundle(here('../gpu/wrangler.jsonc'), gpuBundle),
            compatibilityDate: '2026-04-01',
            r2Buckets: { BLOBS: 'lora-edge-dev' },
            durableObjects: { JOBS: { className: 'GpuJob', useSQLite: true }, POOL: { className: 'RunnerPool', useSQLite: true } },
            queueProducers: { GPU_QUEUE: { queueName: 'lora-edge-gpu-jobs-dev' }, GPU_DLQ: { queueName: 'lora-edge-gpu-jobs-dlq-dev' } },
            queueConsumers: {
              'lora-edge-gpu-jobs-dev': { maxBatchTimeout: 0, maxRetries: 5, deadLetterQueue: 'lora-edge-gpu-jobs-dlq-dev' },
              'lora-edge-gpu-jobs-dlq-dev': { maxBatchTimeout: 0 },
            },
            bindings: { RUNNER_TOKEN: 'test-runner-token', GPU_LEASE_MS: '2000', GPU_QUEUE_TIMEOUT_MS: '5000' },
          },
        ],
      },
    })),
  ],
  test: {
    root,
    name: 'router',
    include: ['services/router/src/**/*.test.ts', 'services/router/test/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
