/**
 * Test support: a small node:http gateway speaking the runner protocol (registration, heartbeats,
 * events under the shared exactly-once rules of gpu/job.ts, blobs from the fixtures laid out as
 * R2 keys), and a runner config pointed at it.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterKey, filesDigest, gpu, modelKey } from '@lora-edge/shared';
import { ADAPTERS, STORIES } from '../../../test/fixtures.ts';
import type { RunnerConfig } from './config.ts';

export const TOKEN = 'test-runner-token-0123456789abcdef';

export interface EventsPost {
  job: string;
  ev: gpu.JobEvents;
  reply: gpu.EventsReply | { status: number };
}

/** Overrides the gateway's answer to one events post (return undefined to answer normally). */
export type EventsHook = (
  job: gpu.JobRecord,
  ev: gpu.JobEvents,
  n: number,
) => { status: number; body?: unknown } | gpu.EventsReply | undefined | Promise<gpu.EventsReply | undefined>;

export class TestGateway {
  readonly blobs = new Map<string, Uint8Array>();
  readonly blobGets: string[] = [];
  readonly blobPuts: string[] = [];
  /** Sizes of the event batches received (POST /runners/events). */
  readonly batches: number[] = [];
  readonly registrations: gpu.RunnerRegistration[] = [];
  readonly heartbeats: gpu.RunnerLoad[] = [];
  readonly jobs = new Map<string, gpu.JobRecord>();
  readonly posts: EventsPost[] = [];
  readonly runners = new Map<string, gpu.RunnerRegistration>();
  eventsHook: EventsHook | undefined;
  heartbeatMs = 100;
  leaseMs = 3_000;
  /** Answer registrations with 503 while true (a gateway still starting). */
  refuseRegistrations = false;
  private server: Server | undefined;
  url = '';
  private waiters: (() => void)[] = [];

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        res.writeHead(500).end(String(e));
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => {
      this.server?.close(() => r());
      this.server?.closeAllConnections();
    });
  }

  /** Resolves when `pred` holds (checked after every request), or rejects after `ms`. */
  async until(pred: () => boolean, ms = 20_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** A job record as the gateway's job object holds it: attempt `attempt` resuming after `held` ids. */
  newJob(id: string, maxTokens: number, attempt = 1, held: number[] = [], runner = 'r1'): gpu.JobRecord {
    const now = Date.now();
    const job = gpu.newJob(id, 'generate', maxTokens, 5, now);
    job.ids.push(...held);
    while (job.attempts.length < attempt) gpu.retryJob(job, { code: 'lost', message: 'test' }, now);
    gpu.markRunning(job, attempt, runner, now);
    this.jobs.set(id, job);
    return job;
  }

  /** POSTs a job to the runner as the gateway would. */
  async dispatch(runnerUrl: string, body: unknown, token = TOKEN): Promise<{ status: number; body: unknown }> {
    const res = await fetch(`${runnerUrl}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  postsOf(job: string): EventsPost[] {
    return this.posts.filter((p) => p.job === job);
  }

  /** One job's post, as the gateway's rules answer it (hooks may answer instead). */
  private async applyPost(id: string, ev: gpu.JobEvents): Promise<{ status: number; body: unknown }> {
    const job = this.jobs.get(id);
    if (!job) return { status: 404, body: { error: 'no such job' } };
    const n = this.postsOf(id).length;
    const hooked = await this.eventsHook?.(job, ev, n);
    if (hooked && 'status' in hooked) {
      this.posts.push({ job: id, ev, reply: { status: hooked.status } });
      return { status: hooked.status, body: hooked.body ?? {} };
    }
    const out = gpu.applyEvents(job, ev, Date.now());
    const reply = hooked ?? { next: job.ids.length, current: out.current };
    this.posts.push({ job: id, ev, reply });
    return { status: 200, body: reply };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      for (const w of this.waiters.splice(0)) w();
    };
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { error: 'unauthorized' });
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'GET' && path.startsWith('/runners/blobs/')) {
      const key = path.slice('/runners/blobs/'.length);
      this.blobGets.push(key);
      const b = this.blobs.get(key);
      if (!b) return send(404, { error: 'not found' });
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(b);
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    // Artifact writes of merge builds, as the gateway allows them (artifacts/<recipe>/<file> only).
    if (req.method === 'PUT' && path.startsWith('/runners/blobs/')) {
      const key = path.slice('/runners/blobs/'.length);
      if (!/^artifacts\/[0-9a-f]{64}\/[A-Za-z0-9._-]+$/.test(key)) return send(400, { error: 'runners write only artifacts' });
      this.blobs.set(key, new Uint8Array(Buffer.concat(chunks)));
      this.blobPuts.push(key);
      return send(201, { key });
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') as unknown;
    if (req.method === 'POST' && path === '/runners/register') {
      if (this.refuseRegistrations) return send(503, { error: 'starting' });
      const reg = gpu.RunnerRegistrationSchema.parse(body);
      this.registrations.push(reg);
      this.runners.set(reg.id, reg);
      return send(200, { ok: true, heartbeat_ms: this.heartbeatMs, lease_ms: this.leaseMs });
    }
    let m = /^\/runners\/([^/]+)\/heartbeat$/.exec(path);
    if (req.method === 'POST' && m) {
      const load = gpu.RunnerLoadSchema.parse(body);
      this.heartbeats.push(load);
      return send(200, { ok: true, known: this.runners.has(decodeURIComponent(m[1] as string)) });
    }
    m = /^\/runners\/jobs\/([^/]+)\/events$/.exec(path);
    if (req.method === 'POST' && m) {
      const r = await this.applyPost(decodeURIComponent(m[1] as string), gpu.JobEventsSchema.parse(body));
      return send(r.status, r.body);
    }
    if (req.method === 'POST' && path === '/runners/events') {
      const batch = gpu.BatchEventsSchema.parse(body);
      this.batches.push(batch.events.length);
      const replies = [];
      for (const { job, ...ev } of batch.events) {
        const r = await this.applyPost(job, ev);
        replies.push(r.status === 200 ? { job, status: 200, ...(r.body as gpu.EventsReply) } : { job, status: r.status, error: 'refused' });
      }
      return send(200, { replies });
    }
    send(404, { error: `no route ${req.method} ${path}` });
  }
}

const read = (path: string) => {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
};

/** Puts the stories260k model under its real files digest; returns the digest and the weights size. */
export async function addStories(gw: TestGateway): Promise<{ digest: string; bytes: number }> {
  const files = { 'config.json': read(join(STORIES, 'config.json')), 'model.safetensors': read(join(STORIES, 'model.safetensors')) };
  const { digest } = await filesDigest(files);
  for (const [name, data] of Object.entries(files)) gw.blobs.set(modelKey(digest, name), data);
  return { digest, bytes: files['model.safetensors'].byteLength };
}

export async function addAdapter(gw: TestGateway, fixture: string, tenant = 'acme', name = fixture): Promise<string> {
  const files = {
    [ADAPTER_CONFIG_FILE]: read(join(ADAPTERS, fixture, ADAPTER_CONFIG_FILE)),
    [ADAPTER_WEIGHTS_FILE]: read(join(ADAPTERS, fixture, ADAPTER_WEIGHTS_FILE)),
  };
  const { digest } = await filesDigest(files);
  for (const [file, data] of Object.entries(files)) gw.blobs.set(adapterKey(tenant, name, digest, file), data);
  return digest;
}

const tempDirs: string[] = [];

/** A fresh temp folder, removed by removeTempDirs. */
export function tempDir(prefix = 'lora-edge-runner-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

export function removeTempDirs(): void {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export function testConfig(gatewayUrl: string, over: Partial<RunnerConfig> = {}): RunnerConfig {
  return {
    gatewayUrl,
    token: TOKEN,
    id: 'r1',
    host: '127.0.0.1',
    port: 0,
    advertisedUrl: undefined,
    blobs: { kind: 'gateway' },
    cacheDir: tempDir(),
    backend: 'auto',
    slots: 4,
    kvBytes: 64 * 2 ** 20,
    adapterBytes: 64 * 2 ** 20,
    maxModelBytes: 16 * 2 ** 20,
    modelCacheBytes: 64 * 2 ** 20,
    drainMs: 30_000,
    minStepMs: 0,
    ...over,
  };
}

/** A generate job body (spec fields all explicit, as the gateway sends them). */
export function generateJob(
  id: string,
  digest: string,
  prompt: number[],
  maxTokens: number,
  over: Partial<gpu.GenerationSpec> = {},
  attempt = 1,
  resume: number[] = [],
): gpu.RunnerJob {
  return {
    kind: 'generate',
    id,
    attempt,
    resume_ids: resume,
    spec: {
      model: { digest },
      adapters: [],
      mode: 'unmerged',
      prompt_ids: prompt,
      max_tokens: maxTokens,
      temperature: 0,
      top_k: 0,
      top_p: 1,
      seed: 0,
      ignore_eos: true,
      stop_token_ids: [],
      ...over,
    },
  };
}
