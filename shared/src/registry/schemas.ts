/**
 * The registry's records, as stored (JSON in KV) and as the APIs show them (snake_case, like
 * OpenAI's and the Hub's JSON). Every record is parsed with these schemas on read, so a
 * corrupt or foreign value surfaces as an error instead of flowing on.
 */
import { z } from 'zod';
import { DIGEST_RE } from '../storage/digest.ts';

export const TENANT_ID_RE = /^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$/;
/** Adapter and alias names: one storage key segment, no `:` (the router's `base:adapter`) and no `/`. */
export const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
/** Base model ids may carry one owner prefix, as on the Hub (`org/model`). */
export const MODEL_ID_RE = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?(?:\/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?)?$/;

const noDotDot = (s: string) => !s.includes('..');

export const TenantIdSchema = z.string().regex(TENANT_ID_RE, 'a tenant id: 1-48 of a-z, 0-9 and inner "-"');
export const NameSchema = z
  .string()
  .regex(NAME_RE, 'a name: 1-64 of A-Z, a-z, 0-9 and inner ".", "_", "-"')
  .refine(noDotDot, 'a name must not contain ".."');
export const ModelIdSchema = z
  .string()
  .regex(MODEL_ID_RE, 'a model id: a name, optionally "owner/name"')
  .refine(noDotDot, 'a model id must not contain ".."');
export const DigestSchema = z.string().regex(DIGEST_RE, 'a SHA-256 hex digest');
export const TimestampSchema = z.string().min(1);

export const VISIBILITIES = ['private', 'shared'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** Example prompts an adapter is good at: what retrieval compares a request's prompt with. */
export const ExamplesSchema = z.array(z.string().min(1).max(4000)).max(32);

export const FileDigestSchema = z.object({ size: z.number().int().nonnegative(), sha256: DigestSchema });

export const TenantSchema = z.object({
  id: TenantIdSchema,
  name: z.string().min(1).max(200),
  /** Used when a request names no adapter and no alias matches. */
  default_adapter: z.string().optional(),
  disabled: z.boolean().optional(),
  created_at: TimestampSchema,
});
export type Tenant = z.infer<typeof TenantSchema>;

export const ApiKeyRecordSchema = z.object({
  id: z.string().regex(/^[0-9a-f]{16}$/),
  tenant: TenantIdSchema,
  /** SHA-256 of the whole key; the key itself is never stored. */
  hash: DigestSchema,
  label: z.string().max(200).optional(),
  revoked: z.boolean().optional(),
  created_at: TimestampSchema,
});
export type ApiKeyRecord = z.infer<typeof ApiKeyRecordSchema>;

export const AdapterSourceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('upload') }),
  /** Fetched from a directory URL (`<url>/adapter_config.json`, …). */
  z.object({ kind: z.literal('url'), url: z.string() }),
  /** Fetched from the Hugging Face Hub at a revision (branch, tag or commit). */
  z.object({ kind: z.literal('hf'), repo: z.string(), revision: z.string(), subfolder: z.string().optional() }),
]);
export type AdapterSource = z.infer<typeof AdapterSourceSchema>;

export const AdapterRecordSchema = z.object({
  /** `<tenant>/<name>`: how mixes and other tenants refer to it. */
  id: z.string(),
  tenant: TenantIdSchema,
  name: NameSchema,
  visibility: z.enum(VISIBILITIES),
  /** Registry id of the base model it was validated against. */
  base: ModelIdSchema,
  /** filesDigest of the two PEFT files: the R2 key and the recipe input. */
  digest: DigestSchema,
  files: z.object({ config: FileDigestSchema, weights: FileDigestSchema }),
  peft_type: z.enum(['LORA', 'VERA', 'ADALORA']),
  use_dora: z.boolean(),
  /** Largest module rank. */
  rank: z.number().int().positive(),
  modules: z.number().int().positive(),
  parameters: z.number().int().nonnegative(),
  examples: ExamplesSchema,
  source: AdapterSourceSchema,
  /** Re-import when the Hub says the repo changed (hf sources only). */
  watch: z.boolean().optional(),
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
});
export type AdapterRecord = z.infer<typeof AdapterRecordSchema>;

export const BaseModelRecordSchema = z.object({
  id: ModelIdSchema,
  digest: DigestSchema,
  /** The Hugging Face config.json, as uploaded. */
  config: z.record(z.string(), z.unknown()),
  files: z.object({ config: FileDigestSchema, weights: FileDigestSchema }),
  /** Bytes of the weights file. */
  size: z.number().int().nonnegative(),
  /** Small enough for services/infer (a Worker) to run. */
  edge_eligible: z.boolean(),
  /**
   * Where it runs: `auto` (default) = the edge when edge_eligible, else the GPU path; `gpu` pins it
   * to the GPU runners (an operator's choice, e.g. for throughput); `edge` tries the edge first.
   */
  placement: z.enum(['auto', 'edge', 'gpu']).optional(),
  created_at: TimestampSchema,
});
export type BaseModelRecord = z.infer<typeof BaseModelRecordSchema>;

/** A weighted adapter in a mix; `adapter` is `name` (the caller's) or `tenant/name`. */
export const MixEntrySchema = z.object({ adapter: z.string().min(1).max(200), weight: z.number().finite() });
export type MixEntry = z.infer<typeof MixEntrySchema>;

/** An alias route: `weight` is its share of traffic relative to the other routes (a canary gets a small one). */
export const AliasRouteSchema = z.object({
  weight: z.number().positive().finite(),
  base: ModelIdSchema.optional(),
  mix: z.array(MixEntrySchema).min(1).max(16),
});
export type AliasRoute = z.infer<typeof AliasRouteSchema>;

export const AliasSchema = z.object({
  tenant: TenantIdSchema,
  name: NameSchema,
  routes: z.array(AliasRouteSchema).min(1).max(16),
  updated_at: TimestampSchema,
});
export type Alias = z.infer<typeof AliasSchema>;

export const HitCounterSchema = z.object({
  recipe: DigestSchema,
  count: z.number().int().nonnegative(),
  first_at: TimestampSchema,
  last_at: TimestampSchema,
});
export type HitCounter = z.infer<typeof HitCounterSchema>;

/** Who re-imports which adapter when a Hub repo changes. */
export const WatchSchema = z.object({
  repo: z.string(),
  tenant: TenantIdSchema,
  name: NameSchema,
  subfolder: z.string().optional(),
});
export type Watch = z.infer<typeof WatchSchema>;

/** Default edge budget: base models up to this many bytes of weights may run in a Worker. */
export const DEFAULT_EDGE_MODEL_BYTES = 64 * 1024 * 1024;
