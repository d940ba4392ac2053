/**
 * A runner assembled from its settings: backend, blob cache, model and adapter stores, job table,
 * HTTP server, gateway registration and heartbeats. main.ts runs one; tests start them in-process.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { loadBackend } from '../backend/index.ts';
import type { Backend } from '../backend/types.ts';
import { createApp } from './app.ts';
import { BlobCache, type BlobSource, blobSource } from './blobs.ts';
import type { RunnerConfig } from './config.ts';
import { Control } from './control.ts';
import { GatewayClient } from './gateway.ts';
import { DEFAULT_HANDLERS, type JobHandler, type JobKind, JobTable } from './jobs.ts';
import { jsonLogger, type Logger } from './log.ts';
import { mergeHandler } from './merge.ts';
import { AdapterStore, ModelStore } from './models.ts';

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export interface RunnerDeps {
  backend?: Backend;
  blobs?: BlobSource;
  fetch?: typeof fetch;
  log?: Logger;
  handlers?: Partial<Record<JobKind, JobHandler>>;
}

export interface Runner {
  url: string;
  app: Hono;
  config: RunnerConfig;
  jobs: JobTable;
  control: Control;
  models: ModelStore;
  backend: Backend;
  log: Logger;
  /** Graceful drain (refuse new jobs, tell the gateway, finish or hand back the rest), then close. */
  shutdown(): Promise<{ finished: number; handedBack: number }>;
  /** Stops at once: no drain. */
  close(): Promise<void>;
}

export async function startRunner(config: RunnerConfig, deps: RunnerDeps = {}): Promise<Runner> {
  const log = deps.log ?? jsonLogger({ runner: config.id });
  const backend = deps.backend ?? loadBackend(config.backend);
  const gateway = new GatewayClient(config.gatewayUrl, config.token, deps.fetch);
  const cache = new BlobCache(config.cacheDir, deps.blobs ?? blobSource(config.blobs, config.gatewayUrl, config.token));
  const models = new ModelStore({
    backend,
    cache,
    budgetBytes: config.modelCacheBytes,
    maxModelBytes: config.maxModelBytes,
    engine: {
      maxBatch: config.slots,
      kvBudgetBytes: config.kvBytes,
      adapterBudgetBytes: config.adapterBytes,
      minStepMs: config.minStepMs,
    },
  });
  const adapters = new AdapterStore(cache, config.adapterBytes);
  let timing = () => ({ heartbeatMs: 5_000, leaseMs: 30_000 });
  const merge = mergeHandler({ blobs: config.blobs, gatewayUrl: config.gatewayUrl, token: config.token });
  const handlers = { ...DEFAULT_HANDLERS, merge, ...deps.handlers };
  const jobs = new JobTable({
    runner: config.id,
    gateway,
    models,
    adapters,
    slots: config.slots,
    queueLimit: config.slots,
    kvBytes: config.kvBytes,
    adapterBytes: config.adapterBytes,
    maxModelBytes: config.maxModelBytes,
    timing: () => timing(),
    log,
    handlers,
  });
  const app = createApp({ id: config.id, token: config.token, jobs, log });
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const url = config.advertisedUrl ?? `http://127.0.0.1:${port}`;
  const control = new Control({
    gateway,
    log,
    load: () => jobs.load(),
    registration: () => ({
      id: config.id,
      url,
      slots: config.slots,
      max_model_bytes: config.maxModelBytes,
      backend: backend.name,
      version: VERSION,
      kinds: (Object.keys(handlers) as JobKind[]).filter((k) => handlers[k]),
      load: jobs.load(),
    }),
  });
  timing = control.timing;
  void control.start();
  log.log('info', 'listening', { url, port, backend: backend.name, blobs: config.blobs.kind });

  const closeServer = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await control.stop();
      await closeServer();
      models.close();
    })();
    return closed;
  };
  return {
    url,
    app,
    config,
    jobs,
    control,
    models,
    backend,
    log,
    async shutdown() {
      const draining = jobs.drain(config.drainMs);
      control.beat(); // the gateway stops sending jobs now, not a heartbeat later
      log.log('info', 'draining', { jobs: jobs.jobs.length, drain_ms: config.drainMs });
      const r = await draining;
      log.log('info', 'drained', r);
      await close();
      return r;
    },
    close,
  };
}
