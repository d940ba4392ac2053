/**
 * A merge job's inputs as the merge service resolves them (the recipe, the base and adapters by
 * digest), what the queue hands a Worker or a GPU runner, and what building it returns.
 */
import { z } from 'zod';
import { MERGE_METHODS } from '../merge/index.ts';
import { DigestSchema, ModelIdSchema, NameSchema, RecipeSchema, TenantIdSchema } from '../registry/index.ts';

export const MergeInputRefSchema = z.object({
  /** `tenant/name`, as mixes name adapters. */
  id: z.string().min(1).max(200),
  tenant: TenantIdSchema,
  name: NameSchema,
  digest: DigestSchema,
  weight: z.number().finite(),
  peft_type: z.enum(['LORA', 'VERA', 'ADALORA']),
  use_dora: z.boolean(),
});
export type MergeInputRef = z.infer<typeof MergeInputRefSchema>;

export const MergePayloadSchema = z.object({
  kind: z.literal('merge'),
  recipe_key: DigestSchema,
  /** Canonical: `adapters` below is in the same (sorted) order. */
  recipe: RecipeSchema,
  base: z.object({ id: ModelIdSchema, digest: DigestSchema }),
  adapters: z.array(MergeInputRefSchema).min(1).max(16),
  method: z.enum(MERGE_METHODS),
  /** Set when the build runs on a GPU runner (too big for a Worker, or asked for): its weights bytes. */
  gpu: z.object({ estimate_bytes: z.number().nonnegative() }).optional(),
});
export type MergePayload = z.infer<typeof MergePayloadSchema>;

/** JSON values: what job records hold (they cross Durable Object RPC and HTTP). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JobResult = { [key: string]: Json };
