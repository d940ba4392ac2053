import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeTempDirs, TestGateway, TOKEN, tempDir } from './testing.ts';

const here = dirname(fileURLToPath(import.meta.url));
const tsx = join(here, '..', '..', '..', 'node_modules', '.bin', 'tsx');

let gw: TestGateway;
beforeAll(async () => {
  gw = await new TestGateway().start();
});
afterAll(async () => {
  await gw.close();
  removeTempDirs();
});

describe('main.ts as a process', () => {
  it('prints its ready line, registers, and on SIGTERM reports draining and exits 0', async () => {
    const child = spawn(tsx, [join(here, 'main.ts')], {
      env: {
        ...process.env,
        LORA_EDGE_GATEWAY_URL: gw.url,
        LORA_EDGE_RUNNER_TOKEN: TOKEN,
        LORA_EDGE_RUNNER_ID: 'r-main',
        LORA_EDGE_RUNNER_HOST: '127.0.0.1',
        LORA_EDGE_RUNNER_PORT: '0',
        LORA_EDGE_CACHE_DIR: tempDir('lora-edge-main-'),
        LORA_EDGE_BACKEND: 'js',
        LORA_EDGE_DRAIN_MS: '1000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      await gw.until(() => /lora-edge runner ready: http:\/\/127\.0\.0\.1:\d+\n/.test(out), 30_000, `the ready line (${err})`);
      const url = /ready: (\S+)/.exec(out)![1]!;
      await gw.until(() => gw.registrations.some((r) => r.id === 'r-main' && r.url === url), 10_000, 'registration');
      expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok' });
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(gw.heartbeats.some((h) => h.draining)).toBe(true);
      // Logs are JSON lines (the ready line aside).
      const logs = out.split('\n').filter((l) => l.startsWith('{'));
      expect(logs.map((l) => JSON.parse(l).msg)).toEqual(expect.arrayContaining(['listening', 'draining', 'drained']));
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('exits 2 naming a missing variable', async () => {
    const child = spawn(tsx, [join(here, 'main.ts')], {
      env: { PATH: process.env.PATH, LORA_EDGE_GATEWAY_URL: gw.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(2);
    expect(err).toMatch(/LORA_EDGE_RUNNER_TOKEN: required/);
  });
});
