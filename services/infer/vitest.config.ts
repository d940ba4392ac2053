import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // Root at the repository: the golden fixtures and onnxruntime-web's .wasm (node_modules) must sit under it.
  root: here('../..'),
  server: { fs: { allow: [here('../..')] } },
  plugins: [cloudflareTest({ wrangler: { configPath: here('./wrangler.jsonc') } })],
  test: {
    root: here('../..'),
    name: 'infer',
    include: ['services/infer/src/**/*.test.ts', 'services/infer/test/**/*.test.ts'],
    testTimeout: 60_000,
  },
});
