import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // Root at the repository so the golden fixtures (imported as Data modules) sit under it.
  root: here('../..'),
  server: { fs: { allow: [here('../..')] } },
  plugins: [cloudflareTest({ wrangler: { configPath: here('./wrangler.jsonc') } })],
  test: { root: here('../..'), name: 'merge', include: ['services/merge/src/**/*.test.ts', 'services/merge/test/**/*.test.ts'] },
});
