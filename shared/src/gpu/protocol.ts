/**
 * The GPU path's wire contract between the gateway Worker (services/gpu: queue, job objects,
 * runner registry) and the runners (gpu-runner's HTTP service). Every message crossing a trust
 * boundary is parsed with these schemas; the tolerant `.loose()` objects let a newer peer add
 * fields without breaking an older one.
 *
 *   runner  → gateway  POST /runners/register        RunnerRegistration → RegisterReply
 *   runner  → gateway  POST /runners/:id/heartbeat   RunnerLoad          → HeartbeatReply
 *   gateway → runner   POST /v1/jobs                 RunnerJob           → 202 JobAccepted | 4xx/503 JobRefused
 *   runner  → gateway  POST /runners/jobs/:id/events JobEvents           → EventsReply (409 stale attempt)
 *   runner  → gateway  POST /runners/events          BatchEvents         → BatchReply (many jobs at once)
 *   runner  → gateway  GET  /runners/blobs/<key>     the R2 object (models, adapters)
 *   runner  → gateway  PUT  /runners/blobs/<key>     artifact files (merge jobs; manifest last)
 *
 * All of them carry `Authorization: Bearer <RUNNER_TOKEN>`, one shared secret.
 */
import { z } from 'zod';
import { DIGEST_RE } from '../storage/digest.ts';
import type { Capacity } from './runners.ts';

export const RUNNER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const JOB_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/;

const digest = z.string().regex(DIGEST_RE, 'a SHA-256 hex digest');
const tokenId = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31 - 1);
const count = z.number().int().nonnegative();
const bytes = z.number().nonnegative().finite();

export const RunnerLoadSchema = z
  .object({
    /** Sequences generating now, and jobs accepted but not yet admitted to the batch. */
    active: count,
    queued: count,
    /** Free and total KV-cache bytes (admission is by free KV bytes). */
    kv_free_bytes: bytes,
    kv_total_bytes: bytes,
    /** Free bytes of the adapter (LoRA stack) cache. */
    adapter_free_bytes: bytes,
    /** Set while the runner drains on SIGTERM: it takes no new jobs. */
    draining: z.boolean(),
  })
  .loose();
export type RunnerLoad = z.infer<typeof RunnerLoadSchema>;

export const RunnerRegistrationSchema = z
  .object({
    id: z.string().regex(RUNNER_ID_RE, 'letters, digits, dot, dash, underscore; at most 64'),
    /** Where the gateway reaches the runner (POST {url}/v1/jobs). */
    url: z.url({ protocol: /^https?$/ }),
    /** Concurrent sequences it generates (its batch size). */
    slots: z.number().int().min(1).max(4096),
    /** The largest model (weights bytes) it can hold. */
    max_model_bytes: bytes,
    backend: z.string().max(64),
    version: z.string().max(64),
    /** Kinds of job it takes. */
    kinds: z.array(z.enum(['generate', 'merge'])).min(1),
    load: RunnerLoadSchema,
  })
  .loose();
export type RunnerRegistration = z.infer<typeof RunnerRegistrationSchema>;

export const RegisterReplySchema = z.object({
  ok: z.literal(true),
  /** How often the gateway wants heartbeats; a runner silent for lease_ms is considered gone. */
  heartbeat_ms: z.number().int().positive(),
  lease_ms: z.number().int().positive(),
});
export type RegisterReply = z.infer<typeof RegisterReplySchema>;

export const HeartbeatReplySchema = z.object({
  ok: z.boolean(),
  /** false: the gateway does not know this runner (it expired); register again. */
  known: z.boolean(),
});

/** The generation a job asks for: the engine's request (services/infer's shape, all fields explicit). */
export const GenerationSpecSchema = z.object({
  model: z.object({ digest, bytes: bytes.optional() }),
  adapters: z.array(
    z.object({ tenant: z.string().min(1).max(128), name: z.string().min(1).max(256), digest, weight: z.number().finite() }),
  ),
  mode: z.enum(['merged', 'unmerged']),
  prompt_ids: z.array(tokenId).min(1),
  max_tokens: z
    .number()
    .int()
    .min(1)
    .max(1 << 20),
  temperature: z.number().finite().min(0),
  top_k: z.number().int().min(0),
  top_p: z.number().gt(0).max(1),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1),
  ignore_eos: z.boolean(),
  stop_token_ids: z.array(tokenId),
});
export type GenerationSpec = z.infer<typeof GenerationSpecSchema>;

/** A merge / fuse / NF4 job too heavy for a Worker: the merge service's job, run by a runner. */
export const MergeSpecSchema = z.object({
  /** The merge service's job id (its JobObject), and the recipe the artifact is stored under. */
  merge_job: z.string().min(1).max(128),
  recipe: digest,
  /** The merge service's job parameters (its MergePayload), opaque to the gateway. */
  params: z.record(z.string(), z.unknown()),
  /** Weights bytes the job holds at once (the runner must be able to hold them). */
  bytes: bytes.optional(),
});
export type MergeSpec = z.infer<typeof MergeSpecSchema>;

/** What the queue carries: a pointer to the job object, never the job itself (messages stay small). */
export const QueueMessageSchema = z.object({
  v: z.literal(1),
  job: z.string().regex(JOB_ID_RE),
  attempt: z.number().int().min(1),
});
export type QueueMessage = z.infer<typeof QueueMessageSchema>;

/** gateway → runner: one attempt of one job. */
export const RunnerJobSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('generate'),
    id: z.string().regex(JOB_ID_RE),
    attempt: z.number().int().min(1),
    spec: GenerationSpecSchema,
    /** Tokens the client already has (earlier attempts): continue after them, never repeat them. */
    resume_ids: z.array(tokenId),
  }),
  z.object({
    kind: z.literal('merge'),
    id: z.string().regex(JOB_ID_RE),
    attempt: z.number().int().min(1),
    spec: MergeSpecSchema,
  }),
]);
export type RunnerJob = z.infer<typeof RunnerJobSchema>;

export const JobRefusalCodes = [
  'runner_draining',
  'runner_busy',
  'model_too_large',
  'job_invalid',
  'unauthorized',
  'kind_unsupported',
] as const;
export const JobRefusedSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), retryable: z.boolean() }).loose(),
});

export const FinishSchema = z.object({
  finish_reason: z.enum(['stop', 'length']),
  prompt_tokens: count,
  /** Per attempt: time to load weights, prefill, and decode per token on this runner. */
  timing: z.object({ load_ms: bytes, prefill_ms: bytes, decode_ms_per_token: bytes }).loose().optional(),
  /** Merge jobs: what was written (the artifact manifest). */
  artifact: z.record(z.string(), z.unknown()).optional(),
});
export type Finish = z.infer<typeof FinishSchema>;

export const JobErrorSchema = z.object({
  code: z.string().min(1).max(64),
  message: z.string().max(2000),
  /** false: the job itself is bad (another runner would fail the same way): fail it now. */
  retryable: z.boolean(),
});
export type JobError = z.infer<typeof JobErrorSchema>;

export const ProgressSchema = z.object({ fraction: z.number().min(0).max(1), stage: z.string().max(200) });
export type Progress = z.infer<typeof ProgressSchema>;

/** runner → gateway: the tokens of one attempt from index `from`, maybe the end. Empty `ids` = keep-alive. */
export const JobEventsSchema = z.object({
  runner: z.string().regex(RUNNER_ID_RE),
  attempt: z.number().int().min(1),
  from: count,
  ids: z.array(tokenId).max(1 << 16),
  done: FinishSchema.optional(),
  error: JobErrorSchema.optional(),
  /** Long work without tokens (merge builds): how far along, and at what. */
  progress: ProgressSchema.optional(),
});
export type JobEvents = z.infer<typeof JobEventsSchema>;

export const EventsReplySchema = z.object({
  /** Tokens the job holds now: the runner's next `from`. */
  next: count,
  /** false: this attempt is no longer the job's (fenced off after a retry, or the job ended): stop. */
  current: z.boolean(),
});
export type EventsReply = z.infer<typeof EventsReplySchema>;

/**
 * runner → gateway `POST /runners/events`: the events of many jobs in one request (a runner keeps
 * one such batch in flight; what its jobs produce meanwhile rides the next), so the request rate
 * does not grow with the number of jobs. Each reply carries the status the per-job route would
 * have answered: 200 with {next, current}, 404 for an unknown job, 5xx for trouble (retry).
 */
export const MAX_BATCH_EVENTS = 512;
export const BatchEventsSchema = z.object({
  runner: z.string().regex(RUNNER_ID_RE),
  events: z
    .array(JobEventsSchema.extend({ job: z.string().regex(JOB_ID_RE) }))
    .min(1)
    .max(MAX_BATCH_EVENTS),
});
export type BatchEvents = z.infer<typeof BatchEventsSchema>;

export const BatchReplySchema = z.object({
  replies: z.array(
    z.object({
      job: z.string(),
      status: z.number().int(),
      next: count.optional(),
      current: z.boolean().optional(),
      error: z.string().optional(),
    }),
  ),
});
export type BatchReply = z.infer<typeof BatchReplySchema>;

/** The stream the gateway gives the router: infer's SSE payloads (one per line `data: …`). */
export type StreamEvent =
  | { index: number; ids: number[] }
  | { done: true; finish_reason: 'stop' | 'length'; prompt_tokens: number; completion_tokens: number; attempts: number }
  | { fraction: number; stage: string } // as `event: progress`
  | { error: { code: string; message: string; status: number } };

/** What the gateway's GpuRpc answers a submission: the job and its stream, or why not (nothing enqueued). */
export type SubmitRefusal = {
  ok: false;
  status: number;
  error: { code: string; message: string; field?: string };
  retry_after_s?: number;
};
export type SubmitResult = { ok: true; job: string; body: ReadableStream<Uint8Array> } | SubmitRefusal;

/** The GpuRpc entrypoint as its callers (router, merge service) see it through a service binding. */
export interface GpuBinding {
  submit(spec: GenerationSpec, tenant: string): Promise<SubmitResult>;
  submitMerge(spec: MergeSpec, tenant: string): Promise<SubmitResult>;
  /** The job's stream again, from token index `from`. */
  resume(id: string, from: number): Promise<ReadableStream<Uint8Array>>;
  status(id: string, tenant: string): Promise<unknown>;
  capacity(): Promise<Capacity>;
}
