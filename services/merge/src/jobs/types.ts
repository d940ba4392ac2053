/** Jobs: what the queue carries, what the job Durable Object keeps, what GET /v1/jobs/:id shows. */
import { MERGE_METHODS } from '@lora-edge/shared';
import { z } from 'zod';
import { type AdapterSource, MERGE_OUTPUTS, ModelIdSchema, RecipeOptionsSchema, type Visibility } from '../lib.ts';

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed'] as const;
export type JobState = (typeof JOB_STATES)[number];
export type JobKind = 'merge' | 'import';

/** POST /v1/merges, and the `merge` of a generic webhook. */
export const MergeRequestSchema = z.strictObject({
  base: ModelIdSchema,
  adapters: z
    .array(z.strictObject({ id: z.string().min(1).max(200), weight: z.number().finite().default(1) }))
    .min(1)
    .max(16),
  method: z.enum(MERGE_METHODS).default('linear'),
  options: RecipeOptionsSchema.default({}),
  output: z.enum(MERGE_OUTPUTS).default('adapter'),
  /**
   * Where the build runs: `auto` = a Worker when it fits MAX_EDGE_JOB_BYTES, else a GPU runner;
   * `gpu` = a GPU runner (heavy CPU work such as ties_svd on large modules); `edge` = a Worker only.
   */
  placement: z.enum(['auto', 'edge', 'gpu']).default('auto'),
});
export type MergeRequest = z.infer<typeof MergeRequestSchema>;

// The merge payload is shared with the GPU runner, which builds the artifacts too big for a Worker.
import type { JobResult, Json, MergePayload } from '../lib.ts';

export type { JobResult, Json, MergeInputRef, MergePayload } from '../lib.ts';

export interface ImportPayload {
  kind: 'import';
  tenant: string;
  name: string;
  base?: string;
  source: AdapterSource;
  dir: string;
  visibility?: Visibility;
  examples?: string[];
  watch?: boolean;
  /** Merges to submit once the adapter is registered (fetch → validate → merge). */
  merges?: MergeRequest[];
}

export type JobPayload = MergePayload | ImportPayload;

export interface JobError {
  code: string;
  message: string;
  [detail: string]: Json;
}

export interface JobEvent {
  state: JobState;
  at: string;
  note?: string;
}

export interface JobRecord {
  id: string;
  kind: JobKind;
  state: JobState;
  /** 0 … 1. */
  progress: number;
  stage: string;
  /** Times a consumer started computing this job. */
  attempts: number;
  requesters: string[];
  created_at: string;
  updated_at: string;
  started_at?: string;
  finished_at?: string;
  history: JobEvent[];
  error?: JobError;
  result?: JobResult;
  payload: JobPayload;
  lease?: { token: string; until: number };
}

export type JobView = Omit<JobRecord, 'payload' | 'lease' | 'requesters'>;

export interface JobMessage {
  job: string;
}

export const JOB_ID_RE = /^[0-9a-f]{64}$/;
