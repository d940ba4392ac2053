/**
 * `merge`: a merge / fuse / NF4 build the merge service found too heavy for a Worker. It runs
 * shared/builder (the merge Worker's own code) in a worker thread over the runner's object store,
 * writes the artifact manifest last, and ends the attempt with the result. A retried build
 * rewrites the same content-addressed files, or finds the manifest and reuses it.
 */
import { Worker } from 'node:worker_threads';
import type { BlobsConfig } from './config.ts';
import { RunnerError } from './errors.ts';
import type { JobHandler } from './jobs.ts';
import type { MergeWorkerData, MergeWorkerMessage } from './merge-worker.ts';

export interface MergeSettings {
  blobs: BlobsConfig;
  gatewayUrl: string;
  token: string;
}

/** The worker module runs TypeScript: tsx's loader is registered in the thread first. */
function startWorker(data: MergeWorkerData): Worker {
  const api = import.meta.resolve('tsx/esm/api');
  const target = new URL('./merge-worker.ts', import.meta.url).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
  return new Worker(code, { eval: true, workerData: data });
}

export function mergeHandler(settings: MergeSettings): JobHandler {
  return async (job) => {
    const spec = job.job;
    if (spec.kind !== 'merge') throw new Error('mergeHandler takes merge jobs');
    job.state = 'running';
    const worker = startWorker({ payload: spec.spec.params, ...settings });
    job.onCancelled(() => void worker.terminate());
    const outcome = await new Promise<MergeWorkerMessage>((resolve) => {
      worker.on('message', (m: MergeWorkerMessage) => {
        if (m.type === 'progress') job.poster.report({ fraction: Math.min(1, Math.max(0, m.fraction)), stage: m.stage.slice(0, 200) });
        else resolve(m);
      });
      worker.on('error', (e) => resolve({ type: 'error', error: { code: 'runner_error', message: e.message, retryable: true } }));
      worker.on('exit', (code) => {
        const message = job.cancelled ? `cancelled (${job.cancelled})` : `the merge worker exited (${code})`;
        resolve({ type: 'error', error: { code: 'runner_error', message, retryable: true } });
      });
    });
    await worker.terminate();
    if (job.cancelled) return;
    if (outcome.type === 'error') throw new RunnerError(outcome.error.code, outcome.error.message, outcome.error.retryable);
    if (outcome.type !== 'done') return;
    job.state = 'ending';
    job.poster.close({ done: { finish_reason: 'stop', prompt_tokens: 0, artifact: outcome.result } });
  };
}
