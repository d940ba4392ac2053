import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';
import { bundleWorker, gpuGatewayWorker } from '../../test/workers.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const root = here('../..');
const inferBundle = here('./.wrangler/test-infer');
const gpuBundle = here('./.wrangler/test-gpu');

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
            modules: bundleWorker(here('../infer/wrangler.jsonc'), inferBundle),
            compatibilityDate: '2026-04-01',
            r2Buckets: { BLOBS: 'lora-edge-dev' },
            bindings: { EDGE_MEMORY_BUDGET: '134217728', MAX_NEW_TOKENS: '1024' },
          },
          { name: 'lora-edge-merge', modules: true, script: MERGE_STUB, compatibilityDate: '2026-04-01' },
          // The real infer and GPU gateway Workers serve the INFER and GPU bindings.
          gpuGatewayWorker(gpuBundle),
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
