/**
 * A merge build off the runner's main thread: the math is synchronous and can run for minutes,
 * and the main thread must keep heartbeating and posting keep-alives meanwhile (or the gateway
 * would take the job for lost). Receives the payload and blob settings; answers with progress
 * messages and one result or error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { buildArtifact, LoraEdgeError, MergePayloadSchema } from '@lora-edge/shared';
import { fuseModuleNative } from '../engine/fuse.ts';
import type { BlobsConfig } from './config.ts';
import { toJobError } from './errors.ts';
import { objectStore } from './store.ts';

export interface MergeWorkerData {
  payload: unknown;
  blobs: BlobsConfig;
  gatewayUrl: string;
  token: string;
}

export type MergeWorkerMessage =
  | { type: 'progress'; fraction: number; stage: string }
  | { type: 'done'; result: Record<string, unknown> }
  | { type: 'error'; error: { code: string; message: string; retryable: boolean } };

const data = workerData as MergeWorkerData;
const post = (m: MergeWorkerMessage) => parentPort?.postMessage(m);

try {
  const parsed = MergePayloadSchema.safeParse(data.payload);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new LoraEdgeError('invalid_argument', `the merge payload is invalid: ${i?.path.join('.')}: ${i?.message}`, { field: 'params' });
  }
  const store = objectStore(data.blobs, data.gatewayUrl, data.token);
  // The native fuse: the heavy part of a fused build, on every core.
  const result = await buildArtifact(store, parsed.data, async (fraction, stage) => post({ type: 'progress', fraction, stage }), {
    fuse: fuseModuleNative,
  });
  post({ type: 'done', result });
} catch (e) {
  post({ type: 'error', error: toJobError(e) });
}
