import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: [
            'shared/src/**/*.test.ts',
            'cli/src/**/*.test.ts',
            'gpu-runner/src/**/*.test.ts',
            'test/**/*.test.ts',
            'infra/**/*.test.ts',
          ],
          testTimeout: 60_000,
        },
      },
      'services/*/vitest.config.ts',
    ],
  },
});
