import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createNativeBackend, loadNativeAddon } from './native.ts';

const native = createNativeBackend();

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const settle = () => new Promise((r) => setTimeout(r, 50));

async function rssAfterGc(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await settle();
  }
  return process.memoryUsage().rss;
}

describe('native memory', () => {
  const MB = 2 ** 20;
  const data = new Float32Array(16 * MB); // 64 MB, reused so only the native copies vary

  it('release frees a weight at once', async () => {
    const before = await rssAfterGc();
    const w = native.createWeight({ dtype: 'f32', out: 4096, in: 4096, data });
    expect(process.memoryUsage().rss - before).toBeGreaterThan(48 * MB);
    native.release(w);
    expect(process.memoryUsage().rss - before).toBeLessThan(16 * MB);
  });

  it('the finalizer frees an unreachable weight', async () => {
    const before = await rssAfterGc();
    let w: unknown = native.createWeight({ dtype: 'f32', out: 4096, in: 4096, data });
    expect(w).toBeDefined();
    expect(process.memoryUsage().rss - before).toBeGreaterThan(48 * MB);
    w = undefined;
    expect(w).toBeUndefined();
    expect((await rssAfterGc()) - before).toBeLessThan(16 * MB);
  });
});

describe('worker threads', () => {
  it('several JavaScript threads can use the addon at once', async () => {
    const path = new URL('../../build/Release/lora_edge_native.node', import.meta.url).pathname;
    expect(loadNativeAddon().addon).toBeDefined();
    // Each worker runs matmuls against its own weight and checks them with plain JS.
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.path);
      const out = 300, inF = 200, n = 3;
      const W = new Float32Array(out * inF).map((_, i) => ((i * 7919 + workerData.seed) % 101) / 101 - 0.5);
      const x = new Float32Array(n * inF).map((_, i) => ((i * 31 + workerData.seed) % 17) / 17 - 0.5);
      const w = a.createWeight({ dtype: 'f32', out, in: inF, data: W });
      let worst = 0;
      for (let rep = 0; rep < 200; rep++) {
        const y = new Float32Array(n * out);
        a.matmul(y, x, n, w);
        for (let i = 0; i < n; i++) for (let j = 0; j < out; j++) {
          let s = 0;
          if (rep % 50 === 0) {
            for (let k = 0; k < inF; k++) s += W[j * inF + k] * x[i * inF + k];
            worst = Math.max(worst, Math.abs(s - y[i * out + j]));
          }
        }
      }
      parentPort.postMessage(worst);`;
    const run = (seed: number) =>
      new Promise<number>((resolve, reject) => {
        const wk = new Worker(code, { eval: true, workerData: { path, seed } });
        wk.once('message', resolve);
        wk.once('error', reject);
      });
    const worst = await Promise.all([run(1), run(2), run(3)]);
    for (const e of worst) expect(e).toBeLessThan(1e-4);
  });
});
